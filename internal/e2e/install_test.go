package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keycap-dev/keycap/internal/localcluster"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// The shipped manifests are proven without a kubelet: they are applied server-side to the real
// kube-apiserver of `make run`'s control plane, and the keycap binary of the image runs with the
// exact arguments and environment of each Deployment's container, as many times as the
// Deployment has replicas, authenticated only by a TokenRequest token of the Deployment's
// ServiceAccount. Only the listen addresses are moved to free ports on 127.0.0.1 (flags given
// after the Deployment's own, so they win), and the webhook's Service becomes an ExternalName to
// 127.0.0.1 with the configuration's port moved to the webhook's, which stands in for kube-proxy.
// The apiserver still calls the webhook by its Service and checks the certificate against the
// Service's DNS name and the caBundle keycap injected.

const (
	// toolTimeout bounds `make kustomize helm` when the pinned tools are not in bin/ yet.
	toolTimeout = 30 * time.Minute
	// decideTimeout bounds the data plane learning a newly issued key.
	decideTimeout = time.Minute
)

// TestInstallKustomize applies config/default as `make deploy` does, next to the webhook
// configuration `make run` registers, and runs the walk-through under the manifests' identities.
func TestInstallKustomize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keycap and starts a control plane")
	}
	g := gomega.NewWithT(t)
	_, bin := builtImage(t)
	kustomize := pinnedTool(t, "kustomize")

	// make deploy: a throwaway overlay of config/default that sets the image.
	overlay, err := os.MkdirTemp(filepath.Join(testenv.RepoRoot(), "bin"), "deploy-e2e-")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	t.Cleanup(func() { _ = os.RemoveAll(overlay) })
	_, err = runIn(overlay, nil, kustomize, "create", "--resources", "../../config/default")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_, err = runIn(overlay, nil, kustomize, "edit", "set", "image", "keycap=registry.example/keycap:e2e")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	manifests, err := runIn(overlay, nil, kustomize, "build", ".")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	objs := decodeObjects(t, manifests)
	for _, d := range deploymentsOf(t, objs) {
		g.Expect(d.image).To(gomega.Equal("registry.example/keycap:e2e"), "make deploy's IMG reaches %s", d.name)
	}

	c := startInstallCluster(t)
	// `make deploy` on a `make run` cluster: the manifests' Service-based webhook configuration
	// goes in next to make run's URL-based one.
	_, err = c.kubectlIn([]byte(manifests), "apply", "--server-side", "-f", "-")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	out, err := c.admin("get", "validatingwebhookconfigurations", "-o", "name")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(out).To(gomega.ContainSubstring("/" + localcluster.WebhookConfigurationName + "\n"))
	g.Expect(out).To(gomega.ContainSubstring("/keycap-validating-webhook\n"))

	walkThrough(t, c, bin, objs)
}

