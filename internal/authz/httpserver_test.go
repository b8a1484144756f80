package authz

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
)

// oneKeyDataPlane is a ready data plane holding one ApiKey of namespace acme with scope
// videos:read.
func oneKeyDataPlane(t *testing.T) (*DataPlane, string) {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	ix := index.New()
	key, _ := keys.Generate("kc")
	k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "main"}}
	k.Spec.Scopes = []string{"videos:read"}
	k.Status.Digests = []string{keys.Digest(key)}
	ix.Upsert(project(k))
	return testDataPlane(ix, clk, true, false), key
}

// The HTTP port never redirects (issue 11): /check and /check/<anything> are answered as they
// come, whatever the client's path holds; other paths are served as written or get keycap's
// JSON 404.
func TestHTTPPortNeverRedirects(t *testing.T) {
	dp, key := oneKeyDataPlane(t)
	checks := []string{
		"/check/shop//items", "/check/./x", "/check/../api/commercial/activate", "/check//", "/check/a/..",
		"/check/", "/check/%2e%2e/x", "/check/shop//items?x=1",
	}
	for _, target := range checks {
		t.Run(target, func(t *testing.T) {
			g := gomega.NewWithT(t)
			rec := serveCheck(dp, target, http.Header{"X-Api-Key": {key}})
			g.Expect(rec.Code).To(gomega.Equal(http.StatusOK))
			g.Expect(rec.Header().Get("Location")).To(gomega.BeEmpty())
			g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal("OK"))
			rec = serveCheck(dp, target, http.Header{})
			g.Expect(rec.Code).To(gomega.Equal(http.StatusUnauthorized))
		})
	}
	notServed := []string{"/.well-known", "//api/commercial/activate", "/.well-known/../check", "/nope", "/api/./commercial/activate", "/checkout"}
	for _, target := range notServed {
		t.Run(target, func(t *testing.T) {
			g := gomega.NewWithT(t)
			rec := serveCheck(dp, target, http.Header{"X-Api-Key": {key}})
			g.Expect(rec.Code).To(gomega.Equal(http.StatusNotFound))
			g.Expect(rec.Header().Get("Location")).To(gomega.BeEmpty())
			g.Expect(rec.Header().Get("Content-Type")).To(gomega.Equal("application/json"))
			var body map[string]map[string]string
			g.Expect(json.Unmarshal(rec.Body.Bytes(), &body)).To(gomega.Succeed())
			g.Expect(body["error"]).To(gomega.Equal(map[string]string{"code": "not_found", "message": "Not found", "reason": "UNKNOWN_PATH"}))
		})
	}
}

// The query of exactly /check is the proxy's: repeated parameters narrow, unknown ones are
// refused (UNKNOWN_PARAMETER, 403, counted and logged). Under /check/<path> the query is the
// client's and is neither read nor refused.
func TestCheckQueryIsTheProxys(t *testing.T) {
	dp, key := oneKeyDataPlane(t)
	cases := map[string]struct {
		target string
		status int
		reason string
	}{
		"a repeated namespace narrows":                   {target: "/check?namespace=acme&namespace=other", status: 403, reason: "WRONG_NAMESPACE"},
		"a client appending a namespace cannot widen":    {target: "/check?namespace=other&namespace=acme", status: 403, reason: "WRONG_NAMESPACE"},
		"the same namespace twice passes":                {target: "/check?namespace=acme&namespace=acme", status: 200, reason: "OK"},
		"a misspelt parameter is refused":                {target: "/check?scope=admin", status: 403, reason: "UNKNOWN_PARAMETER"},
		"a parameter in the wrong case is refused":       {target: "/check?Scopes=videos:read", status: 403, reason: "UNKNOWN_PARAMETER"},
		"a semicolon separator is refused":               {target: "/check?scopes=videos:read;namespace=other", status: 403, reason: "UNKNOWN_PARAMETER"},
		"refused even without a credential":              {target: "/check?scope=admin", status: 403, reason: "UNKNOWN_PARAMETER"},
		"the client's query under /check/ is not judged": {target: "/check/shop?scope=admin;x&namespace=other", status: 200, reason: "OK"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			h := http.Header{"X-Api-Key": {key}}
			if name == "refused even without a credential" {
				h = http.Header{}
			}
			rec := serveCheck(dp, tc.target, h)
			g.Expect(rec.Code).To(gomega.Equal(tc.status))
			g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal(tc.reason))
		})
	}
}

// An allowed forward-auth answer tells Envoy's HTTP ext_authz (and Istio's, Envoy Gateway's)
// which request headers to drop upstream, as gRPC's headers_to_remove does: the credential
// headers used, and the identity headers this kind does not set.
func TestHTTPAllowRemovesTheCredentialHeaders(t *testing.T) {
	dp, key := oneKeyDataPlane(t)
	cases := map[string]struct {
		h    http.Header
		want []string
	}{
		"x-api-key":        {h: http.Header{"X-Api-Key": {key}}, want: []string{"x-api-key"}},
		"bearer":           {h: http.Header{"Authorization": {"Bearer " + key}}, want: []string{"authorization"}},
		"two headers, one": {h: http.Header{"X-Api-Key": {key}, "X-Capdata-Token": {key}}, want: []string{"x-api-key", "x-capdata-token"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			rec := serveCheck(dp, "/check/shop", tc.h)
			g.Expect(rec.Code).To(gomega.Equal(http.StatusOK))
			got := rec.Header().Values("X-Envoy-Auth-Headers-To-Remove")
			g.Expect(got).To(gomega.HaveLen(1))
			names := strings.Split(got[0], ",")
			for _, w := range tc.want {
				g.Expect(names).To(gomega.ContainElement(w))
			}
			// The identity headers an ApiKey does not set go too; the ones it sets are overwritten.
			g.Expect(names).To(gomega.ContainElements("x-keycap-agent", "x-keycap-parent", "x-keycap-subject"))
			g.Expect(names).NotTo(gomega.ContainElement("x-keycap-namespace"))
		})
	}
	t.Run("a denial names nothing to remove", func(t *testing.T) {
		g := gomega.NewWithT(t)
		rec := serveCheck(dp, "/check", http.Header{"X-Api-Key": {"nope"}})
		g.Expect(rec.Header().Values("X-Envoy-Auth-Headers-To-Remove")).To(gomega.BeEmpty())
	})
}

