package authz_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/activation"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/signing"
)

// issueTimeout bounds waiting for the real controllers to issue a token or licence key.
const issueTimeout = 30 * time.Second

// createAppToken creates an AppToken in signedNamespace and waits until the AppToken controller
// has issued its JWT into the Secret. It returns the token and the AppToken as the controller
// left it.
func createAppToken(t *testing.T, name string, mutate func(*keycapv1alpha1.AppToken)) (string, *keycapv1alpha1.AppToken) {
	t.Helper()
	g := gomega.NewWithT(t)
	ctx := context.Background()
	at := &keycapv1alpha1.AppToken{ObjectMeta: metav1.ObjectMeta{Namespace: signedNamespace, Name: name}}
	at.Spec.Scopes = []string{"reports:read", "reports:write"}
	at.Spec.Audiences = []string{"reports", "videos"}
	if mutate != nil {
		mutate(at)
	}
	g.Expect(world.client.Create(ctx, at)).To(gomega.Succeed())
	var token string
	g.Eventually(func(g gomega.Gomega) {
		g.Expect(world.client.Get(ctx, client.ObjectKeyFromObject(at), at)).To(gomega.Succeed())
		g.Expect(at.Status.KeyID).NotTo(gomega.BeEmpty())
		s := &corev1.Secret{}
		g.Expect(world.client.Get(ctx, types.NamespacedName{Namespace: signedNamespace, Name: name}, s)).To(gomega.Succeed())
		token = string(s.Data[keycapv1alpha1.AppTokenSecretKey])
		g.Expect(token).NotTo(gomega.BeEmpty())
	}).WithTimeout(issueTimeout).Should(gomega.Succeed())
	return token, at
}

// createLicense creates a License in signedNamespace and waits for its licence key.
func createLicense(t *testing.T, name string, mutate func(*keycapv1alpha1.License)) (string, *keycapv1alpha1.License) {
	t.Helper()
	g := gomega.NewWithT(t)
	ctx := context.Background()
	lic := &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: signedNamespace, Name: name}}
	lic.Spec.Product = "keycap"
	lic.Spec.Entitlements = []string{"sso", "audit"}
	lic.Spec.MaxInstances = 2
	if mutate != nil {
		mutate(lic)
	}
	g.Expect(world.client.Create(ctx, lic)).To(gomega.Succeed())
	var key string
	g.Eventually(func(g gomega.Gomega) {
		g.Expect(world.client.Get(ctx, client.ObjectKeyFromObject(lic), lic)).To(gomega.Succeed())
		g.Expect(lic.Status.Digests).NotTo(gomega.BeEmpty())
		s := &corev1.Secret{}
		g.Expect(world.client.Get(ctx, types.NamespacedName{Namespace: signedNamespace, Name: name}, s)).To(gomega.Succeed())
		key = string(s.Data[keycapv1alpha1.LicenseKeySecretKey])
		g.Expect(key).NotTo(gomega.BeEmpty())
	}).WithTimeout(issueTimeout).Should(gomega.Succeed())
	return key, lic
}

// activate posts an activation to the data plane's HTTP port.
func activate(t *testing.T, key, instance string) (int, map[string]any) {
	t.Helper()
	g := gomega.NewWithT(t)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost,
		"http://"+world.dp.HTTPAddr().String()+activation.Path, strings.NewReader(`{"reset": false}`))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	req.Header.Set("licensekey", key)
	req.Header.Set("instanceid", instance)
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	var body map[string]any
	g.Expect(json.NewDecoder(resp.Body).Decode(&body)).To(gomega.Succeed())
	return resp.StatusCode, body
}

// signerFunc adapts a function to apptoken.Signer.
type signerFunc func() (string, ed25519.PrivateKey)

func (f signerFunc) Current() (string, ed25519.PrivateKey) { return f() }

// operatorSigner returns the operator's current signing key, read from its Secret (the test has
// the access the data plane lacks), to forge tokens that differ from genuine ones only in what a
// test changes.
func operatorSigner(t *testing.T) apptoken.Signer {
	t.Helper()
	g := gomega.NewWithT(t)
	s := &corev1.Secret{}
	g.Expect(world.client.Get(context.Background(), types.NamespacedName{Namespace: operatorNamespace, Name: signing.SecretName}, s)).To(gomega.Succeed())
	state, err := signing.Unmarshal(s.Data[signing.SecretDataKey])
	g.Expect(err).NotTo(gomega.HaveOccurred())
	k, ok := state.Current(world.clock.Now())
	g.Expect(ok).To(gomega.BeTrue())
	return signerFunc(func() (string, ed25519.PrivateKey) { return k.ID, k.Private })
}

