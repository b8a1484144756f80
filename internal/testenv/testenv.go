// Package testenv starts the real control plane (kube-apiserver + etcd built by
// hack/build-control-plane.sh) for integration tests, with keycap's CRDs installed.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// RepoRoot is the root of the keycap module, found from this file's location so tests work from
// any package directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir returns the directory with kube-apiserver, kube-controller-manager, etcd and kubectl:
// $KUBEBUILDER_ASSETS when set (as `make test` does), otherwise the output of
// hack/build-control-plane.sh, which builds the binaries once and caches them, so a plain
// `go test ./...` works too.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(RepoRoot(), "hack", "build-control-plane.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building the control plane: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := lines[len(lines)-1]
	// envtest and kubectl-based tests read it from the environment.
	_ = os.Setenv("KUBEBUILDER_ASSETS", dir)
	return dir, nil
}

// Kubectl returns the path of the kubectl built with the control plane.
func Kubectl() (string, error) {
	dir, err := AssetsDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "kubectl"), nil
}

// Scheme returns a scheme with the Kubernetes built-in kinds and keycap's kinds.
func Scheme() *kruntime.Scheme {
	s := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := keycapv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// New returns an envtest environment on the real control plane with keycap's CRDs. The caller may
// add WebhookInstallOptions before calling Start.
func New() (*envtest.Environment, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme(),
	}, nil
}
