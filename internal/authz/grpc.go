package authz

import (
	"context"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"

	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/routepolicy"
	"github.com/keycap-dev/keycap/internal/session"
)

// Context extensions a route sets in Envoy (per-route ext_authz check_settings) to state its
// requirements; both are comma-separated lists.
const (
	ContextExtensionScopes     = "keycap.dev/scopes"
	ContextExtensionNamespaces = "keycap.dev/namespaces"
	// ContextExtensionAudience is the audience an AppToken must be for.
	ContextExtensionAudience = "keycap.dev/audience"
	// ContextExtensionEntitlements are the entitlements a licence must hold.
	ContextExtensionEntitlements = "keycap.dev/entitlements"
)

// GRPCServerOptions are the ext_authz gRPC server's limits and workers. hack/bench builds its
// no-op baseline with them too, so that the two servers differ only in what they answer.
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(1 << 20),
		// The gRPC listener's timeouts: a connection must finish its handshake within 10 s, and
		// one idle for 5 minutes is closed (Envoy reconnects at once).
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
		// Checks run on long-lived workers rather than a new goroutine each: a Check's stack
		// outgrows a new goroutine's, and growing (copying) it was 18 % of the data plane's CPU
		// under load in a profile (hack/bench/README.md). A Check that finds every worker busy
		// still gets a goroutine of its own.
		grpc.NumStreamWorkers(grpcStreamWorkers),
	}
}

// grpcStreamWorkers is how many goroutines the gRPC server keeps for running Checks (whose
// stacks, once grown, stay grown): enough for the requests one Envoy fleet keeps in flight to a
// replica at once; an idle worker costs its stack, a few KiB.
const grpcStreamWorkers = 64

// grpcServer answers envoy.service.auth.v3.Authorization/Check.
type grpcServer struct {
	authv3.UnimplementedAuthorizationServer
	dp *DataPlane
}

// Check implements ext_authz. It never returns an error: every outcome, internal errors included,
// is a CheckResponse that denies unless the credential is valid.
func (s *grpcServer) Check(_ context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, _ error) {
	start := time.Now()
	reason := wire.ReasonInternal
	defer func() {
		if recover() != nil {
			reason = wire.ReasonInternal
			resp = s.dp.grpcDenied(wire.ReasonInternal)
		}
		durationByProt[0].Observe(time.Since(start).Seconds())
		checkCounters[0][reason].Inc()
	}()
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	var form wire.Form
	s.dp.formFromGRPC(httpReq.GetHeaders(), httpReq.GetHeaderMap(), &form)
	headers := httpReq.GetHeaders()
	form.SetOrigin(headers["sec-fetch-site"], headers["origin"], httpReq.GetMethod())
	ext := attrs.GetContextExtensions()
	scopes := [1]string{ext[ContextExtensionScopes]}
	namespaces := [1]string{ext[ContextExtensionNamespaces]}
	entitlements := [1]string{ext[ContextExtensionEntitlements]}
	route := Requirements{Scopes: scopes[:], Namespaces: namespaces[:], Entitlements: entitlements[:]}
	aud := Audience{Name: ext[ContextExtensionAudience]}
	// A RoutePolicy holding the request's host adds its matching rules' requirements.
	var rules [4]*routepolicy.Rule
	rc := s.dp.routes.route(&routepolicy.View{GRPC: true, Host: httpReq.GetHost(), Target: httpReq.GetPath(), Method: httpReq.GetMethod()}, rules[:0])
	rc.addTo(&route, &aud)
	p, d := s.dp.check(&form, &route, aud)
	rc.judge(&d)
	reason = d.Reason
	if !d.Allowed() {
		return s.dp.grpcDeniedBody(reason, reason.BodyFor(s.dp.opts.CompatBodies, p.License)), nil
	}
	resp = s.dp.grpcAllowed(&d, &p)
	if form.HasCookie() {
		stripCookieUpstream(resp, &form)
	}
	return resp, nil
}

// stripCookieUpstream rewrites the upstream's Cookie header without keycap's session cookie
// (removes it when nothing else is left), so the upstream never sees the session.
func stripCookieUpstream(resp *authv3.CheckResponse, f *wire.Form) {
	joined := f.CookieHeader()
	stripped := session.StripCookie(joined)
	if stripped == joined {
		return
	}
	ok := resp.GetOkResponse()
	if stripped == "" {
		// The remove-list is shared between answers: extend a copy.
		ok.HeadersToRemove = append(append(make([]string, 0, len(ok.HeadersToRemove)+1), ok.HeadersToRemove...), wire.HeaderCookie)
		return
	}
	ok.Headers = append(ok.Headers, headerOption(wire.HeaderCookie, stripped))
}

