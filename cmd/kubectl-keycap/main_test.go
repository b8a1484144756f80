package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/controllers"
	"github.com/keycap-dev/keycap/internal/activation"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/signing"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// reconcileTimeout bounds how long a test waits for the controllers. Generous: the machine is
// shared. The plugin's own --timeout is the same.
const reconcileTimeout = 30 * time.Second

var (
	// k8sClient reads straight from the apiserver (no cache), so tests see what is stored.
	k8sClient client.Client
	// kubeconfig is a kubeconfig file for an envtest user, as a user of the plugin has one.
	kubeconfig string
	// kubeconfigBytes is its content, for tests that write variants.
	kubeconfigBytes []byte
	namespaceN      atomic.Int32
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	env, c, stopEnv, err := testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopEnv()
	k8sClient = c
	// The signing key set of AppTokens and Licenses lives in the operator namespace.
	if err := k8sClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "keycap-system"}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	user, err := env.AddUser(envtest.User{Name: "plugin-user", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "adding the plugin's user:", err)
		return 1
	}
	if kubeconfigBytes, err = user.KubeConfig(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "kubectl-keycap-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kubeconfigBytes, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The real manager with keycap's controllers and the real clock.
	stop, err := testenv.StartManager(env.Config, func(mgr ctrl.Manager) error {
		return controllers.SetupWithManager(mgr, controllers.Options{OperatorNamespace: "keycap-system"})
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	return m.Run()
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d-%d", time.Now().Unix()%100000, namespaceN.Add(1))}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// result is what one run of the plugin wrote and answered.
type result struct {
	stdout, stderr string
	code           int
}

// plugin runs the plugin in-process with the test kubeconfig, stdin as its standard input.
func plugin(stdin string, args ...string) result { return pluginWith(kubeconfig, stdin, args...) }

// pluginWith runs the plugin in-process with the kubeconfig file at path.
func pluginWith(path, stdin string, args ...string) result {
	var stdout, stderr bytes.Buffer
	code := run(append(args, "--kubeconfig", path), strings.NewReader(stdin), &stdout, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func getApiKey(g gomega.Gomega, ns, name string) *keycapv1alpha1.ApiKey {
	var a keycapv1alpha1.ApiKey
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &a)).To(gomega.Succeed())
	return &a
}

// tamper changes one character of the random part of a keycap key, keeping its shape.
func tamper(key string) string {
	i := strings.IndexByte(key, '_') + 5
	c := byte('A')
	if key[i] == 'A' {
		c = 'B'
	}
	return key[:i] + string(c) + key[i+1:]
}

func TestApiKeyLifecycle(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)

	// create prints the key once, on stdout, and says on stderr that it will not be shown again.
	created := plugin("", "create", "apikey", "backend", "-n", ns, "--scopes", "videos:read,videos:write",
		"--prefix", "acme", "--description", "the backend", "--timeout", reconcileTimeout.String())
	g.Expect(created.code).To(gomega.Equal(exitOK), created.stderr)
	key := strings.TrimSuffix(created.stdout, "\n")
	g.Expect(keys.Check(key)).To(gomega.Succeed())
	g.Expect(key).To(gomega.HavePrefix("acme_"))
	apiKey := getApiKey(g, ns, "backend")
	g.Expect(apiKey.Status.Digests).NotTo(gomega.BeEmpty())
	g.Expect(keys.Digest(key)).To(gomega.Equal(apiKey.Status.Digests[0]))
	g.Expect(apiKey.Spec.Scopes).To(gomega.Equal([]string{"videos:read", "videos:write"}))
	g.Expect(created.stderr).To(gomega.ContainSubstring("will not show it again"))
	g.Expect(created.stderr).To(gomega.ContainSubstring(apiKey.Status.KeyID))
	g.Expect(created.stderr).NotTo(gomega.ContainSubstring(key))

	// Creating it again refuses, and prints no key.
	again := plugin("", "create", "apikey", "backend", "-n", ns)
	g.Expect(again.code).To(gomega.Equal(exitFailure))
	g.Expect(again.stderr).To(gomega.ContainSubstring("already exists"))
	g.Expect(again.stdout).To(gomega.BeEmpty())

	listed := plugin("", "list", "-n", ns)
	g.Expect(listed.code).To(gomega.Equal(exitOK), listed.stderr)
	g.Expect(listed.stdout).To(gomega.MatchRegexp(`(?m)^NAME\s+KIND\s+READY\s+HINT\s+EXPIRES\s+LAST-USED\s+AGE$`))
	g.Expect(listed.stdout).To(gomega.MatchRegexp(`(?m)^backend\s+ApiKey\s+True\s+` + strings.ReplaceAll(apiKey.Status.Hint, ".", `\.`) + `\s`))
	g.Expect(listed.stdout).NotTo(gomega.ContainSubstring(key))

	got := plugin("", "get", "apikey", "backend", "-n", ns)
	g.Expect(got.code).To(gomega.Equal(exitOK), got.stderr)
	g.Expect(got.stdout).To(gomega.ContainSubstring(apiKey.Status.KeyID))
	g.Expect(got.stdout).To(gomega.ContainSubstring(apiKey.Status.Digests[0]))
	g.Expect(got.stdout).To(gomega.MatchRegexp(`Ready\s+True\s+Issued`))
	g.Expect(got.stdout + got.stderr).NotTo(gomega.ContainSubstring(key))
	gotJSON := plugin("", "get", "apikey", "backend", "-n", ns, "-o", "json")
	g.Expect(gotJSON.code).To(gomega.Equal(exitOK), gotJSON.stderr)
	g.Expect(gotJSON.stdout + gotJSON.stderr).NotTo(gomega.ContainSubstring(key))

	valid := plugin(key+"\n", "verify", "-", "-n", ns)
	g.Expect(valid.code).To(gomega.Equal(exitOK), valid.stdout+valid.stderr)
	g.Expect(valid.stdout).To(gomega.MatchRegexp(`Result:\s+valid`))
	g.Expect(valid.stdout).To(gomega.MatchRegexp(`Name:\s+backend`))

	malformed := plugin(tamper(key)+"\n", "verify", "-", "-n", ns)
	g.Expect(malformed.code).To(gomega.Equal(exitFailure))
	g.Expect(malformed.stdout).To(gomega.ContainSubstring("malformed"))

	// A well-formed key that nobody issued is not found; in another namespace neither is ours.
	stranger, err := keys.Generate("acme")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	unknown := plugin("", "verify", stranger, "-n", ns)
	g.Expect(unknown.code).To(gomega.Equal(exitFailure))
	g.Expect(unknown.stdout).To(gomega.ContainSubstring("no credential"))
	unknownJSON := plugin("", "verify", stranger, "-n", ns, "-o", "json")
	g.Expect(unknownJSON.code).To(gomega.Equal(exitFailure))
	var answer verifyResult
	g.Expect(json.Unmarshal([]byte(unknownJSON.stdout), &answer)).To(gomega.Succeed(), unknownJSON.stdout)
	g.Expect(answer).To(gomega.Equal(verifyResult{Reason: "NOT_FOUND", Message: answer.Message, Credentials: []verifiedCredential{}}))
	elsewhere := plugin(key, "verify", "-", "-n", newNamespace(t))
	g.Expect(elsewhere.code).To(gomega.Equal(exitFailure))
	everywhere := plugin(key, "verify", "-", "-A")
	g.Expect(everywhere.code).To(gomega.Equal(exitOK), everywhere.stdout+everywhere.stderr)

	// verify -o json answers the same as JSON.
	validJSON := plugin(key+"\n", "verify", "-", "-n", ns, "-o", "json")
	g.Expect(validJSON.code).To(gomega.Equal(exitOK), validJSON.stdout+validJSON.stderr)
	answer = verifyResult{}
	g.Expect(json.Unmarshal([]byte(validJSON.stdout), &answer)).To(gomega.Succeed(), validJSON.stdout)
	g.Expect(answer.Valid).To(gomega.BeTrue())
	g.Expect(answer.Credentials).To(gomega.HaveLen(1))
	g.Expect(answer.Credentials[0]).To(gomega.Equal(verifiedCredential{
		Kind: "ApiKey", Namespace: ns, Name: "backend", KeyID: apiKey.Status.KeyID, Key: "current",
		Ready: "True", ReadyReason: keycapv1alpha1.ReasonIssued, Valid: true,
	}))
	g.Expect(validJSON.stdout).NotTo(gomega.ContainSubstring(key))

	// Without a grace period, rotate refuses unless told that the current key may stop at once.
	refused := plugin("", "rotate", "apikey", "backend", "-n", ns)
	g.Expect(refused.code).To(gomega.Equal(exitFailure))
	g.Expect(refused.stderr).To(gomega.ContainSubstring("--no-grace"))
	g.Expect(refused.stdout).To(gomega.BeEmpty())
	g.Expect(getApiKey(g, ns, "backend").Status.KeyID).To(gomega.Equal(apiKey.Status.KeyID), "a refused rotate changes nothing")

	// rotate --no-grace prints a different key, which the status now lists first; the old one
	// stops working.
	rotated := plugin("", "rotate", "apikey", "backend", "--no-grace", "-n", ns, "--timeout", reconcileTimeout.String())
	g.Expect(rotated.code).To(gomega.Equal(exitOK), rotated.stderr)
	newKey := strings.TrimSuffix(rotated.stdout, "\n")
	g.Expect(keys.Check(newKey)).To(gomega.Succeed())
	g.Expect(newKey).NotTo(gomega.Equal(key))
	afterRotation := getApiKey(g, ns, "backend")
	g.Expect(afterRotation.Status.KeyID).NotTo(gomega.Equal(apiKey.Status.KeyID))
	g.Expect(afterRotation.Status.Digests[0]).To(gomega.Equal(keys.Digest(newKey)))
	g.Expect(plugin(newKey, "verify", "-", "-n", ns).code).To(gomega.Equal(exitOK))
	g.Expect(plugin(key, "verify", "-", "-n", ns).code).To(gomega.Equal(exitFailure))

	// revoke disables it; verify says so at once (from the spec) and refuses the key.
	revoked := plugin("", "revoke", "apikey", "backend", "-n", ns)
	g.Expect(revoked.code).To(gomega.Equal(exitOK), revoked.stderr)
	g.Expect(getApiKey(g, ns, "backend").Spec.Disabled).To(gomega.BeTrue())
	disabled := plugin(newKey, "verify", "-", "-n", ns)
	g.Expect(disabled.code).To(gomega.Equal(exitFailure))
	g.Expect(disabled.stdout).To(gomega.MatchRegexp(`Disabled:\s+true`))
	g.Expect(disabled.stdout).To(gomega.MatchRegexp(`Result:\s+invalid: disabled`))
	g.Expect(disabled.stdout).NotTo(gomega.ContainSubstring(newKey))

	// A disabled key is not rotated.
	g.Expect(plugin("", "rotate", "apikey", "backend", "-n", ns).code).To(gomega.Equal(exitFailure))

	deleted := plugin("", "revoke", "apikey", "backend", "--delete", "-n", ns)
	g.Expect(deleted.code).To(gomega.Equal(exitOK), deleted.stderr)
	err = k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "backend"}, &keycapv1alpha1.ApiKey{})
	g.Expect(apierrors.IsNotFound(err)).To(gomega.BeTrue(), "get after delete: %v", err)
	missing := plugin("", "get", "apikey", "backend", "-n", ns)
	g.Expect(missing.code).To(gomega.Equal(exitFailure))
	g.Expect(missing.stderr).To(gomega.ContainSubstring(`ApiKey "backend" not found in namespace ` + ns))
}

