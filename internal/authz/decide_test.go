package authz

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/signing"
)

// decisionWorld is one test's data plane, in process, with a clock of its own and one credential
// of each kind: an ApiKey (and its previous key in a rotation's grace), an AgentKey under it, an
// AppToken with a genuinely signed token, and a License with one activated instance.
type decisionWorld struct {
	clk    *clocktesting.FakeClock
	ix     *index.Index
	dp     *DataPlane
	signer signerFunc
	kid    string

	apiKey, previousKey, agentKey, licenseKey, token string
	ak                                               *keycapv1alpha1.ApiKey
	agent                                            *keycapv1alpha1.AgentKey
	at                                               *keycapv1alpha1.AppToken
	lic                                              *keycapv1alpha1.License
}

type signerFunc func() (string, ed25519.PrivateKey)

func (f signerFunc) Current() (string, ed25519.PrivateKey) { return f() }

type keyMap map[string]ed25519.PublicKey

func (m keyMap) PublicKey(kid string) (ed25519.PublicKey, bool) { k, ok := m[kid]; return k, ok }

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func newDecisionWorld(t *testing.T) *decisionWorld {
	t.Helper()
	g := gomega.NewWithT(t)
	w := &decisionWorld{clk: clocktesting.NewFakeClock(t0), ix: index.New(), kid: "kid-1"}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	w.signer = func() (string, ed25519.PrivateKey) { return w.kid, priv }
	w.dp = testDataPlane(w.ix, w.clk, true, false)
	w.dp.authz.verifier = apptoken.NewVerifier(keyMap{w.kid: pub}, apptoken.VerifierOptions{Issuer: signing.DefaultIssuer, Clock: w.clk})

	w.apiKey, _ = keys.Generate("kc")
	w.previousKey, _ = keys.Generate("kc")
	w.ak = &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "main", CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))}}
	w.ak.Spec.Scopes = []string{"videos:read", "videos:write"}
	until := metav1.NewTime(t0.Add(time.Hour))
	w.ak.Status.Digests = []string{keys.Digest(w.apiKey), keys.Digest(w.previousKey)}
	w.ak.Status.PreviousKeyValidUntil = &until
	w.ak.Status.KeyID = keys.KeyID(w.ak.Status.Digests[0])
	w.upsert(w.ak)

	w.agentKey, _ = keys.Generate(keycapv1alpha1.AgentKeyPrefix)
	w.agent = &keycapv1alpha1.AgentKey{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "bot"}}
	w.agent.Spec.APIKeyRef.Name, w.agent.Spec.Agent = "main", "agent-7"
	w.agent.Spec.Scopes = []string{"videos:read", "videos:delete"}
	w.agent.Status.Digests = []string{keys.Digest(w.agentKey)}
	w.upsert(w.agent)

	w.at = &keycapv1alpha1.AppToken{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "reports"}}
	w.at.Spec.Scopes = []string{"reports:read"}
	w.at.Status.KeyID = "kat_0123456789abcdef0123456789abcdef"
	w.upsert(w.at)
	w.token = w.issue(t, apptoken.Input{})

	w.licenseKey, _ = keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
	w.lic = &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "pro"}}
	w.lic.Spec.Entitlements = []string{"sso"}
	w.lic.Spec.MaxInstances = 1
	w.lic.Spec.HeartbeatTimeout = &metav1.Duration{Duration: time.Hour}
	w.lic.Status.Digests = []string{keys.Digest(w.licenseKey)}
	w.lic.Status.Activations = []keycapv1alpha1.LicenseActivation{
		{InstanceID: "node-1", ActivatedAt: metav1.NewTime(t0.Add(-2 * time.Hour)), LastSeenAt: metav1.NewTime(t0)},
	}
	w.upsert(w.lic)
	return w
}

func (w *decisionWorld) upsert(obj keycapv1alpha1.Credential) { w.ix.Upsert(project(obj)) }

