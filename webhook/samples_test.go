package webhook

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onsi/gomega"

	"github.com/keycap-dev/keycap/internal/testenv"
)

// sampleExpectation is what the header of a config/samples/invalid file promises.
type sampleExpectation struct {
	field, reason string
	// statusPatch is "<resource>/<name> <merge patch>", applied to the status subresource after
	// the setup documents.
	statusPatch string
	// setup are the documents before the refused one.
	setup string
}

func readSample(t *testing.T, path string) sampleExpectation {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var e sampleExpectation
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "# refused: "); ok {
			e.field = v
		}
		if v, ok := strings.CutPrefix(line, "# reason: "); ok {
			e.reason = v
		}
		if v, ok := strings.CutPrefix(line, "# status-patch: "); ok {
			e.statusPatch = v
		}
	}
	if e.field == "" || e.reason == "" {
		t.Fatalf("%s: the header needs '# refused: <field>' and '# reason: <text>'", path)
	}
	if docs := strings.Split(string(raw), "\n---\n"); len(docs) > 1 {
		e.setup = strings.Join(docs[:len(docs)-1], "\n---\n")
	}
	return e
}

// kubectlRunner returns a function that runs the real kubectl as envtest's admin in namespace ns.
func kubectlRunner(t *testing.T, ns string) func(stdin string, args ...string) (string, error) {
	t.Helper()
	kubectl, err := testenv.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
}

// TestValidSamples: the samples users start from (config/samples/*.yaml) pass the webhook.
func TestValidSamples(t *testing.T) {
	run := kubectlRunner(t, newNamespace(t))
	out, err := run("", "apply", "-f", filepath.Join(testenv.RepoRoot(), "config", "samples"))
	gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred(), "kubectl apply -f config/samples: %s", out)
}

// TestInvalidSamples applies every manifest of config/samples/invalid with the real kubectl and
// checks that each is refused with a message naming the field and the reason.
func TestInvalidSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "invalid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			g := gomega.NewWithT(t)
			want := readSample(t, file)
			run := kubectlRunner(t, newNamespace(t))
			// Namespaces are never finalized here (no namespace controller), so whatever a sample
			// created would hold its key digest for the next run (-count=2): delete it.
			t.Cleanup(func() {
				_, _ = run("", "delete", "--ignore-not-found", "--wait=false", "-f", file)
				if want.setup != "" {
					_, _ = run(want.setup, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
				}
			})
			if want.setup != "" {
				out, err := run(want.setup, "apply", "-f", "-")
				g.Expect(err).NotTo(gomega.HaveOccurred(), "setup documents: %s", out)
			}
			if want.statusPatch != "" {
				target, patch, _ := strings.Cut(want.statusPatch, " ")
				out, err := run("", "patch", target, "--subresource=status", "--type=merge", "-p", patch)
				g.Expect(err).NotTo(gomega.HaveOccurred(), "status patch: %s", out)
			}
			// The webhook's cache may take a moment to see the setup objects: wait on a server-side
			// dry run, which changes nothing, before the real apply.
			g.Eventually(func() error {
				_, err := run("", "apply", "--dry-run=server", "-f", file)
				return err
			}).WithTimeout(admissionTimeout).Should(gomega.HaveOccurred())

			out, err := run("", "apply", "-f", file)
			g.Expect(err).To(gomega.HaveOccurred(), "kubectl apply must fail: %s", out)
			g.Expect(out).To(gomega.ContainSubstring(want.field))
			g.Expect(out).To(gomega.ContainSubstring(want.reason))
			g.Expect(out).NotTo(gomega.ContainSubstring("kc_cvGNCOEnIMbH5qLFEnCFgsRlpn6wNa_2vsFiY"), "a refusal never echoes a key")
			t.Logf("kubectl: %s", strings.TrimSpace(out))
		})
	}
}