func bearerOf(token string) map[string]string {
	return map[string]string{"authorization": "Bearer " + token}
}

func TestAppTokenOnGRPCCheck(t *testing.T) {
	g := gomega.NewWithT(t)
	c := grpcClient(t)
	token, at := createAppToken(t, "reporting", nil)
	reasonOf := func(token string, ext map[string]string) func() string {
		return func() string { return check(t, c, checkRequest(bearerOf(token), ext)).reason }
	}
	g.Eventually(reasonOf(token, nil)).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))

	t.Run("a valid token is allowed with its identity", func(t *testing.T) {
		g := gomega.NewWithT(t)
		r := check(t, c, checkRequest(bearerOf(token), map[string]string{"keycap.dev/scopes": "reports:read", "keycap.dev/namespaces": signedNamespace}))
		g.Expect(r.code).To(gomega.Equal(codes.OK))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-kind", "AppToken"))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-namespace", signedNamespace))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-name", "reporting"))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-key-id", at.Status.KeyID))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-subject", signedNamespace+"/reporting"))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-scopes", "reports:read,reports:write"))
		g.Expect(r.removed).To(gomega.ConsistOf("authorization", "x-keycap-agent", "x-keycap-parent", "x-keycap-entitlements", "x-keycap-auth-method"))
	})

	t.Run("a route requiring an audience", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Expect(check(t, c, checkRequest(bearerOf(token), map[string]string{"keycap.dev/audience": "reports"})).reason).To(gomega.Equal("OK"))
		r := check(t, c, checkRequest(bearerOf(token), map[string]string{"keycap.dev/audience": "billing"}))
		g.Expect(r.reason).To(gomega.Equal("WRONG_AUDIENCE"))
		g.Expect(r.http).To(gomega.Equal(http.StatusUnauthorized))
	})

	t.Run("a route requiring an entitlement refuses tokens", func(t *testing.T) {
		r := check(t, c, checkRequest(bearerOf(token), map[string]string{"keycap.dev/entitlements": "sso"}))
		gomega.NewWithT(t).Expect(r.reason).To(gomega.Equal("MISSING_ENTITLEMENT"))
	})

	t.Run("forged and bad tokens are refused with a reason", func(t *testing.T) {
		signer := operatorSigner(t)
		now := world.clock.Now()
		issue := func(signer apptoken.Signer, in apptoken.Input) string {
			if in.Issuer == "" {
				in.Issuer = signing.DefaultIssuer
			}
			if in.KeyID == "" {
				in.KeyID = at.Status.KeyID
			}
			if in.Org == "" {
				in.Org = signedNamespace
			}
			in.Audiences = []string{"reports"}
			if in.IssuedAt.IsZero() {
				in.IssuedAt = now
			}
			if in.Lifetime == 0 {
				in.Lifetime = time.Hour
			}
			issued, err := apptoken.Issue(signer, in)
			gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred())
			return issued.Token
		}
		// The same claims as a genuine token, unsigned.
		unsigned := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
			"iss": signing.DefaultIssuer, "aud": "reports", "sub": "x", "org": signedNamespace,
			"jti": at.Status.KeyID + ".abc", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		})
		kid, _ := signer.Current()
		unsigned.Header["kid"] = kid
		algNone, err := unsigned.SignedString(jwt.UnsafeAllowNoneSignatureType)
		gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred())
		_, stranger, err := ed25519.GenerateKey(rand.Reader)
		gomega.NewWithT(t).Expect(err).NotTo(gomega.HaveOccurred())
		unknownKid := signerFunc(func() (string, ed25519.PrivateKey) { return "not-a-published-kid", stranger })
		valid := issue(signer, apptoken.Input{})
		parts := strings.Split(valid, ".")
		cases := map[string]struct {
			token, reason string
		}{
			"alg none":                                    {algNone, "ALGORITHM_NOT_ALLOWED"},
			"an unknown kid":                              {issue(unknownKid, apptoken.Input{}), "UNKNOWN_KEY"},
			"expired (signed with the real key)":          {issue(signer, apptoken.Input{IssuedAt: now.Add(-3 * time.Hour)}), "EXPIRED"},
			"a wrong issuer":                              {issue(signer, apptoken.Input{Issuer: "https://evil.example"}), "WRONG_ISSUER"},
			"a tampered payload":                          {parts[0] + "." + parts[1] + "x." + parts[2], "MALFORMED"},
			"another signature":                           {parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), "INVALID_SIGNATURE"},
			"a genuine signature for another org":         {issue(signer, apptoken.Input{Org: "other"}), "NOT_FOUND"},
			"a genuine signature for an unknown AppToken": {issue(signer, apptoken.Input{KeyID: "kat_00000000000000000000000000000000"}), "NOT_FOUND"},
		}
		// The forged-but-valid control proves the forgeries differ only in what they change.
		gomega.NewWithT(t).Expect(check(t, c, checkRequest(bearerOf(valid), nil)).reason).To(gomega.Equal("OK"))
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				g := gomega.NewWithT(t)
				r := check(t, c, checkRequest(bearerOf(tc.token), nil))
				g.Expect(r.code).To(gomega.Equal(codes.Unauthenticated))
				g.Expect(r.http).To(gomega.Equal(http.StatusUnauthorized))
				g.Expect(r.reason).To(gomega.Equal(tc.reason))
			})
		}
	})

	t.Run("its scopes are the token's that the AppToken still grants", func(t *testing.T) {
		g := gomega.NewWithT(t)
		patch := []byte(`{"spec":{"scopes":["reports:read"]}}`)
		g.Expect(world.client.Patch(context.Background(), at, client.RawPatch(types.MergePatchType, patch))).To(gomega.Succeed())
		ext := map[string]string{"keycap.dev/scopes": "reports:write"}
		g.Eventually(reasonOf(token, ext)).WithTimeout(propagationTimeout).Should(gomega.Equal("INSUFFICIENT_SCOPE"))
		r := check(t, c, checkRequest(bearerOf(token), nil))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-scopes", "reports:read"))
	})

	t.Run("a disabled AppToken's token is refused although its signature is valid", func(t *testing.T) {
		g := gomega.NewWithT(t)
		setDisabled(t, at, true)
		g.Eventually(reasonOf(token, nil)).WithTimeout(revocationTimeout).WithPolling(5 * time.Millisecond).Should(gomega.Equal("DISABLED"))
		setDisabled(t, at, false)
		g.Eventually(reasonOf(token, nil)).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))
	})

	t.Run("a deleted AppToken's token is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Expect(world.client.Delete(context.Background(), at)).To(gomega.Succeed())
		g.Eventually(reasonOf(token, nil)).WithTimeout(revocationTimeout).WithPolling(5 * time.Millisecond).Should(gomega.Equal("NOT_FOUND"))
	})
}

