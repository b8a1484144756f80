package authz

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/keys"
)

// testDataPlane is a data plane without servers or informers, for handler tests.
func testDataPlane(ix *index.Index, clk *clocktesting.FakeClock, ready bool, compat bool) *DataPlane {
	dp := &DataPlane{opts: Options{CompatBodies: compat}, index: ix, serving: make(chan struct{})}
	dp.sources = wire.NewSources(wire.DefaultExtraKeyHeaders)
	dp.synced = func() bool { return ready }
	dp.listening.Store(true)
	dp.authz = authorizer{index: ix, clock: clk, ready: dp.ready}
	return dp
}

func serveCheck(dp *DataPlane, target string, h http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Header = h
	rec := httptest.NewRecorder()
	dp.newHTTPMux().ServeHTTP(rec, req)
	return rec
}

func TestCheckHTTP(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	ix := index.New()
	key, _ := keys.Generate("kc")
	k := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "main"}}
	k.Spec.Scopes = []string{"videos:read"}
	k.Status.Digests = []string{keys.Digest(key)}
	ix.Upsert(project(k))

	t.Run("not ready denies even a valid key", func(t *testing.T) {
		g := gomega.NewWithT(t)
		rec := serveCheck(testDataPlane(ix, clk, false, false), "/check", http.Header{"X-Api-Key": {key}})
		g.Expect(rec.Code).To(gomega.Equal(http.StatusForbidden))
		g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal("NOT_READY"))
		rec = serveCheck(testDataPlane(ix, clk, false, false), "/check", http.Header{})
		g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal("NOT_READY"))
	})

	dp := testDataPlane(ix, clk, true, false)
	cases := map[string]struct {
		target string
		status int
		reason string
	}{
		"a held scope and the key's namespace pass":          {target: "/check?scopes=videos:read&namespace=acme", status: 200, reason: "OK"},
		"repeated namespace lists narrow (intersected)":      {target: "/check?namespace=x&namespace=y,acme", status: 403, reason: "WRONG_NAMESPACE"},
		"a listed namespace passes":                          {target: "/check?namespace=y,acme", status: 200, reason: "OK"},
		"a scope the key lacks is forbidden":                 {target: "/check?scopes=videos:read,videos:delete", status: 403, reason: "INSUFFICIENT_SCOPE"},
		"another namespace is forbidden":                     {target: "/check?namespace=other", status: 403, reason: "WRONG_NAMESPACE"},
		"the client's query under Envoy's prefix is ignored": {target: "/check/videos?scopes=videos:delete", status: 200, reason: "OK"},
		"escaped parameters are unescaped":                   {target: "/check?scopes=videos%3Aread&namespace=ac%6De", status: 200, reason: "OK"},
		"an unknown parameter is refused":                    {target: "/check?scopes=videos%3Aread&other=1", status: 403, reason: "UNKNOWN_PARAMETER"},
		"a parameter that cannot be unescaped denies":        {target: "/check?scopes=%zz", status: 403, reason: "INSUFFICIENT_SCOPE"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			rec := serveCheck(dp, tc.target, http.Header{"X-Api-Key": {key}})
			g.Expect(rec.Code).To(gomega.Equal(tc.status))
			g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal(tc.reason))
		})
	}

	t.Run("an allowed ApiKey answers its identity and empty agent headers", func(t *testing.T) {
		g := gomega.NewWithT(t)
		h := serveCheck(dp, "/check", http.Header{"X-Api-Key": {key}}).Header()
		g.Expect(h.Get("X-Keycap-Kind")).To(gomega.Equal("ApiKey"))
		g.Expect(h.Get("X-Keycap-Namespace")).To(gomega.Equal("acme"))
		g.Expect(h.Get("X-Keycap-Scopes")).To(gomega.Equal("videos:read"))
		g.Expect(h["X-Keycap-Agent"]).To(gomega.Equal([]string{""}))
		g.Expect(h["X-Keycap-Parent"]).To(gomega.Equal([]string{""}))
	})

	t.Run("denials carry the default or the compatibility bodies", func(t *testing.T) {
		g := gomega.NewWithT(t)
		var body map[string]map[string]string
		rec := serveCheck(dp, "/check", http.Header{"X-Api-Key": {"nope"}})
		g.Expect(rec.Code).To(gomega.Equal(http.StatusUnauthorized))
		g.Expect(json.Unmarshal(rec.Body.Bytes(), &body)).To(gomega.Succeed())
		g.Expect(body["error"]).To(gomega.Equal(map[string]string{"code": "unauthorized", "message": "Invalid or expired API key", "reason": "NOT_FOUND"}))
		g.Expect(rec.Header().Get("X-Keycap-Error-Body")).To(gomega.Equal(rec.Body.String()))

		compat := testDataPlane(ix, clk, true, true)
		g.Expect(serveCheck(compat, "/check", http.Header{}).Body.String()).To(gomega.MatchJSON(`{"error":"Unauthorized"}`))
		g.Expect(serveCheck(compat, "/check?scopes=admin", http.Header{"X-Api-Key": {key}}).Body.String()).To(gomega.MatchJSON(`{"message":"Insufficient permissions"}`))
	})

	t.Run("the moment of expiry refuses", func(t *testing.T) {
		g := gomega.NewWithT(t)
		expiring := k.DeepCopy()
		at := metav1.NewTime(clk.Now().Add(time.Minute))
		expiring.Status.ExpiresAt = &at
		ix.Upsert(project(expiring))
		g.Expect(serveCheck(dp, "/check", http.Header{"X-Api-Key": {key}}).Code).To(gomega.Equal(http.StatusOK))
		clk.Step(time.Minute)
		g.Expect(serveCheck(dp, "/check", http.Header{"X-Api-Key": {key}}).Header().Get("X-Keycap-Reason")).To(gomega.Equal("EXPIRED"))
	})
}

