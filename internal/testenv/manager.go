package testenv

import (
	"context"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Start starts New's control plane, changed first by configure (WebhookInstallOptions, say), and
// returns it with a client on Scheme that reads straight from the apiserver (no cache), so tests
// see what is stored. stop stops the control plane and reports a failure to stop on stderr; on an
// error nothing is left running.
func Start(configure ...func(*envtest.Environment)) (env *envtest.Environment, c client.Client, stop func(), err error) {
	if env, err = New(); err != nil {
		return nil, nil, nil, err
	}
	for _, f := range configure {
		f(env)
	}
	if _, err = env.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("starting envtest: %w", err)
	}
	stop = func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	if c, err = client.New(env.Config, client.Options{Scheme: Scheme()}); err != nil {
		stop()
		return nil, nil, nil, err
	}
	return env, c, stop, nil
}

// StartManager starts a manager on cfg with Scheme, no metrics or health probe listeners and
// controller name validation off (a test process may start several managers), after setup has
// added the components under test (the controllers, say: this package cannot import them).
// configure may change the options first (a webhook server, say). stop cancels the manager and
// waits until it has stopped, reporting an error on stderr.
func StartManager(cfg *rest.Config, setup func(ctrl.Manager) error, configure ...func(*ctrl.Options)) (stop func(), err error) {
	opts := ctrl.Options{
		Scheme:                 Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	}
	for _, f := range configure {
		f(&opts)
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, err
	}
	if err := setup(mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager stopped:", err)
		}
	}, nil
}
