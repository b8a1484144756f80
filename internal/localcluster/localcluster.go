// Package localcluster runs a real etcd, kube-apiserver and kube-controller-manager on 127.0.0.1
// for `make run`. The controller manager runs the garbage collector, the namespace controller and
// the service-account controllers, so owner references and namespace deletion behave as in a
// cluster.
//
// Everything lives under Options.Dir:
//
//	Dir/pki/        CA, apiserver serving certificate, admin and controller-manager client
//	                certificates, service-account key
//	Dir/etcd/       etcd's data
//	Dir/logs/       etcd.log, kube-apiserver.log and kube-controller-manager.log
//	Dir/run/        pid files of the children and the lock held while a keycap uses Dir
//	Dir/kubeconfig  the admin kubeconfig (certificates embedded)
//	Dir/kube-controller-manager.kubeconfig  the controller manager's own kubeconfig
//
// State is kept between runs: a second Start on the same Dir reuses the PKI (so kubeconfigs stay
// valid) and etcd's data (so the objects applied last time are still there).
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrl "sigs.k8s.io/controller-runtime"
)

const (
	// DefaultAPIServerPort is where `make run`'s apiserver listens on 127.0.0.1.
	DefaultAPIServerPort = 6443
	// DefaultEtcdPort is etcd's client port on 127.0.0.1.
	DefaultEtcdPort = 2379

	// serviceCIDR is the apiserver's service range; serviceIP its first address (the
	// "kubernetes" Service), which the serving certificate names.
	serviceCIDR = "10.0.0.0/24"
	serviceIP   = "10.0.0.1"

	contextName = "keycap-local"

	// How long the apiserver may take to become ready; a cold etcd + apiserver needs ~10 s.
	readyTimeout = 2 * time.Minute
	// How long a child gets between SIGTERM and SIGKILL.
	stopTimeout = 20 * time.Second
)

// Options configure the local control plane.
type Options struct {
	// Dir holds all state (etcd data, certificates, kubeconfig), e.g. ".local".
	Dir string
	// AssetsDir holds the kube-apiserver and etcd binaries.
	AssetsDir string
	// OperatorNamespace is created so the operator can keep its Secrets there.
	OperatorNamespace string
	// WebhookURL is where the apiserver calls keycap's admission webhook, e.g. https://127.0.0.1:9443.
	// Empty: keycap's ValidatingWebhookConfiguration is not registered (and removed if a previous
	// run registered it), for runs without the webhook component.
	WebhookURL string
	// APIServerPort is the apiserver's port on 127.0.0.1; 0 means DefaultAPIServerPort.
	APIServerPort int
	// EtcdPort is etcd's client port on 127.0.0.1; 0 means DefaultEtcdPort.
	EtcdPort int
	// Listeners are the addresses the caller listens on once the control plane runs (keycap's own
	// ports). Start checks them, with etcd's and the apiserver's ports, before it starts anything,
	// so a taken port stops it at once instead of after the control plane came up.
	Listeners []Listener
}

// Listener is an address that must be free, and what uses it (for the error message).
type Listener struct {
	// Addr is host:port as net.Listen takes it; a port of 0, an empty Addr or "0" (a disabled
	// endpoint) is not checked.
	Addr string
	// What names the listener and the flag that moves it, e.g. "health probes,
	// --health-probe-bind-address".
	What string
}

// Cluster is a running local control plane.
type Cluster struct {
	// Config is an admin client configuration for the apiserver.
	Config *rest.Config
	// KubeconfigPath is the admin kubeconfig written under Dir.
	KubeconfigPath string

	dir      string
	lock     *os.File
	etcd     *child
	apiSrv   *child
	kcm      *child
	stopOnce sync.Once
	stopErr  error
}

