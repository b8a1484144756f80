package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/keycap-dev/keycap/internal/testenv"
)

// samplesTimeout bounds hack/try-invalid-sample.sh over every invalid sample (a namespace created
// and deleted per file).
const samplesTimeout = 10 * time.Minute

// localArgs are the flags of `make run` with every port moved to ports (7 of them).
func localArgs(dir string, ports []int) []string {
	return []string{
		"--local-control-plane=" + dir,
		"--local-apiserver-port=" + strconv.Itoa(ports[0]),
		"--local-etcd-port=" + strconv.Itoa(ports[1]),
		"--grpc-bind-address=" + hostPort(ports[2]),
		"--http-bind-address=" + hostPort(ports[3]),
		"--webhook-host=127.0.0.1",
		"--webhook-port=" + strconv.Itoa(ports[4]),
		"--metrics-bind-address=" + hostPort(ports[5]),
		"--health-probe-bind-address=" + hostPort(ports[6]),
	}
}

// TestMakeRunRefusesATakenPortFirst: with one of keycap's own ports taken, `make run` stops before
// it starts etcd, and says which port and which flag in one line, not in a log record with a stack
// trace.
func TestMakeRunRefusesATakenPortFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keycap")
	}
	g := gomega.NewWithT(t)
	assets, err := testenv.AssetsDir()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	bin := buildKeycap(t)
	dir := filepath.Join(t.TempDir(), "local")
	ports := freePorts(t, 7)
	taken, err := net.Listen("tcp", hostPort(ports[6]))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = taken.Close() }()

	p := startKeycap(t, bin, assets, localArgs(dir, ports))
	p.waitExit(t)
	g.Expect(p.err).To(gomega.HaveOccurred(), "keycap must fail; output:\n%s", p.output())
	out := p.output()
	want := fmt.Sprintf("port %s is in use (health probes, --health-probe-bind-address)", hostPort(ports[6]))
	g.Expect(strings.Split(out, "\n")).To(gomega.ContainElement(gomega.And(
		gomega.HavePrefix("keycap stopped: "), gomega.ContainSubstring(want))), "the error is one line of its own:\n%s", out)
	g.Expect(out).NotTo(gomega.ContainSubstring("stacktrace"))
	g.Expect(out).NotTo(gomega.ContainSubstring(`"level":"error"`))
	g.Expect(filepath.Join(dir, "logs", "etcd.log")).NotTo(gomega.BeAnExistingFile(), "etcd must not have been started")
	g.Expect(filepath.Join(dir, "run", "etcd.pid")).NotTo(gomega.BeAnExistingFile(), "etcd must not have been started")
}

