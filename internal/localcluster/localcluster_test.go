package localcluster

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keycap-dev/keycap/config"
	"github.com/keycap-dev/keycap/internal/testenv"
)

const (
	// reapTimeout bounds how long a test waits for a leftover process to be gone.
	reapTimeout = 30 * time.Second
	// collectTimeout bounds how long the controller manager may take to delete an object
	// (garbage collection, a namespace's contents).
	collectTimeout = time.Minute
)

// freePorts returns n distinct free ports, none of them in taken, for processes that bind a port
// number themselves (etcd, kube-apiserver, the webhook URL keycap would serve): they take no
// listener. Every listener stays open until all n ports are chosen, so two picks cannot be the
// same port, and a port handed out earlier (taken, closed since) is skipped; they are closed
// together on return, right before the caller hands the ports on.
func freePorts(t *testing.T, n int, taken ...int) []int {
	t.Helper()
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		if p := l.Addr().(*net.TCPAddr).Port; !slices.Contains(taken, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

func testOptions(t *testing.T, dir string) Options {
	t.Helper()
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 3)
	return Options{
		Dir:               dir,
		AssetsDir:         assets,
		OperatorNamespace: "keycap-system",
		WebhookURL:        "https://127.0.0.1:" + strconv.Itoa(ports[0]),
		APIServerPort:     ports[1],
		EtcdPort:          ports[2],
	}
}

func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

func TestStartInstallsAndRestartKeepsState(t *testing.T) {
	g := gomega.NewWithT(t)
	ctx := context.Background()
	opts := testOptions(t, t.TempDir())
	c := startCluster(t, opts)

	// The kubeconfig on disk is a working admin kubeconfig.
	fromFile, err := clientcmd.BuildConfigFromFlags("", c.KubeconfigPath)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(fromFile.Host).To(gomega.Equal("https://127.0.0.1:" + strconv.Itoa(opts.APIServerPort)))
	core := kubernetes.NewForConfigOrDie(fromFile)
	_, err = core.CoreV1().Namespaces().Get(ctx, opts.OperatorNamespace, metav1.GetOptions{})
	g.Expect(err).NotTo(gomega.HaveOccurred())

	// The CRDs are served.
	dyn := dynamic.NewForConfigOrDie(c.Config)
	for _, res := range []string{"apikeys", "agentkeys", "apptokens", "licenses"} {
		_, err := dyn.Resource(schemaFor(res)).Namespace("default").List(ctx, metav1.ListOptions{})
		g.Expect(err).NotTo(gomega.HaveOccurred(), res)
	}

	// RBAC is enforced: a user without bindings may not read Secrets.
	review, err := core.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               "mallory",
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: "default", Verb: "get", Resource: "secrets"},
		},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(review.Status.Allowed).To(gomega.BeFalse())

	// Each webhook points at WebhookURL + its path; simulate the certificate manager's caBundle.
	vwcNames := webhookConfigNames(t)
	for _, name := range vwcNames {
		vwc, err := dyn.Resource(vwcGVR).Get(ctx, name, metav1.GetOptions{})
		g.Expect(err).NotTo(gomega.HaveOccurred())
		hooks, _, _ := unstructured.NestedSlice(vwc.Object, "webhooks")
		g.Expect(hooks).NotTo(gomega.BeEmpty())
		for _, h := range hooks {
			url, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "url")
			g.Expect(url).To(gomega.HavePrefix(opts.WebhookURL + "/"))
			_, hasService, _ := unstructured.NestedMap(h.(map[string]any), "clientConfig", "service")
			g.Expect(hasService).To(gomega.BeFalse())
		}
		injectCABundle(t, dyn, name, len(hooks))
	}

	checkGarbageCollection(t, core)
	checkNamespaceDeletion(t, core)
	checkControllerManagerIdentity(t, opts.Dir)

	pids := readPIDs(t, opts.Dir)
	caBefore, err := os.ReadFile(filepath.Join(opts.Dir, "pki", "ca.crt"))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(c.Stop()).To(gomega.Succeed())
	for name, pid := range pids {
		g.Expect(alive(pid)).To(gomega.BeFalse(), "%s still running after Stop", name)
	}

	// Second start on the same directory: same CA, the data kept, the injected caBundle kept.
	c2 := startCluster(t, opts)
	caAfter, err := os.ReadFile(filepath.Join(opts.Dir, "pki", "ca.crt"))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(caAfter).To(gomega.Equal(caBefore))
	dyn2 := dynamic.NewForConfigOrDie(c2.Config)
	for _, name := range vwcNames {
		vwc, err := dyn2.Resource(vwcGVR).Get(ctx, name, metav1.GetOptions{})
		g.Expect(err).NotTo(gomega.HaveOccurred())
		hooks, _, _ := unstructured.NestedSlice(vwc.Object, "webhooks")
		for _, h := range hooks {
			ca, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "caBundle")
			g.Expect(ca).To(gomega.Equal(fakeCABundle), "the injected caBundle must survive a restart")
		}
	}
	g.Expect(c2.Stop()).To(gomega.Succeed())

	// Without a WebhookURL (keycap runs without its webhook) the configuration is removed, so
	// nothing can block writes.
	opts.WebhookURL = ""
	c3 := startCluster(t, opts)
	for _, name := range vwcNames {
		_, err := dynamic.NewForConfigOrDie(c3.Config).Resource(vwcGVR).Get(ctx, name, metav1.GetOptions{})
		g.Expect(err).To(gomega.HaveOccurred())
		g.Expect(err.Error()).To(gomega.ContainSubstring("not found"))
	}
}