func TestLastUsedIsThrottled(t *testing.T) {
	g := gomega.NewWithT(t)
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	u := newUsageRecorder(nil, clk, time.Second, 0)
	slot := &index.Slot{}
	cred := &index.Credential{}
	u.record(slot, cred, clk.Now())
	u.record(slot, cred, clk.Now().Add(59*time.Second))
	g.Expect(u.queue).To(gomega.HaveLen(1))
	u.record(slot, cred, clk.Now().Add(time.Minute))
	g.Expect(u.queue).To(gomega.HaveLen(2))
	// Another replica wrote lastUsedAt a moment ago: nothing to write.
	other := &index.Slot{}
	u.record(other, &index.Credential{LastUsedAt: index.InstantOf(clk.Now().Add(-time.Second))}, clk.Now())
	g.Expect(u.queue).To(gomega.HaveLen(2))
}

func TestTrimForDataPlaneDropsManagedFields(t *testing.T) {
	g := gomega.NewWithT(t)
	withFields := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "x"}}}}
	other, err := TrimForDataPlane(withFields)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	g.Expect(other.(*metav1.PartialObjectMetadata).ManagedFields).To(gomega.BeNil())
}

func TestGRPCLicenseHeaders(t *testing.T) {
	cases := map[string]struct {
		m             map[string]string
		raw           [][2]string
		key, instance string
		present       bool
		conflict      bool
	}{
		"from the headers map":          {m: map[string]string{"licensekey": " k ", "instanceid": "i"}, key: "k", instance: "i", present: true},
		"absent: the key is an API key": {m: map[string]string{"x-api-key": "k"}, key: "k"},
		"from header_map":               {raw: [][2]string{{"LicenseKey", "k"}, {"InstanceID", "i"}}, key: "k", instance: "i", present: true},
		"repeated with two values is invalid": {
			raw: [][2]string{{"licensekey", "k1"}, {"licensekey", "k2"}, {"instanceid", "i"}}, key: "k2", instance: "i", present: true, conflict: true,
		},
	}
	dp := testDataPlane(index.New(), clocktesting.NewFakeClock(time.Now()), true, false)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			hm := &corev3.HeaderMap{}
			for _, h := range tc.raw {
				hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h[0], Value: h[1]})
			}
			var f wire.Form
			dp.formFromGRPC(tc.m, hm, &f)
			p, _ := dp.sources.Extract(&f)
			g.Expect([]any{p.Key, p.Instance, p.License, p.LicenseConflict}).To(gomega.Equal([]any{tc.key, tc.instance, tc.present, tc.conflict}))
		})
	}
}
