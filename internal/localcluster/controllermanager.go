package localcluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
)

// controllers are the kube-controller-manager controllers `make run` runs: owner-reference
// garbage collection, namespace deletion, and each namespace's "default" ServiceAccount with
// tokens for service-account token Secrets. Nothing that needs nodes or a cloud.
var controllers = []string{
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
}

// gcProbePrefix names the ConfigMaps Start creates to see the garbage collector at work.
const gcProbePrefix = "keycap-gc-probe-"

// startControllerManager starts kube-controller-manager with a kubeconfig of its own (user
// system:kube-controller-manager, bound to its ClusterRole by the apiserver's default RBAC policy)
// and waits until its garbage collector works.
//
// Each controller talks to the apiserver as its own service account in kube-system
// (--use-service-account-credentials), as in a kubeadm cluster: the default policy grants the
// system:kube-controller-manager user only what starting controllers needs (it may not delete
// ConfigMaps, say); the controllers' rights are in the system:controller:* roles it binds to
// those service accounts.
func (c *Cluster) startControllerManager(ctx context.Context, assetsDir, host string, p pki) error {
	kubeconfig := filepath.Join(c.dir, "kube-controller-manager.kubeconfig")
	if _, err := writeClientKubeconfig(kubeconfig, host, p, controllerManagerUser, p.kcmCert(), p.kcmKey()); err != nil {
		return err
	}
	var err error
	c.kcm, err = startChild(c.dir, "kube-controller-manager", syscall.SIGKILL, filepath.Join(assetsDir, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--controllers="+strings.Join(controllers, ","),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+p.saSigningKey(),
		"--root-ca-file="+p.caCert(),
		"--leader-elect=false",
		// No serving port: nothing scrapes or probes it, and none can clash with another run's.
		"--secure-port=0",
		"--bind-address=127.0.0.1",
	)
	if err != nil {
		return err
	}
	ctrl.Log.WithName("localcluster").Info("waiting for kube-controller-manager's garbage collector", "logs", c.kcm.logPath)
	return c.waitGarbageCollector(ctx)
}

// waitGarbageCollector creates a ConfigMap whose owner does not exist and polls until the garbage
// collector has deleted it: proof that the controller manager runs, is authorized, and has
// synced its view of the cluster.
func (c *Cluster) waitGarbageCollector(ctx context.Context) error {
	core, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	probe, err := core.CoreV1().ConfigMaps(metav1.NamespaceSystem).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: gcProbePrefix,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1",
				Kind:       "ConfigMap",
				Name:       gcProbePrefix + "absent-owner",
				UID:        uuid.NewUUID(),
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating the garbage-collector probe: %w", err)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, ch := range []*child{c.etcd, c.apiSrv, c.kcm} {
			if exited, werr := ch.exited(); exited {
				return fmt.Errorf("%s exited (%v) before the garbage collector ran; see %s:\n%s", ch.name, werr, ch.logPath, ch.logTail()) //nolint:errorlint // nil after a clean exit: reported, not wrapped
			}
		}
		_, err := core.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, probe.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			last = err
		default:
			last = fmt.Errorf("ConfigMap %s/%s, owned by an object that does not exist, is still there", probe.Namespace, probe.Name)
		}
		select {
		case <-ctx.Done():
			// The garbage collector removes the probe when it gets there; this is only tidiness.
			cleanup, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = core.CoreV1().ConfigMaps(metav1.NamespaceSystem).Delete(cleanup, probe.Name, metav1.DeleteOptions{})
			cancel()
			return fmt.Errorf("kube-controller-manager's garbage collector not working (last: %v); see %s:\n%s", last, c.kcm.logPath, c.kcm.logTail()) //nolint:errorlint // may be nil: reported, not wrapped
		case <-tick.C:
		}
	}
}
