package authz

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/activation"
	"github.com/keycap-dev/keycap/internal/keys"
)

// frozenAPIServer is an apiserver that never answers: every read waits for its context.
type frozenAPIServer struct{}

func (frozenAPIServer) Get(ctx context.Context, _ client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	<-ctx.Done()
	return ctx.Err()
}

func (frozenAPIServer) List(ctx context.Context, _ client.ObjectList, _ ...client.ListOption) error {
	<-ctx.Done()
	return ctx.Err()
}

// activationDataPlane is oneKeyDataPlane with a License (whose key it returns) and an
// activator whose apiserver is frozen.
func activationDataPlane(t *testing.T) (*DataPlane, string) {
	t.Helper()
	dp, _ := oneKeyDataPlane(t)
	licKey, _ := keys.Generate(keycapv1alpha1.LicenseKeyPrefix)
	lic := &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: "acme", Name: "pro"}}
	lic.Status.Digests = []string{keys.Digest(licKey)}
	dp.index.Upsert(project(lic))
	dp.activator = activation.NewActivator(dp.index, frozenAPIServer{}, nil, dp.authz.clock)
	return dp, licKey
}

// serveHTTP serves dp's HTTP port on 127.0.0.1 and returns its address.
func serveHTTP(t *testing.T, dp *DataPlane) string {
	t.Helper()
	srv := NewHTTPServer(dp.newHTTPMux())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// rawRequest writes a request by hand on a fresh connection and returns the connection; a
// generous deadline keeps a failing test from hanging forever.
func rawRequest(t *testing.T, addr, head string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

// POST /check announcing a body it never sends is answered without waiting for the body (the
// server no longer tries to drain it first), and the connection is closed after the answer.
func TestCheckIsAnsweredWithoutReadingABody(t *testing.T) {
	g := gomega.NewWithT(t)
	dp, key := oneKeyDataPlane(t)
	addr := serveHTTP(t, dp)
	for _, target := range []string{"/check", "/check/upload"} {
		c := rawRequest(t, addr, "POST "+target+" HTTP/1.1\r\nHost: keycap\r\nx-api-key: "+key+"\r\nContent-Length: 100000\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		g.Expect(err).NotTo(gomega.HaveOccurred())
		g.Expect(resp.Body.Close()).To(gomega.Succeed())
		g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusOK))
		g.Expect(resp.Header.Get("X-Keycap-Reason")).To(gomega.Equal("OK"))
		g.Expect(resp.Close).To(gomega.BeTrue())
	}
	c := rawRequest(t, addr, "POST /check HTTP/1.1\r\nHost: keycap\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusUnauthorized))
}

// A client trickling a request body is cut off by the read timeout instead of holding its
// connection (and a file) for ever.
func TestSlowBodyIsCutOff(t *testing.T) {
	g := gomega.NewWithT(t)
	saved := httpLimits
	httpLimits.read = 200 * time.Millisecond
	t.Cleanup(func() { httpLimits = saved })
	dp, licKey := activationDataPlane(t)
	addr := serveHTTP(t, dp)
	c := rawRequest(t, addr, "POST "+activation.Path+" HTTP/1.1\r\nHost: keycap\r\nlicensekey: "+licKey+
		"\r\ninstanceid: i-1\r\nContent-Length: 100\r\n\r\n{")
	// Nothing more is sent: the server must end the request by itself (an answer or a close).
	_, err := io.ReadAll(c)
	g.Expect(err).NotTo(gomega.HaveOccurred(), "the server kept the connection open")
}

// The HTTP server has every timeout set and a header size limit.
func TestHTTPServerTimeouts(t *testing.T) {
	g := gomega.NewWithT(t)
	dp, _ := oneKeyDataPlane(t)
	srv := NewHTTPServer(dp.newHTTPMux())
	for _, d := range []time.Duration{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout} {
		g.Expect(d).To(gomega.BeNumerically(">", 0))
	}
	g.Expect(srv.ReadHeaderTimeout).To(gomega.BeNumerically("<=", srv.ReadTimeout))
	g.Expect(activationLimits.deadline).To(gomega.BeNumerically("<", srv.WriteTimeout))
	g.Expect(srv.MaxHeaderBytes).To(gomega.BeNumerically(">", 0))
}

// Bodies of the other endpoints are limited: a body beyond the limit is not read whole.
func TestRequestBodyIsLimited(t *testing.T) {
	g := gomega.NewWithT(t)
	dp, _ := oneKeyDataPlane(t)
	var read int64
	var readErr error
	h := dp.limitBody(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		read, readErr = io.Copy(io.Discard, r.Body)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/x", strings.NewReader(strings.Repeat("a", 10<<20))))
	g.Expect(readErr).To(gomega.HaveOccurred())
	g.Expect(read).To(gomega.BeNumerically("<=", maxRequestBody))
}

// A frozen apiserver does not hold an activation: past its deadline it answers 503 BUSY with
// Retry-After.
func TestActivationHasADeadline(t *testing.T) {
	g := gomega.NewWithT(t)
	saved := activationLimits
	activationLimits.deadline = 50 * time.Millisecond
	t.Cleanup(func() { activationLimits = saved })
	dp, licKey := activationDataPlane(t)
	addr := serveHTTP(t, dp)
	c := rawRequest(t, addr, "POST "+activation.Path+" HTTP/1.1\r\nHost: keycap\r\nlicensekey: "+licKey+
		"\r\ninstanceid: i-1\r\nContent-Length: 2\r\n\r\n{}")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusServiceUnavailable))
	g.Expect(resp.Header.Get("X-Keycap-Reason")).To(gomega.Equal("BUSY"))
	g.Expect(resp.Header.Get("Retry-After")).NotTo(gomega.BeEmpty())
}

// Activation is rate-limited per client address and per licence: 429 RATE_LIMITED with
// Retry-After once a bucket is empty (the data plane's clock is a fake one: nothing refills).
func TestActivationIsRateLimited(t *testing.T) {
	dp, licKey := activationDataPlane(t)
	activate := func(h http.Handler, remote, key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, activation.Path, strings.NewReader(`{}`))
		req.RemoteAddr = remote
		req.Header.Set("licensekey", key)
		req.Header.Set("instanceid", "i-1")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	t.Run("per address", func(t *testing.T) {
		g := gomega.NewWithT(t)
		h := dp.newHTTPMux()
		for i := range activationLimits.perAddress.burst {
			g.Expect(activate(h, "192.0.2.1:1234", "kclic_garbage"+strconv.Itoa(i)).Code).To(gomega.Equal(http.StatusUnauthorized))
		}
		rec := activate(h, "192.0.2.1:1235", "kclic_other")
		g.Expect(rec.Code).To(gomega.Equal(http.StatusTooManyRequests))
		g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal("RATE_LIMITED"))
		g.Expect(rec.Header().Get("Retry-After")).NotTo(gomega.BeEmpty())
		g.Expect(activate(h, "192.0.2.2:1234", "kclic_garbage0").Code).To(gomega.Equal(http.StatusUnauthorized))
	})
	t.Run("per licence", func(t *testing.T) {
		g := gomega.NewWithT(t)
		saved := activationLimits
		activationLimits.deadline = time.Millisecond // the apiserver is frozen: BUSY at once
		t.Cleanup(func() { activationLimits = saved })
		h := dp.newHTTPMux()
		for i := range activationLimits.perLicense.burst {
			rec := activate(h, "198.51.100."+strconv.Itoa(i)+":1", licKey)
			g.Expect(rec.Code).To(gomega.Equal(http.StatusServiceUnavailable))
		}
		rec := activate(h, "198.51.100.250:1", licKey)
		g.Expect(rec.Code).To(gomega.Equal(http.StatusTooManyRequests))
		g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal("RATE_LIMITED"))
	})
}

// Activation is not served while the data plane is not ready (its index may not know the
// licence yet): 503 NOT_READY with Retry-After, before any apiserver call.
func TestActivationWaitsForReadiness(t *testing.T) {
	g := gomega.NewWithT(t)
	dp, licKey := activationDataPlane(t)
	dp.synced = func() bool { return false }
	req := httptest.NewRequest(http.MethodPost, activation.Path, strings.NewReader(`{}`))
	req.Header.Set("licensekey", licKey)
	req.Header.Set("instanceid", "i-1")
	rec := httptest.NewRecorder()
	dp.newHTTPMux().ServeHTTP(rec, req)
	g.Expect(rec.Code).To(gomega.Equal(http.StatusServiceUnavailable))
	g.Expect(rec.Header().Get("X-Keycap-Reason")).To(gomega.Equal("NOT_READY"))
	g.Expect(rec.Header().Get("Retry-After")).NotTo(gomega.BeEmpty())
	g.Expect(rec.Body.String()).To(gomega.MatchJSON(`{"error":{"code":"unavailable","message":"Authorization service not ready","reason":"NOT_READY"}}`))
}