// issue signs a token for the world's AppToken, changed by in.
func (w *decisionWorld) issue(t *testing.T, in apptoken.Input) string {
	t.Helper()
	if in.Issuer == "" {
		in.Issuer = signing.DefaultIssuer
	}
	if in.KeyID == "" {
		in.KeyID = w.at.Status.KeyID
	}
	if in.Org == "" {
		in.Org = "acme"
	}
	if in.Audiences == nil {
		in.Audiences = []string{"reports"}
	}
	if in.Scopes == nil {
		in.Scopes = []string{"reports:read", "reports:write"}
	}
	if in.IssuedAt.IsZero() {
		in.IssuedAt = w.clk.Now()
	}
	if in.Lifetime == 0 {
		in.Lifetime = time.Hour
	}
	if in.Subject == "" {
		in.Subject = "acme/reports"
	}
	issued, err := apptoken.Issue(w.signer, in)
	gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred())
	return issued.Token
}

// check runs one request through the pipeline both transports share, headers as HTTP gives them.
func (w *decisionWorld) check(h http.Header, req Requirements, aud ...Audience) Decision {
	var f wire.Form
	w.dp.sources.FromHTTP(h, &f)
	var a Audience
	if len(aud) > 0 {
		a = aud[0]
	}
	_, d := w.dp.check(&f, &req, a)
	return d
}

func key(k string) http.Header      { return http.Header{"X-Api-Key": {k}} }
func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
func licensed(k, instance string) http.Header {
	return http.Header{"Licensekey": {k}, "Instanceid": {instance}}
}

