// Package authz is keycap's data plane: Envoy ext_authz over gRPC, HTTP forward-auth, licence
// activation, SSO links and the JWKS, all answered from the in-memory credential index.
package authz

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Options configure the data plane.
type Options struct {
	// GRPCAddr is where the ext_authz gRPC server listens.
	GRPCAddr string
	// HTTPAddr is where forward-auth, activation, SSO and the JWKS are served.
	HTTPAddr string
	// ExtraKeyHeaders are request headers, besides x-api-key and Authorization, that may carry a key.
	ExtraKeyHeaders []string
	// CompatBodies switches denial bodies to the seeds' APIs' shapes.
	CompatBodies bool
	// OperatorNamespace holds the AppToken signing keys whose public half the JWKS publishes.
	OperatorNamespace string
}

// DataPlane is the running data plane.
type DataPlane struct{}

// SetupWithManager adds the data plane's servers and its readiness check to mgr.
func SetupWithManager(mgr ctrl.Manager, opts Options) (*DataPlane, error) {
	return &DataPlane{}, nil
}

// WaitServing blocks until the data plane serves requests (its informers have synced and its
// listeners are open) or ctx ends; it reports whether it is serving.
func (d *DataPlane) WaitServing(ctx context.Context) bool {
	<-ctx.Done()
	return false
}