func TestLicenseOnGRPCCheck(t *testing.T) {
	g := gomega.NewWithT(t)
	c := grpcClient(t)
	key, lic := createLicense(t, "acme", nil)
	licensed := func(key, instance string) map[string]string {
		return map[string]string{"licensekey": key, "instanceid": instance}
	}
	reasonOf := func(headers, ext map[string]string) func() string {
		return func() string { return check(t, c, checkRequest(headers, ext)).reason }
	}

	// The index learns the licence, then the activation.
	g.Eventually(func() int { status, _ := activate(t, key, "i-1"); return status }).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))
	status, body := activate(t, key, "i-1")
	g.Expect(status).To(gomega.Equal(http.StatusOK))
	g.Expect(body).To(gomega.HaveKeyWithValue("message", "License activated"))
	g.Eventually(reasonOf(licensed(key, "i-1"), nil)).WithTimeout(propagationTimeout).Should(gomega.Equal("OK"))

	t.Run("an activated instance is allowed with the entitlements", func(t *testing.T) {
		g := gomega.NewWithT(t)
		r := check(t, c, checkRequest(licensed(key, "i-1"), map[string]string{"keycap.dev/entitlements": "sso"}))
		g.Expect(r.code).To(gomega.Equal(codes.OK))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-kind", "License"))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-name", "acme"))
		g.Expect(r.headers).To(gomega.HaveKeyWithValue("x-keycap-entitlements", "audit,sso"))
		g.Expect(r.removed).To(gomega.ConsistOf("licensekey", "x-keycap-agent", "x-keycap-parent", "x-keycap-subject", "x-keycap-auth-method"))
	})

	t.Run("refusals", func(t *testing.T) {
		other, _ := keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
		apiKey, _ := keys.Generate("kc")
		cases := map[string]struct {
			headers, ext map[string]string
			http         int
			reason       string
		}{
			"an instance never activated":        {licensed(key, "i-9"), nil, http.StatusForbidden, "NOT_ACTIVATED"},
			"no instance":                        {map[string]string{"licensekey": key}, nil, http.StatusForbidden, "NOT_ACTIVATED"},
			"a missing entitlement":              {licensed(key, "i-1"), map[string]string{"keycap.dev/entitlements": "sso,pro"}, http.StatusForbidden, "MISSING_ENTITLEMENT"},
			"an unknown licence":                 {licensed(other, "i-1"), nil, http.StatusUnauthorized, "NOT_FOUND"},
			"a licence with a bad checksum":      {licensed(key[:len(key)-4]+"0000", "i-1"), nil, http.StatusUnauthorized, "MALFORMED"},
			"a licence and an API key at once":   {map[string]string{"licensekey": key, "instanceid": "i-1", "x-api-key": apiKey}, nil, http.StatusUnauthorized, "AMBIGUOUS"},
			"a licence key presented as API key": {map[string]string{"x-api-key": key}, nil, http.StatusUnauthorized, "NOT_FOUND"},
			"another tenant's route":             {licensed(key, "i-1"), map[string]string{"keycap.dev/namespaces": "elsewhere"}, http.StatusForbidden, "WRONG_NAMESPACE"},
		}
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				g := gomega.NewWithT(t)
				r := check(t, c, checkRequest(tc.headers, tc.ext))
				g.Expect(r.reason).To(gomega.Equal(tc.reason))
				g.Expect(r.http).To(gomega.Equal(tc.http))
			})
		}
	})

	t.Run("a disabled licence is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		setDisabled(t, lic, true)
		g.Eventually(reasonOf(licensed(key, "i-1"), nil)).WithTimeout(revocationTimeout).WithPolling(5 * time.Millisecond).Should(gomega.Equal("DISABLED"))
		status, body := activate(t, key, "i-2")
		g.Expect(status).To(gomega.Equal(http.StatusForbidden))
		g.Expect(body).To(gomega.HaveKeyWithValue("error", gomega.HaveKeyWithValue("reason", "DISABLED")))
	})
}

