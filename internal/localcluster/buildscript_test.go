package localcluster

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/keycap-dev/keycap/internal/testenv"
)

// scriptTimeout bounds how long the build script takes to notice the other build and, once it is
// done, to finish.
const scriptTimeout = time.Minute

// syncBuffer is a bytes.Buffer safe for the writer goroutine of exec and the test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A second hack/build-control-plane.sh, started while another holds the build lock, says that it
// waits, keeps saying so with what the other build is doing, and once the other build has put the
// binaries in place prints their directory without building anything.
func TestBuildScriptWaitsVisiblyForAnotherBuild(t *testing.T) {
	g := gomega.NewWithT(t)
	cache := t.TempDir()
	lock, err := os.OpenFile(filepath.Join(cache, "build.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = lock.Close() }()
	g.Expect(syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)).To(gomega.Succeed())
	// What the other build's log line says.
	g.Expect(os.WriteFile(filepath.Join(cache, "build.progress"), []byte("[12m30s] still compiling kube-apiserver\n"), 0o600)).To(gomega.Succeed())

	cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "hack", "build-control-plane.sh"))
	cmd.Env = append(os.Environ(), "KEYCAP_CACHE="+cache, "PROGRESS_INTERVAL=1", "KUBE_VERSION=v1.0.0", "ETCD_VERSION=v3.0.0")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Its own process group, so that a failed test also kills the script's ticker subshell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = scriptTimeout
	g.Expect(cmd.Start()).To(gomega.Succeed())
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})

	g.Eventually(stderr.String).WithTimeout(scriptTimeout).Should(gomega.And(
		gomega.ContainSubstring("another build of the control plane is running"),
		gomega.ContainSubstring("still waiting for the other build of the control plane (it is at: [12m30s] still compiling kube-apiserver)"),
	))

	// The other build finishes: its binaries are in place and it releases the lock.
	binDir := filepath.Join(cache, "control-plane-v1.0.0-etcd-v3.0.0")
	g.Expect(os.MkdirAll(binDir, 0o755)).To(gomega.Succeed())
	for _, bin := range []string{"kube-apiserver", "kube-controller-manager", "kubectl", "etcd"} {
		g.Expect(os.WriteFile(filepath.Join(binDir, bin), []byte("#!/bin/sh\n"), 0o700)).To(gomega.Succeed()) //nolint:gosec // an executable stand-in
	}
	g.Expect(syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)).To(gomega.Succeed())

	select {
	case <-done:
		g.Expect(waitErr).NotTo(gomega.HaveOccurred(), stderr.String())
	case <-time.After(scriptTimeout):
		t.Fatalf("the script did not finish after the other build did; stderr:\n%s", stderr.String())
	}
	g.Expect(strings.TrimSpace(stdout.String())).To(gomega.Equal(binDir))
	g.Expect(stderr.String()).NotTo(gomega.ContainSubstring("building"), "nothing is built")
}