func TestCreateAgentKeyJSONAndContextNamespace(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)

	// A kubeconfig whose context names the namespace: no -n needed, as with kubectl.
	cfg, err := clientcmd.Load(kubeconfigBytes)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	cfg.Contexts[cfg.CurrentContext].Namespace = ns
	withNamespace := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(clientcmd.WriteToFile(*cfg, withNamespace)).To(gomega.Succeed())
	inNamespace := func(stdin string, args ...string) result { return pluginWith(withNamespace, stdin, args...) }

	parent := inNamespace("", "create", "apikey", "parent", "--scopes", "a,b")
	g.Expect(parent.code).To(gomega.Equal(exitOK), parent.stderr)
	parentKey := strings.TrimSpace(parent.stdout)
	g.Expect(parentKey).NotTo(gomega.BeEmpty())

	child := inNamespace("", "create", "agentkey", "bot", "--parent", "parent", "--agent", "bot-1", "--scopes", "a", "-o", "json")
	g.Expect(child.code).To(gomega.Equal(exitOK), child.stderr)
	var out keyOutput
	g.Expect(json.Unmarshal([]byte(child.stdout), &out)).To(gomega.Succeed())
	var agentKey keycapv1alpha1.AgentKey
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "bot"}, &agentKey)).To(gomega.Succeed())
	g.Expect(out).To(gomega.Equal(keyOutput{Name: "bot", Namespace: ns, KeyID: agentKey.Status.KeyID, Key: out.Key}))
	g.Expect(keys.Digest(out.Key)).To(gomega.Equal(agentKey.Status.Digests[0]))

	listed := inNamespace("", "list", "agentkeys")
	g.Expect(listed.code).To(gomega.Equal(exitOK), listed.stderr)
	g.Expect(listed.stdout).To(gomega.MatchRegexp(`(?m)^bot\s+AgentKey\s+True\s`))
	g.Expect(listed.stdout).NotTo(gomega.ContainSubstring("parent"))

	verified := inNamespace(out.Key, "verify", "-")
	g.Expect(verified.code).To(gomega.Equal(exitOK), verified.stdout+verified.stderr)
	g.Expect(verified.stdout).To(gomega.MatchRegexp(`Kind:\s+AgentKey`))
}

