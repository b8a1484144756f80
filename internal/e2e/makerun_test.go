// Package e2e drives the built keycap binary the way a user does: `make run`'s embedded control
// plane, the real kubectl, the samples from config/samples.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/keycap-dev/keycap/internal/testenv"
)

const (
	// buildTimeout bounds `go build` of bin/keycap (cold on 2 shared cores).
	buildTimeout = 10 * time.Minute
	// startTimeout bounds the start of etcd + kube-apiserver, the CRDs and keycap's components.
	startTimeout = 3 * time.Minute
	// readyTimeout bounds the controller issuing the sample's key.
	readyTimeout = time.Minute
	// collectTimeout bounds kube-controller-manager's garbage collection of an owned object.
	collectTimeout = time.Minute
	// stopTimeout bounds a clean stop after SIGTERM (the children get 20 s before SIGKILL).
	stopTimeout  = time.Minute
	pollInterval = 250 * time.Millisecond
)

// The ApiKey of config/samples/apikey.yaml.
const sampleAPIKey = "acme-backend"

// TestMakeRun runs keycap with --local-control-plane as `make run` does, applies the samples with
// kubectl and checks the issued key against its digest; then stops it with SIGTERM, checks that
// etcd, the apiserver and the controller manager are gone, and runs `make run` itself twice on the
// same state directory: the key is unchanged, deleting the ApiKey garbage-collects its Secret,
// and Ctrl-C on the job or SIGTERM to make stops everything.
func TestMakeRun(t *testing.T) {
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
	args := []string{
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
	kubectl := func(args ...string) (string, error) {
		return runKubectl(kubectlBin, filepath.Join(dir, "kubeconfig"), args...)
	}

	// ---- first run: a fresh state directory ----
	first := startKeycap(t, bin, assets, args)
	g.Eventually(first.output).WithTimeout(startTimeout).WithPolling(pollInterval).
		Should(gomega.ContainSubstring("keycap ready"), "keycap never printed its ready line")
	out, err := kubectl("get", "crd", "-o", "name")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	for _, crd := range []string{"apikeys", "agentkeys", "apptokens", "licenses"} {
		g.Expect(out).To(gomega.ContainSubstring("customresourcedefinition.apiextensions.k8s.io/" + crd + ".keycap.dev"))
	}
	out, err = kubectl("get", "namespace", "keycap-system", "-o", "name")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(out).To(gomega.Equal("namespace/keycap-system\n"))

	// The webhook serves once keycap has injected its CA; until then the apiserver refuses.
	samples := filepath.Join(testenv.RepoRoot(), "config", "samples") + "/"
	g.Eventually(func() error { _, err := kubectl("apply", "-f", samples); return err }).
		WithTimeout(startTimeout).WithPolling(time.Second).Should(gomega.Succeed())

	out, err = kubectl("get", "apikeys")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	g.Expect(header).To(gomega.ContainElements("NAME", "READY", "HINT", "EXPIRES", "AGE"), "kubectl get apikeys:\n%s", out)
	g.Expect(out).To(gomega.ContainSubstring(sampleAPIKey))

	digest := waitIssued(g, kubectl)

	// ---- SIGTERM: everything keycap started is gone ----
	children := first.childPIDs(t, dir)
	first.terminate(t)
	for name, pid := range children {
		g.Expect(processAlive(pid)).To(gomega.BeFalse(), "%s (pid %d) still running after keycap stopped", name, pid)
	}
	for _, p := range ports[:2] {
		g.Expect(portFree(p)).To(gomega.Succeed(), "port %d still bound after keycap stopped", p)
	}

	// ---- a run killed hard (SIGKILL: no chance to stop its children) does not strand them,
	// and the next run starts ----
	killed := startKeycap(t, bin, assets, args)
	g.Eventually(killed.output).WithTimeout(startTimeout).WithPolling(pollInterval).
		Should(gomega.ContainSubstring("keycap ready"))
	children = killed.childPIDs(t, dir)
	g.Expect(killed.cmd.Process.Kill()).To(gomega.Succeed())
	killed.waitExit(t)
	for name, pid := range children {
		g.Eventually(func() bool { return processAlive(pid) }).WithTimeout(stopTimeout).WithPolling(pollInterval).
			Should(gomega.BeFalse(), "%s (pid %d) outlived a SIGKILLed keycap", name, pid)
	}

	// ---- second run, through `make run`, on the kept state: the key and its Secret are still
	// there; Ctrl-C (SIGINT to the foreground process group) stops everything ----
	second := startMakeRun(t, t.TempDir(), dir, args[1:])
	g.Eventually(second.output).WithTimeout(buildTimeout + startTimeout).WithPolling(pollInterval).
		Should(gomega.ContainSubstring("keycap ready"))
	g.Expect(waitIssued(g, kubectl)).To(gomega.Equal(digest), "a restart on the kept state must not change the key")
	// make run has a garbage collector: deleting the ApiKey takes its owned Secret with it.
	_, err = kubectl("delete", "apikey", sampleAPIKey, "--wait=false")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Eventually(func() (string, error) {
		return kubectl("get", "secret", "--ignore-not-found", "-o", "name", sampleAPIKey)
	}).WithTimeout(collectTimeout).WithPolling(pollInterval).Should(gomega.BeEmpty(), "the Secret of a deleted ApiKey must be garbage-collected")
	children = second.childPIDs(t, dir)
	second.interruptGroup(t)
	for name, pid := range children {
		g.Expect(processAlive(pid)).To(gomega.BeFalse(), "%s (pid %d) still running after Ctrl-C on make run", name, pid)
	}

	// ---- third run: SIGTERM to make alone reaches keycap too ----
	third := startMakeRun(t, t.TempDir(), dir, args[1:])
	g.Eventually(third.output).WithTimeout(buildTimeout + startTimeout).WithPolling(pollInterval).
		Should(gomega.ContainSubstring("keycap ready"))
	children = third.childPIDs(t, dir)
	g.Expect(third.cmd.Process.Signal(syscall.SIGTERM)).To(gomega.Succeed())
	third.waitExit(t)
	g.Expect(third.output()).NotTo(gomega.ContainSubstring("keycap stopped"))
	for name, pid := range children {
		g.Expect(processAlive(pid)).To(gomega.BeFalse(), "%s (pid %d) still running after SIGTERM to make", name, pid)
	}
}

// waitIssued waits until the sample ApiKey is Ready, checks that its Secret's key hashes to
// status.digests[0], and returns that digest.
func waitIssued(g *gomega.WithT, kubectl func(...string) (string, error)) string {
	g.Eventually(func() (string, error) {
		return kubectl("get", "apikey", sampleAPIKey, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	}).WithTimeout(readyTimeout).WithPolling(pollInterval).Should(gomega.Equal("True"), "ApiKey %s never became Ready", sampleAPIKey)

	digest, err := kubectl("get", "apikey", sampleAPIKey, "-o", "jsonpath={.status.digests[0]}")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	secretName, err := kubectl("get", "apikey", sampleAPIKey, "-o", "jsonpath={.status.secretName}")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(secretName).To(gomega.Equal(sampleAPIKey))
	encoded, err := kubectl("get", "secret", secretName, "-o", "jsonpath={.data.api-key}")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	key, err := base64.StdEncoding.DecodeString(encoded)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(key).To(gomega.HavePrefix("acme_"))
	sum := sha256.Sum256(key)
	g.Expect(hex.EncodeToString(sum[:])).To(gomega.Equal(digest), "sha256 of the Secret's api-key is not status.digests[0]")
	return digest
}

// kubectlCmd runs kubectl and returns its stdout; the error carries its stderr.
func kubectlCmd(kubectlBin string, args ...string) (string, error) {
	cmd := exec.Command(kubectlBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildKeycap builds the keycap binary once per test run, into a temporary directory.
func buildKeycap(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "keycap-e2e-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "keycap")
		cmd := exec.Command("go", "build", "-o", builtBin, ".")
		cmd.Dir = testenv.RepoRoot()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if buildErr = cmd.Start(); buildErr != nil {
			return
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case buildErr = <-done:
			if buildErr != nil {
				buildErr = fmt.Errorf("go build: %w\n%s", buildErr, out.String())
			}
		case <-time.After(buildTimeout):
			_ = cmd.Process.Kill()
			<-done
			buildErr = fmt.Errorf("go build took longer than %s", buildTimeout)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// keycapProcess is a running bin/keycap with its output collected.
type keycapProcess struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

func startKeycap(t *testing.T, bin, assets string, args []string) *keycapProcess {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBEBUILDER_ASSETS="+assets)
	return startProcess(t, cmd)
}

// startMakeRun runs `make run` in its own process group, as a shell runs a foreground job, with
// the binary built into binDir and RUN_ARGS moving every port to the test's.
func startMakeRun(t *testing.T, binDir, dir string, portArgs []string) *keycapProcess {
	t.Helper()
	cmd := exec.Command("make", "--no-print-directory", "run",
		"LOCALBIN="+binDir, "LOCAL_DIR="+dir, "RUN_ARGS="+strings.Join(portArgs, " "))
	cmd.Dir = testenv.RepoRoot()
	// Under `make test`, the outer make's MAKEFLAGS would hand its command-line variables (and a
	// jobserver this process does not have) to this make.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "MAKEFLAGS" && name != "MFLAGS" && name != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return startProcess(t, cmd)
}

func startProcess(t *testing.T, cmd *exec.Cmd) *keycapProcess {
	t.Helper()
	p := &keycapProcess{cmd: cmd, done: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting keycap: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.mu.Lock()
			p.out.Write(sc.Bytes())
			p.out.WriteByte('\n')
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = p.cmd.Wait()
		_ = pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			// A failed test still stops what it started: SIGTERM lets keycap stop its children.
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(stopTimeout):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("keycap output:\n%s", p.output())
		}
	})
	return p
}

func (p *keycapProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// childPIDs reads the pids of etcd, kube-apiserver and kube-controller-manager from the state
// directory.
func (p *keycapProcess) childPIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	pids := map[string]int{}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		data, err := os.ReadFile(filepath.Join(dir, "run", name+".pid"))
		if err != nil {
			t.Fatalf("pid file of %s: %v", name, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || !processAlive(pid) {
			t.Fatalf("%s is not running (pid file %q)", name, data)
		}
		pids[name] = pid
	}
	return pids
}

// terminate sends SIGTERM and waits for a clean exit.
func (p *keycapProcess) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	p.waitExit(t)
	if p.err != nil {
		t.Fatalf("keycap exited with %v after SIGTERM; output:\n%s", p.err, p.output())
	}
}

// interruptGroup sends SIGINT to the whole process group, as Ctrl-C on a terminal does, and
// waits for make to exit. make itself exits by the signal, so only keycap's log tells whether it
// stopped cleanly: it logs "keycap stopped" only on an error.
func (p *keycapProcess) interruptGroup(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatalf("SIGINT: %v", err)
	}
	p.waitExit(t)
	if strings.Contains(p.output(), "keycap stopped") {
		t.Fatalf("keycap failed to stop cleanly on Ctrl-C; output:\n%s", p.output())
	}
}

func (p *keycapProcess) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		t.Fatalf("%s did not exit within %s of the signal", p.cmd.Path, stopTimeout)
	}
}

// processAlive reports whether pid is a live (non-zombie) process.
func processAlive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

func portFree(port int) error {
	l, err := net.Listen("tcp", hostPort(port))
	if err != nil {
		return err
	}
	return l.Close()
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