// checkGarbageCollection deletes a ConfigMap that owns another and expects the dependent to go.
func checkGarbageCollection(t *testing.T, core kubernetes.Interface) {
	t.Helper()
	g := gomega.NewWithT(t)
	ctx := context.Background()
	cms := core.CoreV1().ConfigMaps("default")
	owner, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "gc-owner"}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	dependent, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "gc-dependent",
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
		}},
	}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	bystander, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "gc-bystander"}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(gomega.HaveOccurred())

	g.Expect(cms.Delete(ctx, owner.Name, metav1.DeleteOptions{})).To(gomega.Succeed())
	g.Eventually(func() error {
		_, err := cms.Get(ctx, dependent.Name, metav1.GetOptions{})
		return err
	}).WithTimeout(collectTimeout).Should(gomega.Satisfy(apierrors.IsNotFound), "the dependent of a deleted owner must be collected")
	_, err = cms.Get(ctx, bystander.Name, metav1.GetOptions{})
	g.Expect(err).NotTo(gomega.HaveOccurred(), "an object without owners must stay")
}

// checkNamespaceDeletion deletes a namespace holding a ConfigMap and expects it to be gone, which
// needs the namespace controller to empty and finalize it. The namespace's "default"
// ServiceAccount comes from the serviceaccount controller.
func checkNamespaceDeletion(t *testing.T, core kubernetes.Interface) {
	t.Helper()
	g := gomega.NewWithT(t)
	ctx := context.Background()
	ns, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_, err = core.CoreV1().ConfigMaps(ns.Name).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "content"}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Eventually(func() error {
		_, err := core.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err
	}).WithTimeout(collectTimeout).Should(gomega.Succeed(), "a new namespace gets its default ServiceAccount")

	g.Expect(core.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})).To(gomega.Succeed())
	g.Eventually(func() error {
		_, err := core.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		return err
	}).WithTimeout(collectTimeout).Should(gomega.Satisfy(apierrors.IsNotFound), "a deleted namespace must finish terminating")
}

// checkControllerManagerIdentity checks that the controller manager's kubeconfig is not the
// admin's: it authenticates as system:kube-controller-manager, outside system:masters.
func checkControllerManagerIdentity(t *testing.T, dir string) {
	t.Helper()
	g := gomega.NewWithT(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "kube-controller-manager.kubeconfig"))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	review, err := kubernetes.NewForConfigOrDie(cfg).AuthenticationV1().SelfSubjectReviews().
		Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(review.Status.UserInfo.Username).To(gomega.Equal("system:kube-controller-manager"))
	g.Expect(review.Status.UserInfo.Groups).NotTo(gomega.ContainElement("system:masters"))
}

// fakeCABundle is base64 of "fake CA".
const fakeCABundle = "ZmFrZSBDQQ=="

func injectCABundle(t *testing.T, dyn dynamic.Interface, name string, n int) {
	t.Helper()
	var ops []string
	for i := range n {
		ops = append(ops, `{"op":"add","path":"/webhooks/`+strconv.Itoa(i)+`/clientConfig/caBundle","value":"`+fakeCABundle+`"}`)
	}
	patch := []byte("[" + strings.Join(ops, ",") + "]")
	if _, err := dyn.Resource(vwcGVR).Patch(context.Background(), name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "webhookcert-test"}); err != nil {
		t.Fatalf("injecting caBundle: %v", err)
	}
}

func webhookConfigNames(t *testing.T) []string {
	t.Helper()
	// The manifests are committed (make manifests regenerates them): without them the webhook
	// checks fail, and the caller's other checks still run.
	objs, err := readObjects(config.Webhook, config.WebhookManifests)
	if err != nil {
		t.Errorf("reading the generated webhook configuration: %v", err)
		return nil
	}
	var names []string
	for _, o := range objs {
		if o.GetKind() == "ValidatingWebhookConfiguration" {
			// Registered under the local name, not the manifests' (see WebhookConfigurationName).
			names = append(names, WebhookConfigurationName)
		}
	}
	if len(names) == 0 {
		t.Errorf("no ValidatingWebhookConfiguration in %s", config.WebhookManifests)
	}
	return names
}

func readPIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		data, err := os.ReadFile(filepath.Join(dir, "run", name+".pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || !alive(pid) {
			t.Fatalf("%s not running (pid file %q)", name, data)
		}
		out[name] = pid
	}
	return out
}

func TestStartRefusesABusyPort(t *testing.T) {
	listen := func(t *testing.T) string {
		t.Helper()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		return l.Addr().String()
	}
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	cases := map[string]struct {
		// occupy takes ports and returns the options' changes and the messages expected.
		occupy func(t *testing.T, opts *Options) []string
	}{
		"the apiserver's port": {occupy: func(t *testing.T, opts *Options) []string {
			opts.APIServerPort = port(listen(t))
			return []string{"port 127.0.0.1:" + strconv.Itoa(opts.APIServerPort) + " is in use (kube-apiserver, --local-apiserver-port)"}
		}},
		"a port keycap listens on once the control plane runs": {occupy: func(t *testing.T, opts *Options) []string {
			addr := listen(t)
			metrics := freePorts(t, 1, opts.APIServerPort, opts.EtcdPort, port(strings.TrimPrefix(opts.WebhookURL, "https://")))[0]
			opts.Listeners = []Listener{{Addr: "127.0.0.1:" + strconv.Itoa(metrics), What: "metrics"}, {Addr: addr, What: "health probes, --health-probe-bind-address"}}
			return []string{"port " + addr + " is in use (health probes, --health-probe-bind-address)"}
		}},
		"every taken port at once": {occupy: func(t *testing.T, opts *Options) []string {
			opts.EtcdPort = port(listen(t))
			addr := listen(t)
			opts.Listeners = []Listener{{Addr: addr, What: "ext_authz gRPC"}}
			return []string{"port 127.0.0.1:" + strconv.Itoa(opts.EtcdPort) + " is in use (etcd, --local-etcd-port)", "port " + addr + " is in use (ext_authz gRPC)"}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			opts := testOptions(t, t.TempDir())
			// A disabled endpoint ("0") and port 0 are not checked.
			opts.Listeners = []Listener{{Addr: "0", What: "metrics off"}, {Addr: "127.0.0.1:0", What: "any port"}}
			want := tc.occupy(t, &opts)

			_, err := Start(context.Background(), opts)
			g.Expect(err).To(gomega.HaveOccurred())
			for _, w := range want {
				g.Expect(err.Error()).To(gomega.ContainSubstring(w))
			}
			g.Expect(err.Error()).NotTo(gomega.ContainSubstring("\n"), "one line")
			g.Expect(filepath.Join(opts.Dir, "run", "etcd.pid")).NotTo(gomega.BeAnExistingFile(), "nothing may be started")
			g.Expect(filepath.Join(opts.Dir, "logs", "etcd.log")).NotTo(gomega.BeAnExistingFile(), "nothing may be started")
		})
	}
}

func TestStartRefusesADirInUse(t *testing.T) {
	g := gomega.NewWithT(t)
	opts := testOptions(t, t.TempDir())
	g.Expect(os.MkdirAll(filepath.Join(opts.Dir, "run"), 0o700)).To(gomega.Succeed())
	lock, err := lockDir(filepath.Join(opts.Dir, "run", "lock"))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = lock.Close() }()

	_, err = Start(context.Background(), opts)
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("in use by another running keycap")))
}

func TestReapStale(t *testing.T) {
	dir := t.TempDir()
	// A process whose command line names dir stands for an etcd left behind by a killed keycap.
	start := func(name string) *exec.Cmd {
		cmd := exec.Command("sh", "-c", "sleep 600", name)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		// Start returns once the exec has begun, but the kernel sets the new program's arguments
		// (what /proc/<pid>/cmdline reads, and reapStale looks for) a little later: on a loaded
		// machine reapStale could read an empty command line. A real leftover has long had its.
		cmdline := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "cmdline")
		gomega.NewWithT(t).Eventually(func() ([]byte, error) { return os.ReadFile(cmdline) }, 10*time.Second, 10*time.Millisecond).
			Should(gomega.ContainSubstring(name))
		return cmd
	}
	cases := map[string]struct {
		pid        func() int
		wantKilled bool
		wantAlive  bool
	}{
		"a leftover process of this dir is stopped": {
			pid: func() int {
				cmd := start(dir)
				go func() { _ = cmd.Wait() }() // reap it, as keycap's child it would be reparented
				return cmd.Process.Pid
			},
			wantKilled: true,
		},
		"a pid reused by an unrelated process is left alone": {
			pid:       func() int { return start("unrelated").Process.Pid },
			wantAlive: true,
		},
		"a dead pid is forgotten": {
			pid: func() int {
				cmd := exec.Command("true")
				if err := cmd.Run(); err != nil {
					t.Fatal(err)
				}
				return cmd.Process.Pid
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			pid := tc.pid()
			pidFile := filepath.Join(dir, "etcd.pid")
			g.Expect(os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o600)).To(gomega.Succeed())

			_, killed := reapStale(pidFile, dir)
			g.Expect(killed).To(gomega.Equal(tc.wantKilled))
			g.Expect(pidFile).NotTo(gomega.BeAnExistingFile())
			if tc.wantAlive {
				g.Expect(alive(pid)).To(gomega.BeTrue())
			} else {
				g.Eventually(func() bool { return alive(pid) }).WithTimeout(reapTimeout).Should(gomega.BeFalse())
			}
		})
	}
}