// The test kubeconfig's context names no namespace: as with kubectl, that means "default". The
// namespace every command works in is connect's, so this asks connect rather than create a key
// in the shared "default" namespace; -n still wins over it.
func TestCreateWithoutNamespaceUsesDefault(t *testing.T) {
	g := gomega.NewWithT(t)
	_, namespace, err := (&env{globals: globals{kubeconfig: kubeconfig}}).connect()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(namespace).To(gomega.Equal("default"))

	ns := newNamespace(t)
	_, namespace, err = (&env{globals: globals{kubeconfig: kubeconfig, namespace: ns}}).connect()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(namespace).To(gomega.Equal(ns))
	created := plugin("", "create", "apikey", "in-flag-namespace", "-n", ns)
	g.Expect(created.code).To(gomega.Equal(exitOK), created.stderr)
	getApiKey(g, ns, "in-flag-namespace")
}

func TestCreateFailsClearlyWhenNotReady(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	// A Secret keycap does not own holds the name: the ApiKey reports SecretConflict.
	taken := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken"}, StringData: map[string]string{"api-key": "not ours"}}
	g.Expect(k8sClient.Create(context.Background(), taken)).To(gomega.Succeed())

	res := plugin("", "create", "apikey", "taken", "-n", ns, "--timeout", reconcileTimeout.String())
	g.Expect(res.code).To(gomega.Equal(exitFailure))
	g.Expect(res.stdout).To(gomega.BeEmpty())
	g.Expect(res.stderr).To(gomega.ContainSubstring(keycapv1alpha1.ReasonSecretConflict))
	g.Expect(res.stderr).NotTo(gomega.ContainSubstring("not ours"))
}

