// Package localcluster runs a real etcd and kube-apiserver on 127.0.0.1 for `make run`.
package localcluster

import (
	"context"

	"k8s.io/client-go/rest"
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
	WebhookURL string
}

// Cluster is a running local control plane.
type Cluster struct {
	// Config is an admin client configuration for the apiserver.
	Config *rest.Config
	// KubeconfigPath is the admin kubeconfig written under Dir.
	KubeconfigPath string
}

// Start starts etcd and kube-apiserver and waits until the apiserver is healthy.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	panic("not implemented")
}

// Stop stops the apiserver and etcd.
func (c *Cluster) Stop() error { return nil }
