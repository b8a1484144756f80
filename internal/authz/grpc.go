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
	// ContextExtensionAudience is the audience an AppToken must be for.
	ContextExtensionAudience = "keycap.dev/audience"
	// ContextExtensionEntitlements are the entitlements a licence must hold.
	ContextExtensionEntitlements = "keycap.dev/entitlements"
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
	var hv headerValues
	s.dp.extractor.fromGRPC(httpReq.GetHeaders(), httpReq.GetHeaderMap(), &hv)
	p, reason := s.dp.extractor.extract(&hv)
	licenseKey, instanceID, hasLicense := grpcLicense(httpReq.GetHeaders(), httpReq.GetHeaderMap())
	switch {
	case hasLicense && reason == ReasonMissing:
		reason = ReasonOK
	case hasLicense && reason == ReasonOK:
		reason = ReasonAmbiguous
	}
	if reason != ReasonOK {
		if reason == ReasonMissing && !s.dp.ready() {
			reason = ReasonNotReady
		}
		return s.dp.grpcDenied(reason), nil
	}
	ext := attrs.GetContextExtensions()
	scopes := [1]string{ext[ContextExtensionScopes]}
	namespaces := [1]string{ext[ContextExtensionNamespaces]}
	entitlements := [1]string{ext[ContextExtensionEntitlements]}
	route := Requirements{Scopes: scopes[:], Namespaces: namespaces[:], Audience: ext[ContextExtensionAudience], Entitlements: entitlements[:]}
	var d Decision
	if hasLicense {
		d = s.dp.decideLicense(licenseKey, instanceID, route)
	} else {
		d = s.dp.decide(p.key, route)
	}
	reason = d.Reason
	if !d.Allowed() {
		return s.dp.grpcDenied(reason), nil
	}
	return s.dp.grpcAllowed(&d, p), nil
}

// grpcLicense returns the licensekey and instanceid headers of a CheckRequest. A repeated header
// (joined with a comma by Envoy, or listed twice in header_map) makes the value invalid.
func grpcLicense(m map[string]string, hm *corev3.HeaderMap) (key, instance string, ok bool) {
	key, ok = m[HeaderLicenseKey]
	instance = m[HeaderInstanceID]
	for _, h := range hm.GetHeaders() {
		v := h.GetValue()
		if v == "" && len(h.GetRawValue()) > 0 {
			v = string(h.GetRawValue())
		}
		switch {
		case strings.EqualFold(h.GetKey(), HeaderLicenseKey):
			if ok && key != v {
				key = "\x00repeated"
			} else {
				key = v
			}
			ok = true
		case strings.EqualFold(h.GetKey(), HeaderInstanceID):
			if instance != "" && instance != v {
				instance = "\x00repeated"
			} else {
				instance = v
			}
		}
	}
	return trimSpace(key), trimSpace(instance), ok
}

func headerOption(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// grpcAllowed answers OK with the identity headers (replacing any the client sent) and removes
// the credential headers and, for an ApiKey, the agent headers a client may have forged.
func (dp *DataPlane) grpcAllowed(d *Decision, p presented) *authv3.CheckResponse {
	c := d.Credential
	variant := variantOf(c.Kind)
	names := [7]string{HeaderKind, HeaderNamespace, HeaderName, HeaderKeyID, HeaderScopes}
	values := [7]string{c.Kind, c.Namespace, c.Name, c.KeyID, d.Scopes}
	n := 5
	switch variant {
	case variantAgent:
		names[5], values[5], names[6], values[6] = HeaderAgent, c.Agent, HeaderParent, c.ParentName
		n = 7
	case variantToken:
		names[5], values[5] = HeaderSubject, d.Subject
		n = 6
	case variantLicense:
		names[5], values[5] = HeaderEntitlements, c.License.EntitlementsHeader
		n = 6
	}
	// The whole answer is one allocation: the response messages and every header option, value
	// and pointer, sized for the common five headers or for seven. (The identity headers are not
	// cached per credential: that would cost memory per key, and an answer is collected young.)
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
			opts [7]corev3.HeaderValueOption
			hvs  [7]corev3.HeaderValue
			ptrs [7]*corev3.HeaderValueOption
		}{}
		resp, opts, hvs, ptrs = &a.grpcOK, a.opts[:n:n], a.hvs[:n:n], a.ptrs[:n:n]
	}
	for i := range n {
		hvs[i].Key, hvs[i].Value = names[i], values[i]
		opts[i].Header = &hvs[i]
		opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		ptrs[i] = &opts[i]
	}
	resp.o.Headers = ptrs
	resp.o.HeadersToRemove = dp.extractor.toRemove(p.from, variant)
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