func TestLicenseCreateVerifyActivate(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	created := plugin("", "create", "license", "acme", "-n", ns, "--product", "cap", "--plan", "enterprise",
		"--max-instances", "1", "--entitlements", "sso,audit", "--timeout", reconcileTimeout.String())
	g.Expect(created.code).To(gomega.Equal(exitOK), created.stderr)
	key := strings.TrimSpace(created.stdout)
	var lic keycapv1alpha1.License
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "acme"}, &lic)).To(gomega.Succeed())
	g.Expect(keys.Digest(key)).To(gomega.Equal(lic.Status.Digests[0]))
	g.Expect(lic.Spec.Entitlements).To(gomega.Equal([]string{"sso", "audit"}))

	verified := plugin(key, "verify", "-", "-n", ns)
	g.Expect(verified.code).To(gomega.Equal(exitOK), verified.stdout+verified.stderr)
	g.Expect(verified.stdout).To(gomega.MatchRegexp(`Kind:\s+License`))

	// The data plane's activation handler, finding licences by digest straight from the apiserver.
	finder := activation.FinderFunc(func(digest string) (types.NamespacedName, bool) {
		var list keycapv1alpha1.LicenseList
		if err := k8sClient.List(context.Background(), &list); err != nil {
			return types.NamespacedName{}, false
		}
		for _, l := range list.Items {
			if slices.Contains(l.Status.Digests, digest) {
				return types.NamespacedName{Namespace: l.Namespace, Name: l.Name}, true
			}
		}
		return types.NamespacedName{}, false
	})
	server := httptest.NewServer(activation.NewActivator(finder, k8sClient, k8sClient, nil))
	defer server.Close()

	first := plugin(key+"\n", "activate", "--url", server.URL, "--license-key", "-", "--instance-id", "node-1")
	g.Expect(first.code).To(gomega.Equal(exitOK), first.stdout+first.stderr)
	g.Expect(first.stdout).To(gomega.ContainSubstring("License activated"))
	g.Expect(first.stdout).NotTo(gomega.ContainSubstring(key))
	second := plugin(key+"\n", "activate", "--url", server.URL, "--license-key", "-", "--instance-id", "node-2", "-o", "json")
	g.Expect(second.code).To(gomega.Equal(exitFailure))
	g.Expect(second.stdout).To(gomega.ContainSubstring(string(activation.ReasonTooManyInstances)))
	reset := plugin(key+"\n", "activate", "--url", server.URL, "--license-key", "-", "--instance-id", "node-2", "--reset")
	g.Expect(reset.code).To(gomega.Equal(exitOK), reset.stdout+reset.stderr)
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "acme"}, &lic)).To(gomega.Succeed())
	g.Expect(lic.Status.Activations).To(gomega.HaveLen(1))
	g.Expect(lic.Status.Activations[0].InstanceID).To(gomega.Equal("node-2"))
}