// A data plane that is not ready or fails answers a denial no proxy setting turns into an allow:
// over HTTP a 403 (Envoy's failure_mode_allow and Envoy Gateway's failOpen treat a 5xx as an
// outage and let the request through; nginx turns it into a 500), over gRPC an OK Check
// response denying with the same 403, never a gRPC error.
func TestFailClosedWhateverTheProxysFailureMode(t *testing.T) {
	_, key := oneKeyDataPlane(t)
	notReady := testDataPlane(index.New(), clocktesting.NewFakeClock(time.Now()), false, false)
	failing := testDataPlane(index.New(), clocktesting.NewFakeClock(time.Now()), true, false)
	failing.sources = nil // any use panics: an internal error
	cases := map[string]struct {
		dp     *DataPlane
		reason string
	}{
		"not ready": {dp: notReady, reason: "NOT_READY"},
		"internal":  {dp: failing, reason: "INTERNAL"},
	}
	for name, tc := range cases {
		t.Run(name+" over HTTP", func(t *testing.T) {
			g := gomega.NewWithT(t)
			for _, h := range []http.Header{{"X-Api-Key": {key}}, {}} {
				rec := serveCheck(tc.dp, "/check/x", h)
				g.Expect(rec.Code).To(gomega.Equal(http.StatusForbidden))
				g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal(tc.reason))
				var body map[string]map[string]string
				g.Expect(json.Unmarshal(rec.Body.Bytes(), &body)).To(gomega.Succeed())
				g.Expect(body["error"]["reason"]).To(gomega.Equal(tc.reason))
				g.Expect(body["error"]["code"]).To(gomega.Equal("forbidden"))
			}
		})
		t.Run(name+" over gRPC", func(t *testing.T) {
			g := gomega.NewWithT(t)
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"x-api-key": key}, Path: "/x", Method: "GET"},
			}}}
			resp, err := (&grpcServer{dp: tc.dp}).Check(context.Background(), req)
			g.Expect(err).NotTo(gomega.HaveOccurred())
			g.Expect(resp.GetStatus().GetCode()).To(gomega.Equal(int32(codes.PermissionDenied)))
			g.Expect(resp.GetStatus().GetMessage()).To(gomega.Equal(tc.reason))
			g.Expect(resp.GetDeniedResponse().GetStatus().GetCode()).To(gomega.Equal(typev3.StatusCode_Forbidden))
		})
	}
}

// A licence refused on /check says so in its own words, not the API keys' (issue 15), with the
// same reason codes and statuses; gRPC's denied_response carries the same body.
func TestLicenceDenialsSayLicence(t *testing.T) {
	dp, _ := oneKeyDataPlane(t)
	licKey, _ := keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
	lic := &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "pro"}}
	lic.Spec.Disabled = true
	lic.Status.Digests = []string{keys.Digest(licKey)}
	dp.index.Upsert(project(lic))
	unknown, _ := keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
	cases := map[string]struct {
		key, reason, message string
	}{
		"disabled":  {key: licKey, reason: "DISABLED", message: "License disabled"},
		"not found": {key: unknown, reason: "NOT_FOUND", message: "Invalid license key"},
		"malformed": {key: "kclic_nope", reason: "MALFORMED", message: "Invalid license key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			rec := serveCheck(dp, "/check", http.Header{"Licensekey": {tc.key}, "Instanceid": {"i-1"}})
			g.Expect(rec.Code).To(gomega.Equal(http.StatusUnauthorized))
			g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal(tc.reason))
			var body map[string]map[string]string
			g.Expect(json.Unmarshal(rec.Body.Bytes(), &body)).To(gomega.Succeed())
			g.Expect(body["error"]).To(gomega.Equal(map[string]string{"code": "unauthorized", "message": tc.message, "reason": tc.reason}))
			g.Expect(rec.Header().Get("X-Keycap-Error-Body")).To(gomega.Equal(rec.Body.String()))

			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"licensekey": tc.key, "instanceid": "i-1"}, Path: "/x", Method: "GET"},
			}}}
			resp, err := (&grpcServer{dp: dp}).Check(context.Background(), req)
			g.Expect(err).NotTo(gomega.HaveOccurred())
			g.Expect(resp.GetDeniedResponse().GetBody()).To(gomega.Equal(rec.Body.String()))
		})
	}
	t.Run("an API key still speaks of API keys", func(t *testing.T) {
		g := gomega.NewWithT(t)
		rec := serveCheck(dp, "/check", http.Header{"X-Api-Key": {"nope"}})
		g.Expect(rec.Body.String()).To(gomega.ContainSubstring("Invalid or expired API key"))
	})
}