func TestJWKSVerifiesAppTokens(t *testing.T) {
	g := gomega.NewWithT(t)
	token, at := createAppToken(t, "jwks", nil)
	base := "http://" + world.dp.HTTPAddr().String()
	get := func(path string) []byte {
		resp, err := http.Get(base + path) //nolint:noctx // a test against 127.0.0.1
		g.Expect(err).NotTo(gomega.HaveOccurred())
		defer func() { _ = resp.Body.Close() }()
		g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusOK))
		b, err := io.ReadAll(resp.Body)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		return b
	}
	var oidc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	g.Expect(json.Unmarshal(get(signing.OpenIDConfigurationPath), &oidc)).To(gomega.Succeed())
	g.Expect(oidc.Issuer).To(gomega.Equal(signing.DefaultIssuer))

	// The token's signing key may have been published after the data plane's last refresh.
	var set struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg string } `json:"keys"`
	}
	g.Eventually(func(g gomega.Gomega) {
		g.Expect(json.Unmarshal(get(signing.JWKSPath), &set)).To(gomega.Succeed())
		g.Expect(set.Keys).To(gomega.ContainElement(gomega.HaveField("Kid", at.Status.SigningKeyID)))
	}).WithTimeout(propagationTimeout).Should(gomega.Succeed())

	// golang-jwt with nothing but the JWKS, as an offline verifier would.
	keyfunc := func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		for _, k := range set.Keys {
			if k.Kid == kid && k.Kty == "OKP" && k.Crv == "Ed25519" {
				x, err := jwt.NewParser().DecodeSegment(k.X)
				if err != nil || len(x) != ed25519.PublicKeySize {
					return nil, errors.New("bad x")
				}
				return ed25519.PublicKey(x), nil
			}
		}
		return nil, errors.New("kid not in the JWKS")
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(token, claims, keyfunc,
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer(oidc.Issuer), jwt.WithAudience("reports"),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(world.clock.Now))
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(parsed.Valid).To(gomega.BeTrue())
	g.Expect(claims).To(gomega.HaveKeyWithValue("org", signedNamespace))

	// A token whose payload is still well-formed JSON but claims another org does not verify with
	// the same JWKS: the refusal is the signature's, not a decoding error.
	parts := strings.Split(token, ".")
	tampered := parts[0] + "." + reclaim(t, parts[1], "org", "someone-else") + "." + parts[2]
	_, err = jwt.Parse(tampered, keyfunc, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(world.clock.Now))
	g.Expect(err).To(gomega.MatchError(jwt.ErrTokenSignatureInvalid))
	g.Expect(err).NotTo(gomega.MatchError(jwt.ErrTokenMalformed))
	// The data plane refuses it for the same reason.
	r := check(t, grpcClient(t), checkRequest(bearerOf(tampered), nil))
	g.Expect(r.code).To(gomega.Equal(codes.Unauthenticated))
	g.Expect(r.reason).To(gomega.Equal(wire.ReasonInvalidSignature.String()))
}