func TestCreateAppTokenAndListEveryKind(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	created := plugin("", "create", "apptoken", "reports", "-n", ns, "--audience", "https://api.acme.example",
		"--duration", "1h", "--scopes", "reports:read", "--timeout", reconcileTimeout.String())
	g.Expect(created.code).To(gomega.Equal(exitOK), created.stderr)
	token := strings.TrimSpace(created.stdout)
	g.Expect(apptoken.LooksLikeJWT(token)).To(gomega.BeTrue(), "not a JWT: %q", token)
	var secret corev1.Secret
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "reports"}, &secret)).To(gomega.Succeed())
	g.Expect(string(secret.Data[keycapv1alpha1.AppTokenSecretKey])).To(gomega.Equal(token))
	// The token is renewed into the Secret: create does not pretend it is shown only once.
	g.Expect(created.stderr).To(gomega.ContainSubstring("renews it into Secret " + ns + "/reports (data key token)"))
	g.Expect(created.stderr).NotTo(gomega.ContainSubstring("will not show it again"))

	g.Expect(plugin("", "create", "apikey", "backend", "-n", ns).code).To(gomega.Equal(exitOK))
	listed := plugin("", "list", "-n", ns)
	g.Expect(listed.code).To(gomega.Equal(exitOK), listed.stderr)
	g.Expect(listed.stdout).To(gomega.MatchRegexp(`(?m)^backend\s+ApiKey\s+True\s`))
	g.Expect(listed.stdout).To(gomega.MatchRegexp(`(?m)^reports\s+AppToken\s+True\s`))
	g.Expect(listed.stdout).NotTo(gomega.ContainSubstring(token))

	all := plugin("", "list", "apptokens", "-A")
	g.Expect(all.code).To(gomega.Equal(exitOK), all.stderr)
	g.Expect(all.stdout).To(gomega.MatchRegexp(`(?m)^NAMESPACE\s+NAME\s+KIND`))
	g.Expect(all.stdout).To(gomega.MatchRegexp(`(?m)^` + ns + `\s+reports\s+AppToken\s`))
	g.Expect(all.stdout).NotTo(gomega.ContainSubstring("ApiKey"))
}

