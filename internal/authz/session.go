package authz

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/session"
	"github.com/keycap-dev/keycap/internal/sso"
)

// sessionCacheSize bounds the cache of opened session cookies; when full it starts over.
const sessionCacheSize = 100_000

// sessions is the session-cookie credential source: the key set the operator rotates and a cache
// of opened cookies, so a repeated cookie costs a map lookup, not an AES-GCM open and the
// allocation of its claims.
type sessions struct {
	keys  func() *session.KeySet
	cache atomic.Pointer[sessionCache]
}

type sessionCache struct {
	keys    *session.KeySet
	entries sync.Map // cookie value -> *openedSession
	n       atomic.Int64
}

// openedSession is a cookie that opened with the key set of its cache.
type openedSession struct {
	claims session.Claims
	key    index.ObjectKey
	// slot is the credential's slot once the index has it; slots are stable for the life of an
	// object, and a deleted object's slot loads nil.
	slot atomic.Pointer[index.Slot]
}

// open returns the claims of a cookie: from the cache, or opened with the current keys.
func (s *sessions) open(value string, now time.Time) (*openedSession, Reason) {
	ks := s.keys()
	if ks == nil {
		return nil, wire.ReasonSessionInvalid
	}
	c := s.cache.Load()
	if c == nil || c.keys != ks || c.n.Load() >= sessionCacheSize {
		c = &sessionCache{keys: ks}
		s.cache.Store(c)
	}
	if e, ok := c.entries.Load(value); ok {
		o := e.(*openedSession)
		if !now.Before(o.claims.ExpiresAt) {
			return nil, wire.ReasonExpired
		}
		return o, wire.ReasonOK
	}
	claims, err := ks.Open(session.PurposeSession, value, now)
	switch {
	case err == session.ErrExpired: //nolint:errorlint // Open returns its sentinels unwrapped
		return nil, wire.ReasonExpired
	case err != nil:
		return nil, wire.ReasonSessionInvalid
	}
	o := &openedSession{claims: claims, key: index.ObjectKey{Kind: claims.Kind, Namespace: claims.Namespace, Name: claims.Name}}
	if _, loaded := c.entries.LoadOrStore(value, o); !loaded {
		c.n.Add(1)
	}
	return o, wire.ReasonOK
}

// sessionVerifier judges a session cookie: it must open, and its credential must still exist,
// be of the kind it was issued for and still stand for its sessions (session.Claims.Stands: log
// out everywhere, rotation when the spec asks, a recreated object). The authorizer then applies
// what every credential shares: disabled, expired, an agent's parent, the route. An unsafe method
// without same-site evidence is refused (CSRF).
type sessionVerifier struct{}

func (sessionVerifier) verify(a *authorizer, p wire.Presented, _ Audience, now time.Time) Decision {
	if a.sessions == nil {
		return Decision{Reason: wire.ReasonSessionInvalid}
	}
	o, reason := a.sessions.open(p.Key, now)
	if reason != wire.ReasonOK {
		return Decision{Reason: reason}
	}
	slot := o.slot.Load()
	if slot == nil {
		if slot = a.index.Slot(o.key); slot != nil {
			o.slot.Store(slot)
		}
	}
	d := judgeClaims(&o.claims, slot)
	if d.Reason == wire.ReasonOK && d.admit == wire.ReasonOK && p.CrossSite {
		d.admit = wire.ReasonCSRF
	}
	return d
}

// claimsVerifier judges the claims of a login link or an opened session (the SSO endpoints).
type claimsVerifier struct{ claims *session.Claims }

func (v claimsVerifier) verify(a *authorizer, _ wire.Presented, _ Audience, _ time.Time) Decision {
	return judgeClaims(v.claims, a.index.Slot(index.ObjectKey{Kind: v.claims.Kind, Namespace: v.claims.Namespace, Name: v.claims.Name}))
}

// judgeClaims is the session rule on the credential in slot.
func judgeClaims(c *session.Claims, slot *index.Slot) Decision {
	cred := slot.Load()
	if cred == nil || cred.Kind != c.Kind {
		// Deleted, or never known to this replica.
		return Decision{Reason: wire.ReasonSessionEnded}
	}
	d := Decision{Credential: cred, slot: slot, scopes: cred.Scopes}
	d.Identity.Scopes = cred.ScopesHeader
	d.Identity.Fields = wire.FieldAuthMethod
	d.Identity.AuthMethod = wire.AuthMethodSession
	if ad, ok := cred.AgentData(); ok {
		d.Identity.Fields |= wire.FieldAgent | wire.FieldParent
		d.Identity.Agent, d.Identity.Parent = ad.Agent, cred.ParentKey.Name
	}
	if !c.Stands(sessionBinding(cred)) {
		d.admit = wire.ReasonSessionEnded
	}
	return d
}

