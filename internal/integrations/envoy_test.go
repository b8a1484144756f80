package integrations

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/keycap-dev/keycap/internal/authz"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// recipe is the path of a file under config/samples/integrations.
func recipe(parts ...string) string {
	return filepath.Join(append([]string{testenv.RepoRoot(), "config", "samples", "integrations"}, parts...)...)
}

// validator is what protoc-gen-validate generates for every Envoy message.
type validator interface{ ValidateAll() error }

// validateDeep runs ValidateAll on m and on every message packed in an Any inside it (typed
// configs of filters, per-route configs, protocol options), which ValidateAll does not open.
func validateDeep(t *testing.T, path string, m proto.Message) {
	t.Helper()
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	var walk func(path string, msg protoreflect.Message)
	walk = func(path string, msg protoreflect.Message) {
		if a, ok := msg.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				t.Errorf("%s: %s: %v", path, a.GetTypeUrl(), err)
				return
			}
			validateDeep(t, path+"("+a.GetTypeUrl()+")", inner)
			return
		}
		msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := path + "." + string(fd.Name())
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(p, v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(p+"["+k.String()+"]", mv.Message())
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(p, v.Message())
			}
			return true
		})
	}
	walk(path, m.ProtoReflect())
}

// collectAny returns every message of type T packed in an Any inside m.
func collectAny[T proto.Message](t *testing.T, m proto.Message) []T {
	var out []T
	var walk func(msg protoreflect.Message)
	walk = func(msg protoreflect.Message) {
		if a, ok := msg.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				return
			}
			if v, ok := inner.(T); ok {
				out = append(out, v)
			}
			walk(inner.ProtoReflect())
			return
		}
		msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { walk(mv.Message()); return true })
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
	return out
}

func TestEnvoyBootstrapIsValid(t *testing.T) {
	raw, err := os.ReadFile(recipe("envoy", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := utilyaml.ToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	// Unknown fields are errors: a misspelt field would otherwise be dropped silently.
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, &b); err != nil {
		t.Fatalf("envoy.yaml is not an Envoy v3 bootstrap: %v", err)
	}
	validateDeep(t, "bootstrap", &b)

	// The recipe speaks keycap's language: both transports, the context extensions keycap
	// reads, and a failure mode that denies.
	filters := collectAny[*extauthzv3.ExtAuthz](t, &b)
	var grpcFilter, httpFilter bool
	for _, f := range filters {
		if f.GetFailureModeAllow() {
			t.Error("an ext_authz filter allows requests when keycap is unreachable (failure_mode_allow)")
		}
		grpcFilter = grpcFilter || f.GetGrpcService() != nil
		if hs := f.GetHttpService(); hs != nil {
			httpFilter = true
			if hs.GetPathPrefix() != authz.CheckPath {
				t.Errorf("HTTP ext_authz path_prefix = %q, want %q", hs.GetPathPrefix(), authz.CheckPath)
			}
		}
	}
	if !grpcFilter || !httpFilter {
		t.Errorf("want a gRPC and an HTTP ext_authz filter, got gRPC %v, HTTP %v", grpcFilter, httpFilter)
	}
	known := map[string]bool{
		authz.ContextExtensionScopes: true, authz.ContextExtensionNamespaces: true,
		authz.ContextExtensionAudience: true, authz.ContextExtensionEntitlements: true,
	}
	perRoute := collectAny[*extauthzv3.ExtAuthzPerRoute](t, &b)
	var extensions int
	for _, pr := range perRoute {
		for k := range pr.GetCheckSettings().GetContextExtensions() {
			extensions++
			if !known[k] && strings.HasPrefix(k, "keycap.dev/") {
				t.Errorf("context extension %q is not one keycap reads", k)
			}
		}
	}
	if extensions == 0 {
		t.Error("no route states its requirements in context_extensions")
	}
}