func TestKubeconfigFromEnvironmentAndContextFlag(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	g.Expect(plugin("", "create", "apikey", "found", "-n", ns).code).To(gomega.Equal(exitOK))

	// The current context points at nothing; the context "good" at the test cluster, in ns.
	cfg, err := clientcmd.Load(kubeconfigBytes)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	good := cfg.Contexts[cfg.CurrentContext].DeepCopy()
	good.Namespace = ns
	cfg.Contexts["good"] = good
	cfg.Clusters["nowhere"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	cfg.Contexts["broken"] = &clientcmdapi.Context{Cluster: "nowhere", AuthInfo: good.AuthInfo}
	cfg.CurrentContext = "broken"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(clientcmd.WriteToFile(*cfg, path)).To(gomega.Succeed())
	t.Setenv("KUBECONFIG", path)

	var stdout, stderr bytes.Buffer
	code := run([]string{"list", "--context", "good"}, strings.NewReader(""), &stdout, &stderr)
	g.Expect(code).To(gomega.Equal(exitOK), stderr.String())
	g.Expect(stdout.String()).To(gomega.MatchRegexp(`(?m)^found\s+ApiKey\s`))

	stdout.Reset()
	stderr.Reset()
	code = run([]string{"list", "-n", ns}, strings.NewReader(""), &stdout, &stderr)
	g.Expect(code).To(gomega.Equal(exitFailure))
	g.Expect(stderr.String()).To(gomega.ContainSubstring("127.0.0.1:1"))
}

func TestUsageErrors(t *testing.T) {
	cases := map[string]struct {
		args   []string
		stdin  string
		code   int
		stderr string
	}{
		"no command prints the usage":                        {args: nil, code: exitUsage, stderr: "Usage:"},
		"an unknown command is refused":                      {args: []string{"frobnicate"}, code: exitUsage, stderr: `unknown command "frobnicate"`},
		"an unknown kind is refused":                         {args: []string{"get", "widget", "x"}, code: exitUsage, stderr: `unknown kind "widget"`},
		"an agent key needs a parent":                        {args: []string{"create", "agentkey", "bot", "--agent", "a"}, code: exitUsage, stderr: "--parent"},
		"a flag of another kind is refused, not ignored":     {args: []string{"create", "apikey", "k", "--product", "p"}, code: exitUsage, stderr: "--product does not apply to ApiKey"},
		"a grace period needs a rotation interval":           {args: []string{"create", "apikey", "k", "--grace", "1h"}, code: exitUsage, stderr: "--grace needs --rotate-every"},
		"a licence cannot be rotated by request":             {args: []string{"rotate", "license", "l"}, code: exitUsage, stderr: "only apikey and agentkey"},
		"verify needs a key":                                 {args: []string{"verify"}, code: exitUsage, stderr: "verify needs the key"},
		"an empty key from stdin is refused":                 {args: []string{"verify", "-"}, stdin: "\n", code: exitUsage, stderr: "the key is empty"},
		"a JWT is verified against a JWKS URL":               {args: []string{"verify", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "--url", "ftp://x"}, code: exitUsage, stderr: "--url must be"},
		"a licence allows at least one instance":             {args: []string{"create", "license", "l", "--product", "p", "--max-instances", "0"}, code: exitUsage, stderr: "--max-instances must be between 1 and 100000"},
		"a duration in an unknown unit is refused":           {args: []string{"create", "apikey", "k", "--expires-in", "30x"}, code: exitUsage, stderr: `invalid duration "30x"`},
		"an unknown output format is refused":                {args: []string{"list", "-o", "yaml"}, code: exitUsage, stderr: "--output must be text or json"},
		"activate needs the licence key and the instance ID": {args: []string{"activate", "--instance-id", "i"}, code: exitUsage, stderr: "--license-key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			res := plugin(tc.stdin, tc.args...)
			g.Expect(res.code).To(gomega.Equal(tc.code), res.stdout+res.stderr)
			g.Expect(res.stderr).To(gomega.ContainSubstring(tc.stderr))
		})
	}
}

