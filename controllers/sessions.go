package controllers

import (
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/keycap-dev/keycap/internal/session"
	"github.com/keycap-dev/keycap/internal/sessionkeys"
	"github.com/keycap-dev/keycap/internal/sso"
)

// addSessions adds the operator's side of SSO sessions, both leader-elected Runnables in the
// operator namespace: the session key Secret (created on first start, rotated with overlap; the
// data plane seals and opens session cookies and login links with it) and the collector of the
// Leases that record redeemed login links. Both read through the APIReader, so the operator
// needs no cache of Secrets or Leases for them. (Its Secret and Lease verbs are the controllers'.)
func addSessions(mgr ctrl.Manager, opts Options) error {
	keys := sessionkeys.NewManager(mgr.GetClient(), mgr.GetAPIReader(), opts.OperatorNamespace, session.Policy{}, opts.Clock)
	if err := mgr.Add(keys); err != nil {
		return fmt.Errorf("adding the session key set: %w", err)
	}
	if err := mgr.Add(&sso.LinkCollector{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: opts.OperatorNamespace, Clock: opts.Clock}); err != nil {
		return fmt.Errorf("adding the login-link collector: %w", err)
	}
	return nil
}