// TestDecisionReasons is every reason code of every kind, decided in process on a fake clock.
func TestDecisionReasons(t *testing.T) {
	cases := map[string]struct {
		// arrange changes the world before the request (nil: as built).
		arrange func(t *testing.T, w *decisionWorld)
		request func(t *testing.T, w *decisionWorld) http.Header
		route   Requirements
		aud     Audience
		want    wire.Reason
	}{
		"no credential is MISSING": {
			request: func(*testing.T, *decisionWorld) http.Header { return http.Header{} }, want: wire.ReasonMissing,
		},
		"not ready denies a valid key": {
			arrange: func(_ *testing.T, w *decisionWorld) {
				w.dp.synced = func() bool { return false }
				w.dp.isServing.Store(false)
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.apiKey) }, want: wire.ReasonNotReady,
		},
		"not ready and no credential is NOT_READY": {
			arrange: func(_ *testing.T, w *decisionWorld) { w.dp.synced = func() bool { return false } },
			request: func(*testing.T, *decisionWorld) http.Header { return http.Header{} }, want: wire.ReasonNotReady,
		},
		"two different credentials are AMBIGUOUS": {
			request: func(_ *testing.T, w *decisionWorld) http.Header {
				return http.Header{"X-Api-Key": {w.apiKey}, "Authorization": {"Bearer " + w.agentKey}}
			},
			want: wire.ReasonAmbiguous,
		},

		"ApiKey: allowed": {request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.apiKey) }, want: wire.ReasonOK},
		"ApiKey: a bad checksum is MALFORMED": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.apiKey[:len(w.apiKey)-4] + "0000") }, want: wire.ReasonMalformed,
		},
		"ApiKey: an unknown key is NOT_FOUND": {
			request: func(*testing.T, *decisionWorld) http.Header { k, _ := keys.Generate("kc"); return key(k) }, want: wire.ReasonNotFound,
		},
		"ApiKey: DISABLED": {
			arrange: func(_ *testing.T, w *decisionWorld) { w.ak.Spec.Disabled = true; w.upsert(w.ak) },
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.apiKey) }, want: wire.ReasonDisabled,
		},
		"ApiKey: spec.duration reached at request time is EXPIRED": {
			arrange: func(_ *testing.T, w *decisionWorld) {
				w.ak.Spec.Duration = &metav1.Duration{Duration: 2 * time.Hour}
				w.upsert(w.ak)
				w.clk.Step(time.Hour)
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.apiKey) }, want: wire.ReasonExpired,
		},
		"ApiKey: the previous key within its grace is allowed": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.previousKey) }, want: wire.ReasonOK,
		},
		"ApiKey: the previous key after its grace is EXPIRED": {
			arrange: func(_ *testing.T, w *decisionWorld) { w.clk.Step(time.Hour) },
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.previousKey) }, want: wire.ReasonExpired,
		},
		"ApiKey: a scope it lacks is INSUFFICIENT_SCOPE": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.apiKey) },
			route:   Requirements{Scopes: []string{"videos:delete"}}, want: wire.ReasonInsufficientScope,
		},
		"ApiKey: another tenant's route is WRONG_NAMESPACE": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.apiKey) },
			route:   Requirements{Namespaces: []string{"other"}}, want: wire.ReasonWrongNamespace,
		},
		"ApiKey: a route requiring an entitlement is MISSING_ENTITLEMENT": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.apiKey) },
			route:   Requirements{Entitlements: []string{"sso"}}, want: wire.ReasonMissingEntitlement,
		},
		"ApiKey: a licence key presented as an API key is NOT_FOUND": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.licenseKey) }, want: wire.ReasonNotFound,
		},

		"AgentKey: allowed with the scopes it shares with its parent": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.agentKey) },
			route:   Requirements{Scopes: []string{"videos:read"}}, want: wire.ReasonOK,
		},
		"AgentKey: a scope only the agent key names is INSUFFICIENT_SCOPE": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.agentKey) },
			route:   Requirements{Scopes: []string{"videos:delete"}}, want: wire.ReasonInsufficientScope,
		},
		"AgentKey: its parent's scope change narrows it": {
			arrange: func(t *testing.T, w *decisionWorld) {
				gomega.NewWithT(t).Expect(w.check(key(w.agentKey), Requirements{Scopes: []string{"videos:read"}}).Reason).To(gomega.Equal(wire.ReasonOK))
				w.ak.Spec.Scopes = []string{"videos:write"}
				w.upsert(w.ak)
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.agentKey) },
			route:   Requirements{Scopes: []string{"videos:read"}}, want: wire.ReasonInsufficientScope,
		},
		"AgentKey: DISABLED": {
			arrange: func(_ *testing.T, w *decisionWorld) { w.agent.Spec.Disabled = true; w.upsert(w.agent) },
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.agentKey) }, want: wire.ReasonDisabled,
		},
		"AgentKey: EXPIRED": {
			arrange: func(_ *testing.T, w *decisionWorld) {
				at := metav1.NewTime(t0)
				w.agent.Spec.ExpiresAt = &at
				w.upsert(w.agent)
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.agentKey) }, want: wire.ReasonExpired,
		},
		"AgentKey: a disabled parent is PARENT_INACTIVE": {
			arrange: func(_ *testing.T, w *decisionWorld) { w.ak.Spec.Disabled = true; w.upsert(w.ak) },
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.agentKey) }, want: wire.ReasonParentInactive,
		},
		"AgentKey: a parent expiring with no watch event is PARENT_INACTIVE": {
			arrange: func(_ *testing.T, w *decisionWorld) {
				at := metav1.NewTime(t0.Add(time.Minute))
				w.ak.Spec.ExpiresAt = &at
				w.upsert(w.ak)
				w.clk.Step(time.Minute)
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.agentKey) }, want: wire.ReasonParentInactive,
		},
		"AgentKey: a deleted parent is PARENT_INACTIVE": {
			arrange: func(_ *testing.T, w *decisionWorld) {
				w.ix.Delete(index.ObjectKey{Kind: keycapv1alpha1.KindApiKey, Namespace: "acme", Name: "main"})
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return key(w.agentKey) }, want: wire.ReasonParentInactive,
		},

		"AppToken: allowed": {request: func(_ *testing.T, w *decisionWorld) http.Header { return bearer(w.token) }, want: wire.ReasonOK},
		"AppToken: DISABLED": {
			arrange: func(_ *testing.T, w *decisionWorld) { w.at.Spec.Disabled = true; w.upsert(w.at) },
			request: func(_ *testing.T, w *decisionWorld) http.Header { return bearer(w.token) }, want: wire.ReasonDisabled,
		},
		"AppToken: its spec.expiresAt reached at request time is EXPIRED": {
			arrange: func(_ *testing.T, w *decisionWorld) {
				at := metav1.NewTime(t0.Add(time.Minute))
				w.at.Spec.ExpiresAt = &at
				w.upsert(w.at)
				w.clk.Step(time.Minute)
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return bearer(w.token) }, want: wire.ReasonExpired,
		},
		"AppToken: a token past its exp is EXPIRED": {
			arrange: func(_ *testing.T, w *decisionWorld) { w.clk.Step(2 * time.Hour) },
			request: func(_ *testing.T, w *decisionWorld) http.Header { return bearer(w.token) }, want: wire.ReasonExpired,
		},
		"AppToken: a token from the future is NOT_YET_VALID": {
			request: func(t *testing.T, w *decisionWorld) http.Header {
				return bearer(w.issue(t, apptoken.Input{IssuedAt: w.clk.Now().Add(time.Hour)}))
			},
			want: wire.ReasonNotYetValid,
		},
		"AppToken: another issuer is WRONG_ISSUER": {
			request: func(t *testing.T, w *decisionWorld) http.Header {
				return bearer(w.issue(t, apptoken.Input{Issuer: "https://evil.example"}))
			},
			want: wire.ReasonWrongIssuer,
		},
		"AppToken: an unpublished kid is UNKNOWN_KEY": {
			request: func(t *testing.T, w *decisionWorld) http.Header {
				w.kid = "other"
				return bearer(w.issue(t, apptoken.Input{}))
			},
			want: wire.ReasonUnknownKey,
		},
		"AppToken: another signature is INVALID_SIGNATURE": {
			request: func(t *testing.T, w *decisionWorld) http.Header {
				other := w.issue(t, apptoken.Input{Subject: "x"})
				return bearer(w.token[:len(w.token)-86] + other[len(other)-86:])
			},
			want: wire.ReasonInvalidSignature,
		},
		"AppToken: a route's other audience is WRONG_AUDIENCE": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return bearer(w.token) },
			aud:     Audience{Name: "billing"}, want: wire.ReasonWrongAudience,
		},
		"AppToken: a token for another org is NOT_FOUND": {
			request: func(t *testing.T, w *decisionWorld) http.Header {
				return bearer(w.issue(t, apptoken.Input{Org: "other"}))
			},
			want: wire.ReasonNotFound,
		},
		"AppToken: a scope the AppToken no longer grants is INSUFFICIENT_SCOPE": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return bearer(w.token) },
			route:   Requirements{Scopes: []string{"reports:write"}}, want: wire.ReasonInsufficientScope,
		},
		"AppToken: a token issued before status.tokensNotBefore is REVOKED": {
			arrange: func(_ *testing.T, w *decisionWorld) {
				w.clk.Step(time.Minute)
				nb := metav1.NewTime(w.clk.Now())
				w.at.Status.TokensNotBefore = &nb
				w.upsert(w.at)
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return bearer(w.token) }, want: wire.ReasonRevoked,
		},
		"AppToken: a token issued at status.tokensNotBefore is allowed": {
			arrange: func(_ *testing.T, w *decisionWorld) {
				nb := metav1.NewTime(t0)
				w.at.Status.TokensNotBefore = &nb
				w.upsert(w.at)
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return bearer(w.token) }, want: wire.ReasonOK,
		},
		"AppToken: a JWT that does not parse is MALFORMED": {
			request: func(*testing.T, *decisionWorld) http.Header { return bearer("eyJhbGciOiJFZERTQSJ9.e30.x") },
			want:    wire.ReasonMalformed,
		},

		"License: allowed with its entitlement": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return licensed(w.licenseKey, "node-1") },
			route:   Requirements{Entitlements: []string{"sso"}}, want: wire.ReasonOK,
		},
		"License: a bad key is MALFORMED": {
			request: func(*testing.T, *decisionWorld) http.Header { return licensed("kclic_nope", "node-1") }, want: wire.ReasonMalformed,
		},
		"License: an unknown licence is NOT_FOUND": {
			request: func(*testing.T, *decisionWorld) http.Header {
				k, _ := keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
				return licensed(k, "node-1")
			},
			want: wire.ReasonNotFound,
		},
		"License: DISABLED": {
			arrange: func(_ *testing.T, w *decisionWorld) { w.lic.Spec.Disabled = true; w.upsert(w.lic) },
			request: func(_ *testing.T, w *decisionWorld) http.Header { return licensed(w.licenseKey, "node-1") }, want: wire.ReasonDisabled,
		},
		"License: its spec.expiresAt reached at request time is EXPIRED": {
			arrange: func(_ *testing.T, w *decisionWorld) {
				at := metav1.NewTime(t0.Add(time.Minute))
				w.lic.Spec.ExpiresAt = &at
				w.upsert(w.lic)
				w.clk.Step(time.Minute)
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return licensed(w.licenseKey, "node-1") }, want: wire.ReasonExpired,
		},
		"License: an instance never activated is NOT_ACTIVATED": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return licensed(w.licenseKey, "node-2") }, want: wire.ReasonNotActivated,
		},
		"License: an instance past its heartbeat is NOT_ACTIVATED": {
			arrange: func(_ *testing.T, w *decisionWorld) { w.clk.Step(time.Hour) },
			request: func(_ *testing.T, w *decisionWorld) http.Header { return licensed(w.licenseKey, "node-1") }, want: wire.ReasonNotActivated,
		},
		"License: a younger instance beyond a lowered cap is TOO_MANY_INSTANCES": {
			arrange: func(_ *testing.T, w *decisionWorld) {
				w.lic.Status.Activations = append(w.lic.Status.Activations, keycapv1alpha1.LicenseActivation{
					InstanceID: "node-2", ActivatedAt: metav1.NewTime(t0.Add(-time.Hour)), LastSeenAt: metav1.NewTime(t0),
				})
				w.upsert(w.lic)
			},
			request: func(_ *testing.T, w *decisionWorld) http.Header { return licensed(w.licenseKey, "node-2") }, want: wire.ReasonTooManyInstances,
		},
		"License: a missing entitlement is MISSING_ENTITLEMENT": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return licensed(w.licenseKey, "node-1") },
			route:   Requirements{Entitlements: []string{"audit"}}, want: wire.ReasonMissingEntitlement,
		},
		"License: another tenant's route is WRONG_NAMESPACE": {
			request: func(_ *testing.T, w *decisionWorld) http.Header { return licensed(w.licenseKey, "node-1") },
			route:   Requirements{Namespaces: []string{"other"}}, want: wire.ReasonWrongNamespace,
		},
		"License: a licence and an API key at once are AMBIGUOUS": {
			request: func(_ *testing.T, w *decisionWorld) http.Header {
				h := licensed(w.licenseKey, "node-1")
				h.Set("X-Api-Key", w.apiKey)
				return h
			},
			want: wire.ReasonAmbiguous,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			w := newDecisionWorld(t)
			if tc.arrange != nil {
				tc.arrange(t, w)
			}
			d := w.check(tc.request(t, w), tc.route, tc.aud)
			gomega.NewWithT(t).Expect(d.Reason.String()).To(gomega.Equal(tc.want.String()))
		})
	}
}