// TestInstallHelmChart lints and renders config/charts/keycap, applies the rendering with a
// server-side dry run and then for real, and runs the walk-through under the chart's identities:
// three Deployments (controller, webhook, data plane) in a namespace of the user's choice.
func TestInstallHelmChart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keycap and starts a control plane")
	}
	g := gomega.NewWithT(t)
	_, bin := builtImage(t)
	helm := pinnedTool(t, "helm")
	chart := filepath.Join(testenv.RepoRoot(), "config", "charts", "keycap")

	_, err := runIn("", nil, helm, "lint", "--strict", chart)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	const ns = "keycap"
	render := func(set ...string) (string, error) {
		args := []string{"template", "keycap", chart, "--namespace", ns}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		return runIn("", nil, helm, args...)
	}
	// Every optional part renders and passes the schema.
	_, err = render("webhook.certificates.source=cert-manager", "metrics.serviceMonitor.enabled=true",
		"networkPolicy.enabled=true", "authz.autoscaling.enabled=true", "metrics.secure=false",
		"image.digest=sha256:"+strings.Repeat("ab", 32))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_, err = render("webhook.certificates.source=vault")
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("webhook/certificates/source")), "values.schema.json refuses an unknown certificate source")

	manifests, err := render("image.repository=registry.example/keycap", "image.tag=e2e")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	// Parts that need no other CRDs (cert-manager's, Prometheus') go through the dry run too.
	optional, err := render("networkPolicy.enabled=true", "authz.autoscaling.enabled=true",
		"image.repository=registry.example/keycap", "image.digest=sha256:"+strings.Repeat("ab", 32))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	objs := decodeObjects(t, manifests)
	deployments := deploymentsOf(t, objs)
	g.Expect(deployments).To(gomega.HaveLen(3))
	for _, d := range deployments {
		g.Expect(d.namespace).To(gomega.Equal(ns))
		g.Expect(d.replicas).To(gomega.Equal(2), "HA by default: %s", d.name)
	}
	g.Expect(findObject(objs, "PodDisruptionBudget", "keycap-authz")).NotTo(gomega.BeNil())
	for _, crd := range kindsOf(objs, "CustomResourceDefinition") {
		g.Expect(crd.GetAnnotations()).To(gomega.HaveKeyWithValue("helm.sh/resource-policy", "keep"), crd.GetName())
	}

	c := startInstallCluster(t)
	_, err = c.admin("create", "namespace", ns)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	for name, m := range map[string]string{"default values": manifests, "optional parts": optional} {
		// The CRDs are part of the rendering; a dry run cannot create the kinds they define, so
		// the custom resources are dry-run once the CRDs exist (the chart renders none).
		_, err = c.kubectlIn([]byte(m), "apply", "--server-side", "--dry-run=server", "-f", "-")
		g.Expect(err).NotTo(gomega.HaveOccurred(), "server-side dry run of the chart's %s", name)
	}
	_, err = c.kubectlIn([]byte(manifests), "apply", "--server-side", "--field-manager=helm", "-f", "-")
	g.Expect(err).NotTo(gomega.HaveOccurred())

	walkThrough(t, c, bin, objs)
}

// installCluster is `make run`'s control plane with kubectl as its admin.
type installCluster struct {
	t       *testing.T
	dir     string
	kubectl string
	assets  string
	cluster *localcluster.Cluster
}

// startInstallCluster starts the local control plane as `make run` does, with its URL-based
// webhook configuration registered.
func startInstallCluster(t *testing.T) *installCluster {
	t.Helper()
	kubectlBin, err := testenv.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	dir := t.TempDir()
	cluster, err := localcluster.Start(context.Background(), localcluster.Options{
		Dir:               filepath.Join(dir, "local"),
		AssetsDir:         assets,
		OperatorNamespace: "keycap-system",
		WebhookURL:        "https://127.0.0.1:" + strconv.Itoa(ports[2]),
		APIServerPort:     ports[0],
		EtcdPort:          ports[1],
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop() })
	return &installCluster{t: t, dir: dir, kubectl: kubectlBin, assets: assets, cluster: cluster}
}

func (c *installCluster) admin(args ...string) (string, error) {
	return runKubectl(c.kubectl, c.cluster.KubeconfigPath, args...)
}

func (c *installCluster) kubectlIn(stdin []byte, args ...string) (string, error) {
	return runIn("", stdin, c.kubectl, append([]string{"--kubeconfig", c.cluster.KubeconfigPath}, args...)...)
}

// serviceAccountKubeconfig writes a kubeconfig that holds nothing but a TokenRequest token of
// the ServiceAccount namespace/name.
func (c *installCluster) serviceAccountKubeconfig(namespace, name string) (path, token string) {
	c.t.Helper()
	token, err := c.admin("create", "token", name, "-n", namespace, "--duration=1h")
	if err != nil {
		c.t.Fatal(err)
	}
	token = strings.TrimSpace(token)
	kc, err := clientcmd.LoadFromFile(c.cluster.KubeconfigPath)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, auth := range kc.AuthInfos {
		auth.ClientCertificateData, auth.ClientKeyData = nil, nil
		auth.Token = token
	}
	path = filepath.Join(c.dir, namespace+"-"+name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		c.t.Fatal(err)
	}
	return path, token
}

// deployment is what one Deployment of the manifests runs.
type deployment struct {
	name, namespace, serviceAccount, image string
	replicas                               int
	args                                   []string
	env                                    []string
}

func (d deployment) runs(component string) bool {
	for _, a := range d.args {
		if v, ok := strings.CutPrefix(a, "--components="); ok {
			for _, c := range strings.Split(v, ",") {
				if c == component {
					return true
				}
			}
		}
	}
	return false
}

