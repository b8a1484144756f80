package webhook

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/registry"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// kustomize builds a kustomization of config/ with kubectl's built-in kustomize.
func kustomize(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	kubectl, err := testenv.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", filepath.Join(testenv.RepoRoot(), "config", dir))
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize config/%s: %v: %s", dir, err, stderr.String())
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(&out, 4096)
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

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// podSpecOf returns a Deployment's pod spec and its first container.
func podSpecOf(g gomega.Gomega, dep *unstructured.Unstructured) (podSpec, container map[string]any) {
	podSpec, _, err := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	containers, _, err := unstructured.NestedSlice(podSpec, "containers")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(containers).NotTo(gomega.BeEmpty())
	return podSpec, containers[0].(map[string]any)
}

// TestKustomizeLayouts: both ways of installing keycap keep the names the certificate handling
// relies on, and the cert-manager option wires cert-manager's certificate into the webhook.
func TestKustomizeLayouts(t *testing.T) {
	t.Run("config/default: keycap manages the certificate of the configuration it names", func(t *testing.T) {
		g := gomega.NewWithT(t)
		objs := kustomize(t, "default")
		vwc := find(objs, "ValidatingWebhookConfiguration", ConfigurationName)
		g.Expect(vwc).NotTo(gomega.BeNil(), "the certificate manager injects into %s", ConfigurationName)
		g.Expect(find(objs, "Service", DefaultServiceName)).NotTo(gomega.BeNil(), "the serving certificate names this Service")
		dep := find(objs, "Deployment", "keycap-controller-manager")
		g.Expect(dep).NotTo(gomega.BeNil())
		_, container := podSpecOf(g, dep)
		args, _, _ := unstructured.NestedStringSlice(container, "args")
		g.Expect(slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--webhook-cert-dir") })).To(gomega.BeFalse(),
			"without --webhook-cert-dir keycap manages its own certificates")
	})
	t.Run("config/certmanager: cert-manager issues the certificate and injects the caBundle", func(t *testing.T) {
		g := gomega.NewWithT(t)
		objs := kustomize(t, "certmanager")
		vwc := find(objs, "ValidatingWebhookConfiguration", ConfigurationName)
		g.Expect(vwc).NotTo(gomega.BeNil())
		cert := find(objs, "Certificate", "keycap-webhook-cert")
		g.Expect(cert).NotTo(gomega.BeNil())
		g.Expect(vwc.GetAnnotations()).To(gomega.HaveKeyWithValue("cert-manager.io/inject-ca-from", cert.GetNamespace()+"/"+cert.GetName()))
		dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		g.Expect(dnsNames).To(gomega.ContainElement(DefaultServiceName + "." + DefaultServiceNamespace + ".svc"))
		secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")

		dep := find(objs, "Deployment", "keycap-controller-manager")
		g.Expect(dep).NotTo(gomega.BeNil())
		podSpec, container := podSpecOf(g, dep)
		args, _, _ := unstructured.NestedStringSlice(container, "args")
		var certDir string
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--webhook-cert-dir="); ok {
				certDir = v
			}
		}
		g.Expect(certDir).NotTo(gomega.BeEmpty(), "--webhook-cert-dir turns keycap's own certificate management off")
		mounts, _, _ := unstructured.NestedSlice(container, "volumeMounts")
		volumes, _, _ := unstructured.NestedSlice(podSpec, "volumes")
		var mounted bool
		for _, m := range mounts {
			m := m.(map[string]any)
			if m["mountPath"] != certDir {
				continue
			}
			for _, v := range volumes {
				v := v.(map[string]any)
				if v["name"] == m["name"] {
					s, _, _ := unstructured.NestedString(v, "secret", "secretName")
					mounted = s == secretName
				}
			}
		}
		g.Expect(mounted).To(gomega.BeTrue(), "the Certificate's Secret %s is mounted at %s", secretName, certDir)
	})
}

// TestEveryKindIsServedWhereTheManifestsCall: the webhook serves each registry kind at the path
// the generated ValidatingWebhookConfiguration calls, so a kind added to the registry is
// validated, and a path renamed on one side only is caught.
func TestEveryKindIsServedWhereTheManifestsCall(t *testing.T) {
	g := gomega.NewWithT(t)
	manifests, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml"))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	for _, k := range registry.Kinds() {
		g.Expect(string(manifests)).To(gomega.ContainSubstring("path: "+validatePath(k)+"\n"), "kind %s", k.Name)
	}
	g.Expect(validatePath(mustKind(t, keycapv1alpha1.KindApiKey))).To(gomega.Equal(PathApiKey))
	g.Expect(validatePath(mustKind(t, keycapv1alpha1.KindAgentKey))).To(gomega.Equal(PathAgentKey))
	g.Expect(validatePath(mustKind(t, keycapv1alpha1.KindAppToken))).To(gomega.Equal(PathAppToken))
	g.Expect(validatePath(mustKind(t, keycapv1alpha1.KindLicense))).To(gomega.Equal(PathLicense))
}

func mustKind(t *testing.T, name string) *registry.Kind {
	t.Helper()
	k, ok := registry.ByName(name)
	if !ok {
		t.Fatalf("no registry entry for %s", name)
	}
	return k
}
