package authz_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/onsi/gomega"
)

func TestReadinessProbe(t *testing.T) {
	g := gomega.NewWithT(t)
	resp, err := http.Get("http://" + world.probeAddr + "/readyz/authz")
	g.Expect(err).NotTo(gomega.HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusOK))
}

// TestHTTPCheckBadInput sends what proxies might forward to /check directly, without nginx's own
// limits in front: every answer is a 4xx with a reason, never a 5xx.
func TestHTTPCheckBadInput(t *testing.T) {
	ns := newNamespace(t)
	key, _ := createApiKey(t, ns, "direct", nil)
	url := "http://" + world.dp.HTTPAddr().String() + "/check?scopes=videos:read"
	g := gomega.NewWithT(t)
	g.Eventually(func() int { return getVia(t, url, hdr("X-Api-Key", key)).status }).WithTimeout(propagationTimeout).Should(gomega.Equal(http.StatusOK))

	cases := map[string]struct {
		headers http.Header
		status  int
		reason  string
	}{
		"headers beyond the server's limit": {hdr("X-Api-Key", strings.Repeat("k", 100<<10)), http.StatusRequestHeaderFieldsTooLarge, ""},
		"one header repeated 100 times":     {http.Header{"X-Api-Key": slicesRepeat(key, 100)}, http.StatusUnauthorized, "MALFORMED"},
		"a bearer and x-api-key differing":  {hdr("X-Api-Key", key, "Authorization", "Bearer kc_x"), http.StatusUnauthorized, "AMBIGUOUS"},
		"non-UTF-8":                         {hdr("Authorization", "Bearer \xff\xfe"), http.StatusUnauthorized, "MALFORMED"},
		"a JWT-looking bearer":              {hdr("Authorization", "Bearer eyJ0eXAiOiJKV1QifQ.eyJleHAiOjF9.AAAA"), http.StatusUnauthorized, "MALFORMED"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			a := getVia(t, url, tc.headers)
			g.Expect(a.status).To(gomega.Equal(tc.status))
			g.Expect(a.reason).To(gomega.Equal(tc.reason))
		})
	}
}

func slicesRepeat(v string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = v
	}
	return out
}