// replica is one running keycap process of a Deployment, with the ports it was moved to.
type replica struct {
	deployment
	proc                               *keycapProcess
	metrics, probes, webhook, grpc, hp int
}

// walkThrough runs every Deployment of objs under its ServiceAccount and checks that together
// they work: the operator issues a key, every data plane replica decides with it, the webhook
// refuses a bad manifest and guards the issued Secret, metrics answer only an authorized scraper,
// and one controller replica leads.
func walkThrough(t *testing.T, c *installCluster, bin string, objs []*unstructured.Unstructured) {
	g := gomega.NewWithT(t)

	// Nothing serves make run's own webhook configuration in this test (no `make run` keycap):
	// the shipped one is what is under test.
	_, err := c.admin("delete", "validatingwebhookconfiguration", localcluster.WebhookConfigurationName, "--ignore-not-found")
	g.Expect(err).NotTo(gomega.HaveOccurred())

	vwcs := kindsOf(objs, "ValidatingWebhookConfiguration")
	g.Expect(vwcs).To(gomega.HaveLen(1))
	vwc := vwcs[0]
	hooks, _, _ := unstructured.NestedSlice(vwc.Object, "webhooks")
	g.Expect(hooks).NotTo(gomega.BeEmpty())
	svcName, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "service", "name")
	svcNamespace, _, _ := unstructured.NestedString(hooks[0].(map[string]any), "clientConfig", "service", "namespace")
	g.Expect(findObject(objs, "Service", svcName)).NotTo(gomega.BeNil(), "the webhook's Service %s is shipped", svcName)

	// Start every replica of every Deployment under its ServiceAccount.
	var replicas []*replica
	for _, d := range deploymentsOf(t, objs) {
		kubeconfig, _ := c.serviceAccountKubeconfig(d.namespace, d.serviceAccount)
		for range d.replicas {
			ports := freePorts(t, 5)
			r := &replica{deployment: d, metrics: ports[0], probes: ports[1]}
			args := append([]string{}, d.args...)
			args = append(args, "--kubeconfig="+kubeconfig,
				"--metrics-bind-address="+hostPort(r.metrics), "--health-probe-bind-address="+hostPort(r.probes))
			if d.runs("webhook") {
				r.webhook = ports[2]
				args = append(args, "--webhook-port="+strconv.Itoa(r.webhook))
			}
			if d.runs("authz") {
				r.grpc, r.hp = ports[3], ports[4]
				args = append(args, "--grpc-bind-address="+hostPort(r.grpc), "--http-bind-address="+hostPort(r.hp))
			}
			cmd := exec.Command(bin, args...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.dir}, d.env...)
			r.proc = startProcess(t, cmd)
			replicas = append(replicas, r)
		}
	}
	for _, r := range replicas {
		g.Eventually(r.proc.output).WithTimeout(startTimeout).WithPolling(pollInterval).
			Should(gomega.ContainSubstring("keycap ready"), "%s never became ready under its ServiceAccount", r.name)
	}

	// The webhook's Service resolves to the first webhook replica (kube-proxy's part).
	var hook *replica
	for _, r := range replicas {
		if r.webhook != 0 {
			hook = r
			break
		}
	}
	g.Expect(hook).NotTo(gomega.BeNil(), "no Deployment runs the webhook")
	_, err = c.admin("delete", "service", svcName, "-n", svcNamespace)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_, err = c.admin("create", "service", "externalname", svcName, "-n", svcNamespace, "--external-name=localhost")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	var patch []map[string]any
	for i := range hooks {
		patch = append(patch, map[string]any{"op": "replace", "path": fmt.Sprintf("/webhooks/%d/clientConfig/service/port", i), "value": hook.webhook})
	}
	patchJSON, err := json.Marshal(patch)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_, err = c.admin("patch", "validatingwebhookconfiguration", vwc.GetName(), "--type=json", "-p", string(patchJSON))
	g.Expect(err).NotTo(gomega.HaveOccurred())

	// The operator issues a key; the apiserver admits the ApiKey through the webhook once keycap
	// has injected its CA.
	samples := filepath.Join(testenv.RepoRoot(), "config", "samples")
	g.Eventually(func() error {
		_, err := c.admin("apply", "-n", "default", "-f", filepath.Join(samples, "apikey.yaml"))
		return err
	}).WithTimeout(startTimeout).WithPolling(time.Second).Should(gomega.Succeed())
	waitIssued(g, c.admin)
	encoded, err := c.admin("get", "secret", sampleAPIKey, "-n", "default", "-o", "jsonpath={.data.api-key}")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	key, err := base64.StdEncoding.DecodeString(encoded)
	g.Expect(err).NotTo(gomega.HaveOccurred())

	// Every data plane replica decides: the key passes, no key is refused.
	dataPlanes := 0
	for _, r := range replicas {
		if r.hp == 0 {
			continue
		}
		dataPlanes++
		check := "http://" + hostPort(r.hp) + "/check"
		g.Eventually(func() (int, error) { return httpStatus(check, map[string]string{"x-api-key": string(key)}) }).
			WithTimeout(decideTimeout).WithPolling(pollInterval).Should(gomega.Equal(http.StatusOK), "%s allows the issued key", r.name)
		g.Expect(httpStatus(check, nil)).To(gomega.Equal(http.StatusUnauthorized))
		g.Expect(httpStatus(check, map[string]string{"x-api-key": string(key) + "x"})).To(gomega.Equal(http.StatusUnauthorized))
	}
	g.Expect(dataPlanes).To(gomega.BeNumerically(">=", 2), "the data plane runs two replicas by default")

	// The webhook refuses what only it can judge (the parent does not exist; no schema or CEL
	// rule can look at another object).
	_, err = c.admin("apply", "-n", "default", "-f", filepath.Join(samples, "invalid", "agentkey-missing-parent.yaml"))
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring(`spec.apiKeyRef.name: Not found: "no-such-apikey"`)))

	// The tamper guard: an admin cannot change the issued key, the operator can (a rotation
	// rewrites the Secret's data), whichever Deployment each runs in.
	_, err = c.admin("patch", "secret", sampleAPIKey, "-n", "default", "--type=merge", "-p", `{"stringData":{"api-key":"forged"}}`)
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring(`admission webhook "vsecret.keycap.dev" denied the request`)))
	before, err := c.admin("get", "apikey", sampleAPIKey, "-n", "default", "-o", "jsonpath={.status.digests[0]}")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_, err = c.admin("annotate", "apikey", sampleAPIKey, "-n", "default", "keycap.dev/rotate=e2e")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Eventually(func() (string, error) {
		return c.admin("get", "apikey", sampleAPIKey, "-n", "default", "-o", "jsonpath={.status.digests[0]}")
	}).WithTimeout(readyTimeout).WithPolling(pollInterval).ShouldNot(gomega.Equal(before), "the operator rotates the key")
	rotated := waitIssued(g, c.admin) // the Secret holds the new key
	g.Expect(rotated).NotTo(gomega.Equal(before))

	// Metrics: HTTPS for an authorized scraper only (TokenReview + SubjectAccessReview, made with
	// the component's own identity).
	var reader string
	for _, cr := range kindsOf(objs, "ClusterRole") {
		if strings.HasSuffix(cr.GetName(), "-metrics-reader") {
			reader = cr.GetName()
		}
	}
	g.Expect(reader).NotTo(gomega.BeEmpty(), "a metrics-reader ClusterRole is shipped")
	for _, sa := range []string{"scraper", "stranger"} {
		_, err = c.admin("create", "serviceaccount", sa, "-n", "default")
		g.Expect(err).NotTo(gomega.HaveOccurred())
	}
	_, err = c.admin("create", "clusterrolebinding", "scraper-keycap-metrics", "--clusterrole="+reader, "--serviceaccount=default:scraper")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_, scraper := c.serviceAccountKubeconfig("default", "scraper")
	_, stranger := c.serviceAccountKubeconfig("default", "stranger")
	for _, r := range replicas {
		metrics := "https://" + hostPort(r.metrics) + "/metrics"
		g.Expect(httpStatus(metrics, nil)).To(gomega.Equal(http.StatusUnauthorized), "%s metrics without a token", r.name)
		g.Eventually(func() (int, error) {
			return httpStatus(metrics, map[string]string{"Authorization": "Bearer " + stranger})
		}).WithTimeout(readyTimeout).WithPolling(pollInterval).Should(gomega.Equal(http.StatusForbidden), "%s metrics for a stranger", r.name)
		g.Eventually(func() (int, error) {
			return httpStatus(metrics, map[string]string{"Authorization": "Bearer " + scraper})
		}).WithTimeout(readyTimeout).WithPolling(pollInterval).Should(gomega.Equal(http.StatusOK), "%s metrics for the scraper", r.name)
	}

	// One controller replica holds the lease; the other waits.
	var controllers []*replica
	for _, r := range replicas {
		if r.runs("controllers") {
			controllers = append(controllers, r)
		}
	}
	g.Expect(controllers).To(gomega.HaveLen(2), "the operator runs two replicas by default")
	holder, err := c.admin("get", "lease", "keycap.keycap.dev", "-n", controllers[0].namespace, "-o", "jsonpath={.spec.holderIdentity}")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(holder).NotTo(gomega.BeEmpty())

	for _, r := range replicas {
		select {
		case <-r.proc.done:
			t.Fatalf("%s exited: %v\n%s", r.name, r.proc.err, r.proc.output())
		default:
		}
		g.Expect(r.proc.output()).NotTo(gomega.ContainSubstring("forbidden"), "%s lacks a permission", r.name)
	}
}