func TestParseArgsAcceptsFlagsAnywhere(t *testing.T) {
	cases := map[string]struct {
		args       []string
		positional []string
		namespace  string
	}{
		"flags after the arguments":   {args: []string{"apikey", "k", "-n", "a"}, positional: []string{"apikey", "k"}, namespace: "a"},
		"flags between the arguments": {args: []string{"apikey", "--namespace=b", "k"}, positional: []string{"apikey", "k"}, namespace: "b"},
		"-- ends the flags":           {args: []string{"apikey", "--", "-k"}, positional: []string{"apikey", "-k"}},
		"- is an argument (stdin)":    {args: []string{"-", "-n", "c"}, positional: []string{"-"}, namespace: "c"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			e := &env{}
			pos, err := parseArgs(newFlagSet("test", e), tc.args)
			g.Expect(err).NotTo(gomega.HaveOccurred())
			g.Expect(pos).To(gomega.Equal(tc.positional))
			g.Expect(e.namespace).To(gomega.Equal(tc.namespace))
		})
	}
}

func TestParseDuration(t *testing.T) {
	cases := map[string]struct {
		in   string
		want time.Duration
		err  bool
	}{
		"days":                          {in: "30d", want: 720 * time.Hour},
		"days and hours":                {in: "1d12h", want: 36 * time.Hour},
		"hours as Go writes them":       {in: "720h", want: 720 * time.Hour},
		"minutes":                       {in: "90m", want: 90 * time.Minute},
		"a negative number of days":     {in: "-2d", want: -48 * time.Hour},
		"zero days":                     {in: "0d", want: 0},
		"fractional days are refused":   {in: "1.5d", err: true},
		"an unknown unit is refused":    {in: "30x", err: true},
		"a unit without number":         {in: "d", err: true},
		"a negative part after days":    {in: "1d-5h", err: true},
		"more days than a Duration has": {in: "200000d", err: true},
		"nothing":                       {in: "", err: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			got, err := parseDuration(tc.in)
			if tc.err {
				g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("use d, h, m or s")))
				return
			}
			g.Expect(err).NotTo(gomega.HaveOccurred())
			g.Expect(got).To(gomega.Equal(tc.want))
		})
	}
}

// A key with a grace period is rotated without --no-grace, and its previous key keeps working;
// durations given in days reach the spec as hours.
func TestRotateWithGracePeriod(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	created := plugin("", "create", "apikey", "graceful", "-n", ns, "--expires-in", "90d",
		"--rotate-every", "30d", "--grace", "1d", "--timeout", reconcileTimeout.String())
	g.Expect(created.code).To(gomega.Equal(exitOK), created.stderr)
	oldKey := strings.TrimSpace(created.stdout)
	spec := getApiKey(g, ns, "graceful").Spec
	g.Expect(spec.Duration.Duration).To(gomega.Equal(90 * 24 * time.Hour))
	g.Expect(spec.Rotation.Every.Duration).To(gomega.Equal(30 * 24 * time.Hour))
	g.Expect(spec.Rotation.GracePeriod.Duration).To(gomega.Equal(24 * time.Hour))

	rotated := plugin("", "rotate", "apikey", "graceful", "-n", ns, "--timeout", reconcileTimeout.String())
	g.Expect(rotated.code).To(gomega.Equal(exitOK), rotated.stderr)
	g.Expect(rotated.stderr).To(gomega.ContainSubstring("keeps working until"))
	newKey := strings.TrimSpace(rotated.stdout)
	g.Expect(newKey).NotTo(gomega.Equal(oldKey))

	previous := plugin(oldKey, "verify", "-", "-n", ns)
	g.Expect(previous.code).To(gomega.Equal(exitOK), previous.stdout+previous.stderr)
	g.Expect(previous.stdout).To(gomega.MatchRegexp(`Key:\s+previous \(valid until `))
	g.Expect(plugin(newKey, "verify", "-", "-n", ns).code).To(gomega.Equal(exitOK))
}

