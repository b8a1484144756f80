package integrations

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keycap-dev/keycap/internal/testenv"
)

// thirdPartyCRDs are the proxies' own CustomResourceDefinitions, taken from the Go modules that
// ship them, pinned: module@version and the files (globs) inside it.
var thirdPartyCRDs = []struct {
	module string
	globs  []string
}{
	{"sigs.k8s.io/gateway-api@v1.6.3", []string{"config/crd/standard/*.yaml"}},
	{"github.com/envoyproxy/gateway@v1.9.1", []string{"charts/gateway-crds-helm/templates/generated/gateway.envoyproxy.io_securitypolicies.yaml"}},
	{"github.com/traefik/traefik/v3@v3.7.13", []string{"docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"}},
	{"istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad", []string{"manifests/charts/base/files/crd-all.gen.yaml"}},
}

// helmLine is a line of Helm templating around a CRD (Envoy Gateway's chart wraps each one in an
// if); the CRD itself is plain YAML.
var helmLine = regexp.MustCompile(`^\s*\{\{.*\}\}\s*$`)

// moduleDir downloads module@version through the Go module proxy (GOFLAGS=-mod=mod outside this
// module's graph) and returns where it is.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go mod download %s: %v\n%s%s", module, err, out, ee.Stderr)
		}
		t.Fatalf("go mod download %s: %v", module, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		t.Fatalf("go mod download %s: %v (%s)", module, err, out)
	}
	return info.Dir
}

// crdDir writes the third-party CRDs, Helm lines removed, into a directory for envtest.
func crdDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, m := range thirdPartyCRDs {
		root := moduleDir(t, m.module)
		for _, g := range m.globs {
			files, err := filepath.Glob(filepath.Join(root, g))
			if err != nil || len(files) == 0 {
				t.Fatalf("%s: no CRDs at %s (%v)", m.module, g, err)
			}
			for _, f := range files {
				raw, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				var kept bytes.Buffer
				sc := bufio.NewScanner(bytes.NewReader(raw))
				sc.Buffer(make([]byte, 1<<20), 1<<24)
				for sc.Scan() {
					if !helmLine.MatchString(sc.Text()) {
						kept.Write(sc.Bytes())
						kept.WriteByte('\n')
					}
				}
				name := strings.NewReplacer("/", "_", "@", "_").Replace(m.module) + "_" + filepath.Base(f)
				if err := os.WriteFile(filepath.Join(dir, strings.TrimSuffix(name, ".yml")+".yaml"), kept.Bytes(), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return dir
}

// decodeAll reads every object of a multi-document YAML file.
func decodeAll(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var out []*unstructured.Unstructured
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("%s: %v", path, err)
		}
		if len(u.Object) > 0 {
			out = append(out, &u)
		}
	}
}

// TestKubernetesRecipesApply applies every Kubernetes manifest of the recipes with a server-side
// dry run to a real apiserver that has keycap's CRDs and those of Gateway API, Envoy Gateway,
// Traefik and Istio: a misspelt field, a wrong apiVersion or a value the CRD's schema refuses
// fails the test.
func TestKubernetesRecipesApply(t *testing.T) {
	env, err := testenv.New()
	if err != nil {
		t.Fatal(err)
	}
	env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, crdDir(t))
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ns := range []string{"shop", "istio-system", "keycap-system", "envoy-gateway-system"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	files, err := filepath.Glob(recipe("*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]int{}
	for _, f := range files {
		if filepath.Base(filepath.Dir(f)) == "envoy" {
			continue // an Envoy bootstrap, not a Kubernetes object (TestEnvoyBootstrapIsValid)
		}
		for _, u := range decodeAll(t, f) {
			rel, _ := filepath.Rel(recipe(), f)
			// Strict field validation: an unknown field is an error, not a warning.
			err := c.Create(ctx, u, client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict))
			if err != nil {
				t.Errorf("%s: %s %s/%s: %v", rel, u.GetKind(), u.GetNamespace(), u.GetName(), err)
				continue
			}
			applied[u.GetKind()]++
		}
	}
	for _, kind := range []string{"ConfigMap", "AuthorizationPolicy", "RoutePolicy", "HTTPRoute", "SecurityPolicy", "ReferenceGrant", "Ingress", "Middleware", "IngressRoute"} {
		if applied[kind] == 0 {
			t.Errorf("no %s among the recipes applied", kind)
		}
	}
}
