package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/rest"

	"github.com/keycap-dev/keycap/internal/localcluster"
)

// controlPlane is the local control plane (localcluster: etcd, kube-apiserver, the controller
// manager's garbage collector) with etcd and the apiserver under the chaos run's control: they
// can be frozen, killed and started again with the command lines they were started with.
type controlPlane struct {
	cluster *localcluster.Cluster
	dir     string
	cfg     *rest.Config

	mu sync.Mutex
	// restarted are the etcd and apiserver processes this program started again after a kill.
	restarted map[string]*exec.Cmd
}

func (cp *controlPlane) pid(name string) (int, error) {
	cp.mu.Lock()
	if c := cp.restarted[name]; c != nil {
		cp.mu.Unlock()
		return c.Process.Pid, nil
	}
	cp.mu.Unlock()
	b, err := os.ReadFile(filepath.Join(cp.dir, "run", name+".pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// signal sends sig to etcd or kube-apiserver.
func (cp *controlPlane) signal(name string, sig syscall.Signal) error {
	pid, err := cp.pid(name)
	if err != nil {
		return err
	}
	return syscall.Kill(pid, sig)
}

// kill SIGKILLs (or, for etcd, SIGTERMs: a restart, not a crash) name and returns a function that
// starts it again with the same command line.
func (cp *controlPlane) kill(name string, sig syscall.Signal) (restart func() error, err error) {
	pid, err := cp.pid(name)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	if err := syscall.Kill(pid, sig); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); processAlive(pid); {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond) // waiting for the kernel to reap it, no event to wait on
	}
	return func() error {
		logFile, err := os.OpenFile(filepath.Join(cp.dir, "logs", name+".restarted.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = cp.dir
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return err
		}
		go func() { _ = cmd.Wait(); _ = logFile.Close() }()
		cp.mu.Lock()
		cp.restarted[name] = cmd
		cp.mu.Unlock()
		return nil
	}, nil
}

// waitReady polls the apiserver's /readyz until it answers ok.
func (cp *controlPlane) waitReady(ctx context.Context, timeout time.Duration) error {
	cfg := rest.CopyConfig(cp.cfg)
	cfg.Timeout = 2 * time.Second
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := hc.Get(cfg.Host + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (cp *controlPlane) stop() {
	cp.mu.Lock()
	for _, c := range []*exec.Cmd{cp.restarted["kube-apiserver"], cp.restarted["etcd"]} {
		if c != nil {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
			time.Sleep(time.Second)
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
	}
	cp.mu.Unlock()
	_ = cp.cluster.Stop()
}

func processAlive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// keycap is one bin/keycap process, supervised as a kubelet would: when it exits it is started
// again after a second, unless the run is over.
type keycap struct {
	name    string
	bin     string
	args    []string
	env     []string
	logPath string
	// Addresses of its listeners ("" when the component does not run).
	grpc, http, probe, metrics, webhook string

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	restarts atomic.Int64
	stopping atomic.Bool
}

func newKeycap(name, bin, kubeconfig, dir string, components string, extra ...string) (*keycap, error) {
	k := &keycap{name: name, bin: bin, env: append(os.Environ(), "KUBECONFIG="+kubeconfig),
		logPath: filepath.Join(dir, name+".log")}
	addr := func() (string, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		defer func() { _ = l.Close() }()
		return l.Addr().String(), nil
	}
	var err error
	if k.probe, err = addr(); err != nil {
		return nil, err
	}
	if k.metrics, err = addr(); err != nil {
		return nil, err
	}
	k.args = []string{"--components=" + components, "--operator-namespace=" + operatorNamespace,
		"--health-probe-bind-address=" + k.probe, "--metrics-bind-address=" + k.metrics}
	if strings.Contains(components, "authz") {
		if k.grpc, err = addr(); err != nil {
			return nil, err
		}
		if k.http, err = addr(); err != nil {
			return nil, err
		}
		k.args = append(k.args, "--grpc-bind-address="+k.grpc, "--http-bind-address="+k.http)
	}
	if strings.Contains(components, "webhook") {
		if k.webhook, err = addr(); err != nil {
			return nil, err
		}
		_, port, _ := net.SplitHostPort(k.webhook)
		k.args = append(k.args, "--webhook-host=127.0.0.1", "--webhook-port="+port,
			"--webhook-configuration-name="+localcluster.WebhookConfigurationName)
	}
	k.args = append(k.args, extra...)
	return k, nil
}

func (k *keycap) start() error {
	logFile, err := os.OpenFile(k.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(k.bin, k.args...)
	cmd.Env = k.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return err
	}
	exited := make(chan struct{})
	k.mu.Lock()
	k.cmd, k.exited = cmd, exited
	k.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(exited)
		if k.stopping.Load() {
			return
		}
		time.Sleep(time.Second) // the kubelet's restart delay
		if !k.stopping.Load() {
			k.restarts.Add(1)
			if err := k.start(); err != nil {
				say("restarting %s: %v", k.name, err)
			}
		}
	}()
	return nil
}

// kill sends sig to the running process and waits until it has exited; the supervisor then
// starts it again.
func (k *keycap) kill(sig syscall.Signal) time.Time {
	k.mu.Lock()
	cmd, exited := k.cmd, k.exited
	k.mu.Unlock()
	t := time.Now()
	_ = cmd.Process.Signal(sig)
	<-exited
	return t
}

func (k *keycap) stop() {
	k.stopping.Store(true)
	k.mu.Lock()
	cmd, exited := k.cmd, k.exited
	k.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// ready reports whether the process's readiness probe answers 200.
func (k *keycap) ready() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + k.probe + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (k *keycap) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !k.ready() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; see %s", k.name, timeout, k.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// metric returns the value of the first sample of name on the process's metrics page.
func (k *keycap) metric(name string) (float64, bool) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + k.metrics + "/metrics")
	if err != nil {
		return 0, false
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// isLeader reports whether the operator holds the leader election lease.
func (k *keycap) isLeader() bool {
	v, ok := k.metric("leader_election_master_status")
	return ok && v == 1
}

// tcpProxy stands in for the webhook's Service: it forwards each connection to the first backend
// that accepts it, starting from a rotating one, so either operator replica can serve the
// apiserver's admission calls.
type tcpProxy struct {
	l        net.Listener
	backends []string
	next     atomic.Uint64
}

func startProxy(addr string, backends []string) (*tcpProxy, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &tcpProxy{l: l, backends: backends}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p, nil
}

func (p *tcpProxy) serve(c net.Conn) {
	defer func() { _ = c.Close() }()
	first := int(p.next.Add(1))
	var up net.Conn
	var err error
	for i := range p.backends {
		if up, err = net.DialTimeout("tcp", p.backends[(first+i)%len(p.backends)], time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	defer func() { _ = up.Close() }()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}

func (p *tcpProxy) close() { _ = p.l.Close() }