func TestPointAt(t *testing.T) {
	cases := map[string]struct {
		clientConfig map[string]any
		want         map[string]any
	}{
		"a service reference becomes base URL + path, without the caBundle": {
			clientConfig: map[string]any{
				"service":  map[string]any{"name": "keycap-webhook-service", "namespace": "keycap-system", "path": "/validate-keycap-dev-v1alpha1-apikey"},
				"caBundle": "Zm9v",
			},
			want: map[string]any{"url": "https://127.0.0.1:9443/validate-keycap-dev-v1alpha1-apikey"},
		},
		"a service without a path is called at the root": {
			clientConfig: map[string]any{"service": map[string]any{"name": "s", "namespace": "n"}},
			want:         map[string]any{"url": "https://127.0.0.1:9443/"},
		},
		"a URL is left as it is": {
			clientConfig: map[string]any{"url": "https://example.com/hook"},
			want:         map[string]any{"url": "https://example.com/hook"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			vwc := &unstructured.Unstructured{Object: map[string]any{
				"webhooks": []any{map[string]any{"name": "v.keycap.dev", "clientConfig": tc.clientConfig}},
			}}
			g.Expect(pointAt(vwc, "https://127.0.0.1:9443/")).To(gomega.Succeed())
			got, _, err := unstructured.NestedSlice(vwc.Object, "webhooks")
			g.Expect(err).NotTo(gomega.HaveOccurred())
			g.Expect(got[0].(map[string]any)["clientConfig"]).To(gomega.Equal(tc.want))
		})
	}
}

func TestPKIIsReusedAndRenewedBeforeExpiry(t *testing.T) {
	g := gomega.NewWithT(t)
	p := pki{dir: t.TempDir()}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	read := func(f string) []byte {
		data, err := os.ReadFile(f)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		return data
	}

	g.Expect(p.ensure(now)).To(gomega.Succeed())
	ca, serving, admin, sa := read(p.caCert()), read(p.servingCert()), read(p.adminCert()), read(p.saSigningKey())
	cert, _, err := loadPair(p.adminCert(), p.adminKey())
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(cert.Subject.Organization).To(gomega.Equal([]string{"system:masters"}))
	cert, _, err = loadPair(p.kcmCert(), p.kcmKey())
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(cert.Subject.CommonName).To(gomega.Equal("system:kube-controller-manager"))
	g.Expect(cert.Subject.Organization).To(gomega.BeEmpty())
	cert, _, err = loadPair(p.servingCert(), p.servingKey())
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(cert.VerifyHostname("127.0.0.1")).To(gomega.Succeed())
	g.Expect(cert.VerifyHostname("localhost")).To(gomega.Succeed())

	// A day later everything is reused.
	g.Expect(p.ensure(now.Add(24 * time.Hour))).To(gomega.Succeed())
	g.Expect(read(p.caCert())).To(gomega.Equal(ca))
	g.Expect(read(p.servingCert())).To(gomega.Equal(serving))
	g.Expect(read(p.adminCert())).To(gomega.Equal(admin))

	// Within renewBefore of the leaves' expiry they are issued again by the same CA; the
	// service-account key (and the tokens it signed) stays.
	g.Expect(p.ensure(now.Add(leafLifetime - renewBefore + time.Hour))).To(gomega.Succeed())
	g.Expect(read(p.caCert())).To(gomega.Equal(ca))
	g.Expect(read(p.servingCert())).NotTo(gomega.Equal(serving))
	g.Expect(read(p.adminCert())).NotTo(gomega.Equal(admin))
	g.Expect(read(p.saSigningKey())).To(gomega.Equal(sa))
}

func schemaFor(resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "keycap.dev", Version: "v1alpha1", Resource: resource}
}