// TestMakeRunIssuerAndInvalidSamples: under `make run`, AppTokens carry an issuer that the HTTP
// port serves (discovery document and JWKS reachable on this machine); every manifest of
// config/samples/invalid is refused with its field and reason by hack/try-invalid-sample.sh,
// which leaves nothing behind; and deleting those namespaces logs no reconcile errors.
func TestMakeRunIssuerAndInvalidSamples(t *testing.T) {
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
	ports := freePorts(t, 7)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kubectl := func(args ...string) (string, error) { return runKubectl(kubectlBin, kubeconfig, args...) }

	p := startKeycap(t, bin, assets, localArgs(dir, ports))
	g.Eventually(p.output).WithTimeout(startTimeout).WithPolling(pollInterval).
		Should(gomega.ContainSubstring("keycap ready"), "keycap never printed its ready line")

	// ---- the issuer is the HTTP port, and what the discovery document points at is served ----
	issuer := "http://" + hostPort(ports[3])
	var discovery struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	g.Eventually(func() error { return getJSON(issuer+"/.well-known/openid-configuration", &discovery) }).
		WithTimeout(readyTimeout).WithPolling(pollInterval).Should(gomega.Succeed())
	g.Expect(discovery.Issuer).To(gomega.Equal(issuer))
	g.Expect(discovery.JWKSURI).To(gomega.Equal(issuer + "/.well-known/jwks.json"))
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	g.Expect(getJSON(discovery.JWKSURI, &jwks)).To(gomega.Succeed())
	g.Expect(jwks.Keys).NotTo(gomega.BeEmpty())

	apptoken := filepath.Join(testenv.RepoRoot(), "config", "samples", "apptoken.yaml")
	g.Eventually(func() error { _, err := kubectl("apply", "-f", apptoken); return err }).
		WithTimeout(startTimeout).WithPolling(time.Second).Should(gomega.Succeed())
	var token string
	g.Eventually(func() (string, error) {
		out, err := kubectl("get", "-f", apptoken, "-o", "jsonpath={.status.secretName}")
		if err != nil || out == "" {
			return "", err
		}
		encoded, err := kubectl("get", "secret", out, "-o", "jsonpath={.data.token}")
		if err != nil {
			return "", err
		}
		raw, err := base64.StdEncoding.DecodeString(encoded)
		token = string(raw)
		return token, err
	}).WithTimeout(readyTimeout).WithPolling(pollInterval).ShouldNot(gomega.BeEmpty())
	parts := strings.Split(token, ".")
	g.Expect(parts).To(gomega.HaveLen(3))
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	g.Expect(err).NotTo(gomega.HaveOccurred())
	var claims struct {
		Issuer string `json:"iss"`
	}
	g.Expect(json.Unmarshal(payload, &claims)).To(gomega.Succeed())
	g.Expect(claims.Issuer).To(gomega.Equal(issuer))
	_, err = kubectl("delete", "-f", apptoken)
	g.Expect(err).NotTo(gomega.HaveOccurred())

	// ---- every invalid sample is refused by itself, and leaves nothing behind ----
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "invalid", "*.yaml"))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(files).NotTo(gomega.BeEmpty())
	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "try-invalid-sample.sh"), files...)
	cmd.Env = append(os.Environ(), "KUBECTL="+kubectlBin, "KUBECONFIG="+kubeconfig)
	out, err := runWithTimeout(cmd, samplesTimeout)
	g.Expect(err).NotTo(gomega.HaveOccurred(), "hack/try-invalid-sample.sh:\n%s", out)
	sections := strings.Split(out, "== ")[1:]
	g.Expect(sections).To(gomega.HaveLen(len(files)), out)
	for i, file := range files {
		want := sampleHeader(t, file)
		g.Expect(sections[i]).To(gomega.HavePrefix(file), out)
		g.Expect(sections[i]).NotTo(gomega.ContainSubstring("ADMITTED"), file)
		// What kubectl answered: the section without its first line and the header it echoes.
		var answer []string
		for _, line := range strings.Split(sections[i], "\n")[1:] {
			if !strings.HasPrefix(line, "rule: ") && !strings.HasPrefix(line, "refused: ") && !strings.HasPrefix(line, "reason: ") {
				answer = append(answer, line)
			}
		}
		g.Expect(strings.Join(answer, "\n")).To(gomega.And(
			gomega.ContainSubstring(want["refused"]), gomega.ContainSubstring(want["reason"])), "%s:\n%s", file, sections[i])
	}
	left, err := kubectl("get", "apikeys,agentkeys,apptokens,licenses", "-A", "-o", "name")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(left).To(gomega.BeEmpty(), "credentials left behind")
	namespaces, err := kubectl("get", "namespaces", "-o", "name")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(namespaces).NotTo(gomega.ContainSubstring("keycap-invalid-sample-"))

	// A namespace being deleted is expected, not a reconcile error.
	for _, line := range strings.Split(p.output(), "\n") {
		if strings.Contains(line, "being terminated") {
			g.Expect(line).NotTo(gomega.ContainSubstring("Reconciler error"))
		}
	}
}

// sampleHeader reads the "# refused:" and "# reason:" lines of an invalid sample.
func sampleHeader(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		for _, key := range []string{"refused", "reason"} {
			if v, ok := strings.CutPrefix(line, "# "+key+": "); ok {
				out[key] = v
			}
		}
	}
	if out["refused"] == "" || out["reason"] == "" {
		t.Fatalf("%s: no '# refused:' or '# reason:' line", file)
	}
	return out
}

func getJSON(url string, into any) error {
	resp, err := http.Get(url) //nolint:gosec,noctx // a test's own local URL
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return json.Unmarshal(body, into)
}

// runWithTimeout runs cmd and returns its combined output; it is killed after timeout.
func runWithTimeout(cmd *exec.Cmd, timeout time.Duration) (string, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("%s took longer than %s", cmd.Path, timeout)
	}
}