// TestDecisionIdentity is the identity each kind hands upstream.
func TestDecisionIdentity(t *testing.T) {
	w := newDecisionWorld(t)
	cases := map[string]struct {
		request http.Header
		want    wire.Identity
	}{
		"ApiKey": {key(w.apiKey), wire.Identity{Kind: "ApiKey", Namespace: "acme", Name: "main", KeyID: w.ak.Status.KeyID, Scopes: "videos:read,videos:write"}},
		"AgentKey": {key(w.agentKey), wire.Identity{Kind: "AgentKey", Namespace: "acme", Name: "bot", Scopes: "videos:read",
			Agent: "agent-7", Parent: "main", Fields: wire.FieldAgent | wire.FieldParent}},
		"AppToken": {bearer(w.token), wire.Identity{Kind: "AppToken", Namespace: "acme", Name: "reports", KeyID: w.at.Status.KeyID,
			Scopes: "reports:read", Subject: "acme/reports", Fields: wire.FieldSubject}},
		"License": {licensed(w.licenseKey, "node-1"), wire.Identity{Kind: "License", Namespace: "acme", Name: "pro",
			Entitlements: "sso", Fields: wire.FieldEntitlements}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			d := w.check(tc.request, Requirements{})
			g.Expect(d.Reason).To(gomega.Equal(wire.ReasonOK))
			g.Expect(d.Identity).To(gomega.Equal(tc.want))
		})
	}
}