// sessionPolicy is an opaque key's spec.sessions as the data plane keeps it.
type sessionPolicy struct {
	notBefore     time.Time
	duration      time.Duration
	endOnRotation bool
}

// sessionPolicyOf is an opaque key's spec.sessions as the session rule reads it (nil when unset).
func sessionPolicyOf(obj keycapv1alpha1.Credential) *sessionPolicy {
	ok, isOpaque := obj.(keycapv1alpha1.OpaqueKeyCredential)
	if !isOpaque {
		return nil
	}
	sp := ok.GetOpaqueKeySpec().Sessions
	if sp == nil {
		return nil
	}
	p := &sessionPolicy{endOnRotation: sp.EndOnRotation}
	if sp.NotBefore != nil {
		p.notBefore = sp.NotBefore.Time
	}
	if sp.Duration != nil {
		p.duration = sp.Duration.Duration
	}
	return p
}

// sessionBinding is what cred says about its sessions now.
func sessionBinding(cred *index.Credential) session.Binding {
	b := session.Binding{KeyID: cred.KeyID}
	if cred.ParentKey != nil {
		b.Parent = cred.ParentKey.Name
	}
	b.CreatedAt = cred.CreatedAt.Time()
	if dv, ok := cred.Derived.(*derived); ok {
		if p := dv.sessions; p != nil {
			b.NotBefore, b.EndOnRotation = p.notBefore, p.endOnRotation
		}
	}
	return b
}

// sessionLifetime is the credential's own session lifetime (zero: the default).
func sessionLifetime(cred *index.Credential) time.Duration {
	if dv, ok := cred.Derived.(*derived); ok && dv.sessions != nil {
		return dv.sessions.duration
	}
	return 0
}

// sessionResult is the keycap_sso_session_checks_total result of a session check's reason.
func sessionResult(r Reason) string {
	switch r {
	case wire.ReasonOK:
		return sso.SessionAllowed
	case wire.ReasonSessionInvalid:
		return sso.SessionInvalid
	case wire.ReasonExpired:
		return sso.SessionExpired
	case wire.ReasonInsufficientScope, wire.ReasonWrongNamespace, wire.ReasonMissingEntitlement, wire.ReasonCSRF:
		return sso.SessionDenied
	}
	return sso.SessionEnded
}

// ssoCredentials implements sso.Credentials with the data plane's decision.
type ssoCredentials struct{ dp *DataPlane }

var _ sso.Credentials = ssoCredentials{}

func (s ssoCredentials) Ready() bool { return s.dp.ready() }

func (s ssoCredentials) login(p *wire.Presented) (sso.Login, bool) {
	if p.Session || p.License || wire.LooksLikeJWT(p.Key) || !wire.ValidCredential(p.Key) {
		return sso.Login{}, false
	}
	var req Requirements
	d := s.dp.authz.decide(p, &req, Audience{})
	if !d.Allowed() {
		return sso.Login{}, false
	}
	if s.dp.usage != nil {
		s.dp.usage.record(d.slot, d.Credential, s.dp.authz.now())
	}
	c := d.Credential
	return sso.Login{
		Identity:        session.Identity{Kind: c.Kind, Namespace: c.Namespace, Name: c.Name, Parent: d.Identity.Parent, KeyID: c.KeyID},
		SessionLifetime: sessionLifetime(c),
	}, true
}

func (s ssoCredentials) ByKey(key string) (sso.Login, bool) {
	return s.login(&wire.Presented{Key: key})
}

func (s ssoCredentials) ByHeaders(h http.Header) (sso.Login, bool) {
	var f wire.Form
	s.dp.sources.FromHTTP(h, &f)
	p, reason := s.dp.sources.Extract(&f)
	if reason != wire.ReasonOK {
		return sso.Login{}, false
	}
	return s.login(&p)
}

func (s ssoCredentials) Judge(c *session.Claims) (sso.Principal, bool) {
	var req Requirements
	p := wire.Presented{Session: true}
	d := s.dp.authz.decideWith(claimsVerifier{claims: c}, &p, &req, Audience{})
	if !d.Allowed() {
		return sso.Principal{}, false
	}
	id := &d.Identity
	return sso.Principal{Kind: id.Kind, Namespace: id.Namespace, Name: id.Name, Agent: id.Agent, Parent: id.Parent,
		Scopes: id.Scopes, SessionLifetime: sessionLifetime(d.Credential)}, true
}