// verify judges an AppToken's JWT by its signature against the JWKS the data plane serves, and
// then by the live AppToken: disabling or deleting it makes a well-signed token invalid.
func TestVerifyAppToken(t *testing.T) {
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	created := plugin("", "create", "apptoken", "reports", "-n", ns, "--audience", "https://api.acme.example",
		"--scopes", "reports:read", "--timeout", reconcileTimeout.String())
	g.Expect(created.code).To(gomega.Equal(exitOK), created.stderr)
	token := strings.TrimSpace(created.stdout)

	// The data plane's JWKS and discovery document, from the public keys the controllers publish.
	publicKeys := signing.NewPublicKeys(k8sClient, signing.PublicKeysOptions{Namespace: "keycap-system", Issuer: signing.DefaultIssuer})
	g.Eventually(func() error { return publicKeys.Refresh(context.Background()) }).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
	server := httptest.NewServer(signing.Handler(publicKeys))
	defer server.Close()
	verify := func(token string, args ...string) result {
		return plugin(token+"\n", append([]string{"verify", "-", "--url", server.URL}, args...)...)
	}

	valid := verify(token)
	g.Expect(valid.code).To(gomega.Equal(exitOK), valid.stdout+valid.stderr)
	g.Expect(valid.stdout).To(gomega.MatchRegexp(`Kind:\s+AppToken`))
	g.Expect(valid.stdout).To(gomega.MatchRegexp(`Name:\s+reports`))
	g.Expect(valid.stdout).To(gomega.MatchRegexp(`Result:\s+valid`))
	g.Expect(valid.stdout).NotTo(gomega.ContainSubstring(token))

	asJSON := verify(token, "-o", "json", "--audience", "https://api.acme.example")
	g.Expect(asJSON.code).To(gomega.Equal(exitOK), asJSON.stdout+asJSON.stderr)
	var answer verifyResult
	g.Expect(json.Unmarshal([]byte(asJSON.stdout), &answer)).To(gomega.Succeed(), asJSON.stdout)
	g.Expect(answer.Valid).To(gomega.BeTrue())
	g.Expect(answer.Credentials).To(gomega.HaveLen(1))
	got := answer.Credentials[0]
	g.Expect(got.Kind).To(gomega.Equal("AppToken"))
	g.Expect(got.Namespace).To(gomega.Equal(ns))
	g.Expect(got.Scopes).To(gomega.Equal([]string{"reports:read"}))
	g.Expect(got.Audiences).To(gomega.Equal([]string{"https://api.acme.example"}))

	wrongAudience := verify(token, "-o", "json", "--audience", "https://other.example")
	g.Expect(wrongAudience.code).To(gomega.Equal(exitFailure))
	g.Expect(json.Unmarshal([]byte(wrongAudience.stdout), &answer)).To(gomega.Succeed())
	g.Expect(answer.Reason).To(gomega.Equal(string(apptoken.ReasonWrongAudience)))

	// A forged signature: its first character changed (changing the last could decode to the
	// same bytes).
	dot := strings.LastIndexByte(token, '.')
	forgedChar := byte('A')
	if token[dot+1] == 'A' {
		forgedChar = 'B'
	}
	forged := verify(token[:dot+1] + string(forgedChar) + token[dot+2:])
	g.Expect(forged.code).To(gomega.Equal(exitFailure))
	g.Expect(forged.stdout).To(gomega.ContainSubstring(string(apptoken.ReasonInvalidSignature)))

	g.Expect(plugin("", "revoke", "apptoken", "reports", "-n", ns).code).To(gomega.Equal(exitOK))
	disabled := verify(token)
	g.Expect(disabled.code).To(gomega.Equal(exitFailure))
	g.Expect(disabled.stdout).To(gomega.MatchRegexp(`Result:\s+invalid: disabled`))

	g.Expect(plugin("", "revoke", "apptoken", "reports", "--delete", "-n", ns).code).To(gomega.Equal(exitOK))
	deleted := verify(token)
	g.Expect(deleted.code).To(gomega.Equal(exitFailure))
	g.Expect(deleted.stdout).To(gomega.ContainSubstring("no AppToken in namespace " + ns))
}