// reclaim returns the base64url JWT payload with claim set to value, re-encoded as valid JSON.
func reclaim(t *testing.T, payload, claim, value string) string {
	t.Helper()
	g := gomega.NewWithT(t)
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	claims := map[string]any{}
	g.Expect(json.Unmarshal(raw, &claims)).To(gomega.Succeed())
	g.Expect(claims).To(gomega.HaveKey(claim))
	g.Expect(claims[claim]).NotTo(gomega.Equal(value))
	claims[claim] = value
	raw, err = json.Marshal(claims)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	return base64.RawURLEncoding.EncodeToString(raw)
}

func TestNginxAppTokensAndLicenses(t *testing.T) {
	g := gomega.NewWithT(t)
	base := startNginx(t, signedNamespace)
	token, at := createAppToken(t, "web-reports", nil)
	videosOnly, _ := createAppToken(t, "web-videos", func(at *keycapv1alpha1.AppToken) { at.Spec.Audiences = []string{"videos"} })
	proKey, _ := createLicense(t, "web-pro", func(l *keycapv1alpha1.License) { l.Spec.Entitlements = []string{"pro"} })
	basicKey, _ := createLicense(t, "web-basic", nil)
	bearer := func(token string) http.Header { return hdr("Authorization", "Bearer "+token) }
	g.Eventually(func() int { return getVia(t, base+"/reports/1", bearer(token)).status }).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))

	t.Run("a valid AppToken passes; the upstream sees the subject, not the token", func(t *testing.T) {
		g := gomega.NewWithT(t)
		a := getVia(t, base+"/reports/1", bearer(token))
		g.Expect(a.status).To(gomega.Equal(http.StatusOK))
		g.Expect(a.seen.Headers.Get("X-Keycap-Kind")).To(gomega.Equal("AppToken"))
		g.Expect(a.seen.Headers.Get("X-Keycap-Subject")).To(gomega.Equal(signedNamespace + "/web-reports"))
		g.Expect(a.seen.Headers.Get("X-Keycap-Key-Id")).To(gomega.Equal(at.Status.KeyID))
		g.Expect(a.seen.Headers).NotTo(gomega.HaveKey("Authorization"))
	})

	t.Run("a token for another audience is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Eventually(func() string { return getVia(t, base+"/reports/1", bearer(videosOnly)).reason }).WithTimeout(propagationTimeout).Should(gomega.Equal("WRONG_AUDIENCE"))
		g.Expect(getVia(t, base+"/reports/1", bearer(videosOnly)).status).To(gomega.Equal(http.StatusUnauthorized))
	})

	t.Run("an activated licence with the entitlement passes; the upstream sees them, not the key", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Eventually(func() int { status, _ := activate(t, proKey, "node-1"); return status }).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))
		h := hdr("Licensekey", proKey, "Instanceid", "node-1")
		g.Eventually(func() int { return getVia(t, base+"/pro/1", h).status }).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))
		a := getVia(t, base+"/pro/1", h)
		g.Expect(a.seen.Headers.Get("X-Keycap-Kind")).To(gomega.Equal("License"))
		g.Expect(a.seen.Headers.Get("X-Keycap-Entitlements")).To(gomega.Equal("pro"))
		g.Expect(a.seen.Headers).NotTo(gomega.HaveKey("Licensekey"))
		g.Expect(getVia(t, base+"/pro/1", hdr("Licensekey", proKey, "Instanceid", "node-2")).reason).To(gomega.Equal("NOT_ACTIVATED"))
	})

	t.Run("a licence without the route's entitlement is forbidden", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Eventually(func() int { status, _ := activate(t, basicKey, "node-1"); return status }).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))
		h := hdr("Licensekey", basicKey, "Instanceid", "node-1")
		g.Eventually(func() string { return getVia(t, base+"/pro/1", h).reason }).WithTimeout(propagationTimeout).Should(gomega.Equal("MISSING_ENTITLEMENT"))
		g.Expect(getVia(t, base+"/pro/1", h).status).To(gomega.Equal(http.StatusForbidden))
	})

	t.Run("a disabled AppToken's token is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		setDisabled(t, at, true)
		g.Eventually(func() string { return getVia(t, base+"/reports/1", bearer(token)).reason }).
			WithTimeout(revocationTimeout).WithPolling(10 * time.Millisecond).Should(gomega.Equal("DISABLED"))
		g.Expect(getVia(t, base+"/reports/1", bearer(token)).status).To(gomega.Equal(http.StatusUnauthorized))
	})
}
