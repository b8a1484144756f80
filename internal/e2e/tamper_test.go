package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onsi/gomega"

	"github.com/keycap-dev/keycap/internal/localcluster"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// TestMakeRunTamperGuard: under `make run` the operator has an identity of its own, so the person
// holding .local/kubeconfig (a cluster admin) is refused as she would be in a cluster: she cannot
// change a managed Secret, nor plant a Secret claiming to be keycap's, while the operator keeps
// issuing.
func TestMakeRunTamperGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keycap and starts a control plane")
	}
	g := gomega.NewWithT(t)
	kubectlBin, err := testenv.Kubectl()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	assets, err := testenv.AssetsDir()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	bin := buildKeycap(t)
	dir := filepath.Join(t.TempDir(), "local")
	p := startKeycap(t, bin, assets, localArgs(dir, freePorts(t, 7)))
	g.Eventually(p.output).WithTimeout(startTimeout).WithPolling(pollInterval).Should(gomega.ContainSubstring("keycap ready"))

	person := func(args ...string) (string, error) {
		return runKubectl(kubectlBin, filepath.Join(dir, "kubeconfig"), args...)
	}
	who, err := person("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(who).NotTo(gomega.Equal(localcluster.OperatorUser), "the person and the operator are two identities")

	g.Eventually(func() error {
		_, err := person("apply", "-f", filepath.Join(testenv.RepoRoot(), "config", "samples", "apikey.yaml"))
		return err
	}).WithTimeout(startTimeout).WithPolling(pollInterval).Should(gomega.Succeed())
	digest := waitIssued(g, person)

	chosen := base64.StdEncoding.EncodeToString([]byte("chosen-by-the-person"))
	_, err = person("patch", "secret", sampleAPIKey, "--type=merge", "-p", `{"data":{"api-key":"`+chosen+`"}}`)
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("is managed by keycap: only the operator may change its data")))
	stored, err := person("get", "secret", sampleAPIKey, "-o", "jsonpath={.data.api-key}")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	storedKey, err := base64.StdEncoding.DecodeString(stored)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	sum := sha256.Sum256(storedKey)
	g.Expect(hex.EncodeToString(sum[:])).To(gomega.Equal(digest), "the issued key is untouched")

	_, err = person("create", "secret", "generic", "planted", "--from-literal=api-key=chosen")
	g.Expect(err).NotTo(gomega.HaveOccurred(), "an ordinary Secret is the person's to create")
	_, err = person("label", "secret", "planted", "app.kubernetes.io/managed-by=keycap")
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("would claim to be managed by keycap")))
	_, err = person("annotate", "secret", "planted", "keycap.dev/issued-at=2099-01-01T00:00:00Z")
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("would claim to be managed by keycap")))
	g.Expect(strings.Count(p.output(), "forbidden")).To(gomega.BeZero(), "the operator itself is never refused")
}