// deploymentsOf reads each Deployment's replicas, ServiceAccount, image, and its container's
// args and environment (a fieldRef to metadata.namespace resolved as the kubelet would).
func deploymentsOf(t *testing.T, objs []*unstructured.Unstructured) []deployment {
	t.Helper()
	var out []deployment
	for _, o := range kindsOf(objs, "Deployment") {
		// Decoded from YAML through JSON, numbers are float64.
		replicas := 1
		if v, found, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "replicas"); found {
			f, ok := v.(float64)
			if !ok {
				t.Fatalf("Deployment %s: replicas %v is not a number", o.GetName(), v)
			}
			replicas = int(f)
		}
		sa, _, _ := unstructured.NestedString(o.Object, "spec", "template", "spec", "serviceAccountName")
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		if len(containers) != 1 {
			t.Fatalf("Deployment %s has %d containers, want 1", o.GetName(), len(containers))
		}
		ctr := containers[0].(map[string]any)
		d := deployment{name: o.GetName(), namespace: o.GetNamespace(), serviceAccount: sa, replicas: replicas}
		d.image, _, _ = unstructured.NestedString(ctr, "image")
		d.args, _, _ = unstructured.NestedStringSlice(ctr, "args")
		if cmd, _, _ := unstructured.NestedStringSlice(ctr, "command"); len(cmd) > 0 {
			t.Fatalf("Deployment %s overrides the image's entrypoint with %v", o.GetName(), cmd)
		}
		envs, _, _ := unstructured.NestedSlice(ctr, "env")
		for _, e := range envs {
			env := e.(map[string]any)
			name, _ := env["name"].(string)
			if v, ok := env["value"].(string); ok {
				d.env = append(d.env, name+"="+v)
				continue
			}
			fieldPath, _, _ := unstructured.NestedString(env, "valueFrom", "fieldRef", "fieldPath")
			if fieldPath != "metadata.namespace" {
				t.Fatalf("Deployment %s: env %s from %v is not supported by this test", o.GetName(), name, env["valueFrom"])
			}
			d.env = append(d.env, name+"="+o.GetNamespace())
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		t.Fatal("the manifests have no Deployment")
	}
	return out
}

func decodeObjects(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func kindsOf(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func findObject(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range kindsOf(objs, kind) {
		if o.GetName() == name {
			return o
		}
	}
	return nil
}

// httpStatus GETs url with headers; HTTPS is not verified (keycap's metrics certificate is
// self-signed), since what is under test is who gets an answer.
func httpStatus(url string, headers map[string]string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
	}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// pinnedTool returns bin/<name>, installing the version the Makefile pins when it is missing.
func pinnedTool(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(testenv.RepoRoot(), "bin", name)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", name)
	cmd.Dir = testenv.RepoRoot()
	for _, kv := range os.Environ() {
		if n, _, _ := strings.Cut(kv, "="); n != "MAKEFLAGS" && n != "MFLAGS" && n != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", name, err, out)
	}
	return path
}

// runIn runs name with args in dir (the current directory when empty), stdin fed from stdin,
// and returns its stdout; the error carries its stderr.
func runIn(dir string, stdin []byte, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}