// Start starts etcd and kube-apiserver, waits until the apiserver is ready, installs keycap's
// CRDs (and, when WebhookURL is set, its ValidatingWebhookConfiguration pointing at that URL),
// creates the operator's namespace, then starts kube-controller-manager and waits until its
// garbage collector deletes an object whose owner does not exist. On error nothing it started is
// left running.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	log := ctrl.Log.WithName("localcluster")
	if opts.Dir == "" || opts.AssetsDir == "" {
		return nil, errors.New("localcluster: Dir and AssetsDir are required")
	}
	if opts.APIServerPort == 0 {
		opts.APIServerPort = DefaultAPIServerPort
	}
	if opts.EtcdPort == 0 {
		opts.EtcdPort = DefaultEtcdPort
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(opts.AssetsDir, bin)); err != nil {
			return nil, fmt.Errorf("%s not found in %s (run hack/build-control-plane.sh): %w", bin, opts.AssetsDir, err)
		}
	}
	for _, d := range []string{"etcd", "logs", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}

	c := &Cluster{dir: dir, KubeconfigPath: filepath.Join(dir, "kubeconfig")}
	if c.lock, err = lockDir(filepath.Join(dir, "run", "lock")); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	// A previous keycap that died without stopping its children (SIGKILL) may have left them
	// running; we hold the lock, so they are nobody's.
	for _, name := range []string{"kube-controller-manager", "kube-apiserver", "etcd"} {
		if pid, killed := reapStale(filepath.Join(dir, "run", name+".pid"), dir); killed {
			log.Info("stopped a leftover process of an earlier run", "process", name, "pid", pid)
		}
	}
	listeners := append([]Listener{
		{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.EtcdPort)), What: "etcd, --local-etcd-port"},
		{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.APIServerPort)), What: "kube-apiserver, --local-apiserver-port"},
	}, opts.Listeners...)
	if err := checkPortsFree(listeners); err != nil {
		return nil, err
	}

	p := pki{dir: filepath.Join(dir, "pki")}
	if err := p.ensure(time.Now()); err != nil {
		return nil, fmt.Errorf("creating certificates in %s: %w", p.dir, err)
	}
	host := "https://127.0.0.1:" + strconv.Itoa(opts.APIServerPort)
	if c.Config, err = writeKubeconfig(c.KubeconfigPath, host, p); err != nil {
		return nil, err
	}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(opts.EtcdPort)
	c.etcd, err = startChild(dir, "etcd", syscall.SIGTERM, filepath.Join(opts.AssetsDir, "etcd"),
		"--name=keycap",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		// The peer port is unused by a single member; port 0 keeps it from colliding.
		"--listen-peer-urls=http://127.0.0.1:0",
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}
	c.apiSrv, err = startChild(dir, "kube-apiserver", syscall.SIGKILL, filepath.Join(opts.AssetsDir, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// No Endpoints for the "kubernetes" Service: there is no cluster network to reach it by.
		"--endpoint-reconciler-type=none",
		"--secure-port="+strconv.Itoa(opts.APIServerPort),
		"--cert-dir="+p.dir,
		"--tls-cert-file="+p.servingCert(),
		"--tls-private-key-file="+p.servingKey(),
		"--client-ca-file="+p.caCert(),
		"--service-account-key-file="+p.saVerifyingKey(),
		"--service-account-signing-key-file="+p.saSigningKey(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range="+serviceCIDR,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
	)
	if err != nil {
		return nil, err
	}
	log.Info("waiting for kube-apiserver", "url", host, "logs", filepath.Join(dir, "logs"))
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := install(ctx, c.Config, opts); err != nil {
		return nil, err
	}
	// Started after the CRDs are served, so the garbage collector watches keycap's kinds from its
	// first discovery instead of its next resync.
	if err := c.startControllerManager(ctx, opts.AssetsDir, host, p); err != nil {
		return nil, err
	}
	return c, nil
}

// Stop stops the controller manager, then the apiserver, then etcd: SIGTERM to each one's process group, SIGKILL after a
// timeout, and waits until they are gone. It may be called more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		for _, ch := range []*child{c.kcm, c.apiSrv, c.etcd} {
			if ch != nil {
				errs = append(errs, ch.stop(stopTimeout))
			}
		}
		if c.lock != nil {
			errs = append(errs, c.lock.Close())
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// waitReady polls /readyz until it answers ok, a child exits, or the timeout passes.
func (c *Cluster) waitReady(ctx context.Context) error {
	cfg := rest.CopyConfig(c.Config)
	cfg.Timeout = 5 * time.Second
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, ch := range []*child{c.etcd, c.apiSrv} {
			if exited, werr := ch.exited(); exited {
				return fmt.Errorf("%s exited (%v) before the apiserver became ready; see %s:\n%s", ch.name, werr, ch.logPath, ch.logTail()) //nolint:errorlint // nil after a clean exit: reported, not wrapped
			}
		}
		resp, err := client.Get(cfg.Host + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("/readyz answered %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready (last: %v); see %s", last, c.apiSrv.logPath) //nolint:errorlint // may be nil: reported, not wrapped
		case <-tick.C:
		}
	}
}

// writeKubeconfig writes the admin kubeconfig with the certificates embedded and returns the
// same configuration as a rest.Config.
func writeKubeconfig(path, host string, p pki) (*rest.Config, error) {
	return writeClientKubeconfig(path, host, p, adminUser, p.adminCert(), p.adminKey())
}

// writeClientKubeconfig writes a kubeconfig for user, authenticated by the client certificate in
// certFile and keyFile, with the certificates embedded, and returns it as a rest.Config.
func writeClientKubeconfig(path, host string, p pki, user, certFile, keyFile string) (*rest.Config, error) {
	ca, err := os.ReadFile(p.caCert())
	if err != nil {
		return nil, err
	}
	cert, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[contextName] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: ca}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	kc.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: user, Namespace: "default"}
	kc.CurrentContext = contextName
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, data, 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	cfg := &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: ca, CertData: cert, KeyData: key,
		},
		QPS:   50,
		Burst: 100,
	}
	return cfg, nil
}

// checkPortsFree fails with one message naming every listener whose address is taken, and the
// flag that moves it.
func checkPortsFree(listeners []Listener) error {
	var busy []string
	for _, l := range listeners {
		if _, port, err := net.SplitHostPort(l.Addr); err != nil || port == "0" {
			continue
		}
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			busy = append(busy, fmt.Sprintf("port %s is in use (%s)", l.Addr, l.What))
			continue
		}
		if err := ln.Close(); err != nil {
			return err
		}
	}
	if len(busy) == 0 {
		return nil
	}
	return fmt.Errorf("%s: stop what holds it (another make run?) or move keycap's listener with its flag, e.g. make run RUN_ARGS=--health-probe-bind-address=127.0.0.1:18081",
		strings.Join(busy, "; "))
}

// lockDir takes an exclusive, non-blocking lock on file for the life of this process (the kernel
// drops it when the process dies, however it dies), so two keycaps never share one state dir.
func lockDir(file string) (*os.File, error) {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is in use by another running keycap; stop it first", filepath.Dir(filepath.Dir(file)))
		}
		return nil, err
	}
	return f, nil
}
