package authz

import (
	"context"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

// Context extensions a route sets in Envoy (per-route ext_authz check_settings) to state its
// requirements; both are comma-separated lists.
const (
	ContextExtensionScopes     = "keycap.dev/scopes"
	ContextExtensionNamespaces = "keycap.dev/namespaces"
)

// grpcServer answers envoy.service.auth.v3.Authorization/Check.
type grpcServer struct {
	authv3.UnimplementedAuthorizationServer
	dp *DataPlane
}

// Check implements ext_authz. It never returns an error: every outcome, internal errors included,
// is a CheckResponse that denies unless the credential is valid.
func (s *grpcServer) Check(_ context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, _ error) {
	start := time.Now()
	reason := ReasonInternal
	defer func() {
		if recover() != nil {
			reason = ReasonInternal
			resp = s.dp.grpcDenied(ReasonInternal)
		}
		durationByProt[0].Observe(time.Since(start).Seconds())
		checkCounters[0][reason].Inc()
	}()
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	p, reason := s.dp.extractor.extract(grpcHeaders{m: httpReq.GetHeaders(), hm: httpReq.GetHeaderMap()})
	if reason != ReasonOK {
		if reason == ReasonMissing && !s.dp.ready() {
			reason = ReasonNotReady
		}
		return s.dp.grpcDenied(reason), nil
	}
	ext := attrs.GetContextExtensions()
	d := s.dp.decide(p.key, Requirements{
		Scopes:     parseList(ext[ContextExtensionScopes]),
		Namespaces: parseList(ext[ContextExtensionNamespaces]),
	})
	reason = d.Reason
	if !d.Allowed() {
		return s.dp.grpcDenied(reason), nil
	}
	return s.dp.grpcAllowed(&d, p), nil
}

func headerOption(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func (dp *DataPlane) grpcAllowed(d *Decision, p presented) *authv3.CheckResponse {
	c := d.Credential
	headers := make([]*corev3.HeaderValueOption, 0, 7)
	headers = append(headers,
		headerOption(HeaderKind, c.Kind),
		headerOption(HeaderNamespace, c.Namespace),
		headerOption(HeaderName, c.Name),
		headerOption(HeaderKeyID, c.KeyID),
		headerOption(HeaderScopes, d.Scopes),
	)
	remove := dp.extractor.headersOf(p)
	if c.Agent != "" {
		headers = append(headers, headerOption(HeaderAgent, c.Agent), headerOption(HeaderParent, c.ParentName))
	} else {
		// The client may have sent these; they must not reach the upstream.
		remove = append(remove, HeaderAgent, HeaderParent)
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         headers,
			HeadersToRemove: remove,
		}},
	}
}

func (dp *DataPlane) grpcDenied(r Reason) *authv3.CheckResponse {
	code := codes.Unauthenticated
	switch r.HTTPStatus() {
	case 403:
		code = codes.PermissionDenied
	case 503:
		code = codes.Unavailable
	case 500:
		code = codes.Internal
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: r.String()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(r.HTTPStatus())},
			Headers: []*corev3.HeaderValueOption{
				headerOption("content-type", "application/json"),
				headerOption(HeaderReason, r.String()),
			},
			Body: r.Body(dp.opts.CompatBodies),
		}},
	}
}

// grpcHeaders reads the request headers of a CheckRequest: the headers map (Envoy lowercases
// the names and joins repeated headers with commas) and the header_map Envoy sends instead when
// encode_raw_headers is set (raw values may be any bytes).
type grpcHeaders struct {
	m  map[string]string
	hm *corev3.HeaderMap
}

func (g grpcHeaders) values(lowerName string, fn func(string) bool) {
	if v, ok := g.m[lowerName]; ok {
		if !fn(v) {
			return
		}
	}
	for _, h := range g.hm.GetHeaders() {
		if !strings.EqualFold(h.GetKey(), lowerName) {
			continue
		}
		v := h.GetValue()
		if v == "" && len(h.GetRawValue()) > 0 {
			v = string(h.GetRawValue())
		}
		if !fn(v) {
			return
		}
	}
}