// formFromGRPC reads the credential sources of a CheckRequest: the headers map (Envoy lowercases
// the names and joins repeated headers with commas) and the header_map Envoy sends instead when
// encode_raw_headers is set (raw values may be any bytes).
func (dp *DataPlane) formFromGRPC(m map[string]string, hm *corev3.HeaderMap, f *wire.Form) {
	names := dp.sources.Names()
	for i, name := range names {
		if v, ok := m[name]; ok {
			f.SetOne(i, v)
		}
	}
	if v, ok := m[wire.HeaderLicenseKey]; ok {
		f.AddLicenseKey(v)
	}
	if v, ok := m[wire.HeaderInstanceID]; ok {
		f.AddInstanceID(v)
	}
	if v, ok := m[wire.HeaderCookie]; ok {
		f.SetCookie(v)
	}
	for _, h := range hm.GetHeaders() {
		key := h.GetKey()
		v := h.GetValue()
		if v == "" && len(h.GetRawValue()) > 0 {
			v = string(h.GetRawValue())
		}
		switch {
		case strings.EqualFold(key, wire.HeaderLicenseKey):
			f.AddLicenseKey(v)
			continue
		case strings.EqualFold(key, wire.HeaderInstanceID):
			f.AddInstanceID(v)
			continue
		case strings.EqualFold(key, wire.HeaderCookie):
			f.AddCookie(v)
			continue
		}
		for i, name := range names {
			if strings.EqualFold(key, name) {
				f.Add(i, v)
			}
		}
	}
}

func headerOption(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// grpcAllowed answers OK with the identity headers (replacing any the client sent) and removes
// the credential headers and the identity headers this kind does not set (a client may have
// forged them).
func (dp *DataPlane) grpcAllowed(d *Decision, p *wire.Presented) *authv3.CheckResponse {
	id := &d.Identity
	n := id.Count()
	// The whole answer is one allocation: the response messages and every header option, value
	// and pointer, sized for the common five headers or for every identity header.
	var (
		resp *grpcOK
		opts []corev3.HeaderValueOption
		hvs  []corev3.HeaderValue
		ptrs []*corev3.HeaderValueOption
	)
	if n <= 5 {
		a := &struct {
			grpcOK
			opts [5]corev3.HeaderValueOption
			hvs  [5]corev3.HeaderValue
			ptrs [5]*corev3.HeaderValueOption
		}{}
		resp, opts, hvs, ptrs = &a.grpcOK, a.opts[:n:n], a.hvs[:n:n], a.ptrs[:n:n]
	} else {
		a := &struct {
			grpcOK
			opts [wire.IdentityHeaderCount]corev3.HeaderValueOption
			hvs  [wire.IdentityHeaderCount]corev3.HeaderValue
			ptrs [wire.IdentityHeaderCount]*corev3.HeaderValueOption
		}{}
		resp, opts, hvs, ptrs = &a.grpcOK, a.opts[:n:n], a.hvs[:n:n], a.ptrs[:n:n]
	}
	j := 0
	for i := range wire.IdentityHeaderCount {
		name, _, set := id.IdentityHeader(i)
		if !set {
			continue
		}
		hvs[j].Key, hvs[j].Value = name, id.Value(i)
		opts[j].Header = &hvs[j]
		opts[j].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		ptrs[j] = &opts[j]
		j++
	}
	resp.o.Headers = ptrs
	resp.o.HeadersToRemove = dp.sources.Removal(p, id.Fields).Headers
	resp.ok.OkResponse = &resp.o
	resp.r.HttpResponse = &resp.ok
	resp.r.Status = &resp.s
	return &resp.r
}

// grpcOK holds the messages of an allowed answer, allocated together.
type grpcOK struct {
	r  authv3.CheckResponse
	ok authv3.CheckResponse_OkResponse
	o  authv3.OkHttpResponse
	s  rpcstatus.Status
}

// grpcDenied answers a denial as an OK Check call whose response denies: status
// UNAUTHENTICATED (401) or PERMISSION_DENIED (403, also NOT_READY and INTERNAL), never a gRPC
// error, which Envoy's failure_mode_allow would turn into an allow, and with the same HTTP status,
// reason and body as the HTTP port.
func (dp *DataPlane) grpcDenied(r Reason) *authv3.CheckResponse {
	return dp.grpcDeniedBody(r, r.Body(dp.opts.CompatBodies))
}

// grpcDeniedBody is grpcDenied with the given body (a licence's words: Reason.BodyFor).
func (dp *DataPlane) grpcDeniedBody(r Reason, body string) *authv3.CheckResponse {
	code := codes.Unauthenticated
	if r.HTTPStatus() == 403 {
		code = codes.PermissionDenied
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: r.String()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(r.HTTPStatus())},
			Headers: []*corev3.HeaderValueOption{
				headerOption("content-type", "application/json"),
				headerOption(wire.HeaderReason, r.String()),
			},
			Body: body,
		}},
	}
}
