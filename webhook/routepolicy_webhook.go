package webhook

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/routepolicy"
)

// PathRoutePolicy is where the RoutePolicy validator is served.
const PathRoutePolicy = "/validate-keycap-dev-v1alpha1-routepolicy"

// The RoutePolicy validator reads the other policies for its host-conflict warnings.
// +kubebuilder:rbac:groups=keycap.dev,resources=routepolicies,verbs=get;list;watch
// +kubebuilder:webhook:path=/validate-keycap-dev-v1alpha1-routepolicy,mutating=false,failurePolicy=fail,sideEffects=None,timeoutSeconds=5,groups=keycap.dev,resources=routepolicies,verbs=create;update,versions=v1alpha1,name=vroutepolicy.keycap.dev,admissionReviewVersions=v1,matchPolicy=Equivalent,serviceName=keycap-webhook-service,serviceNamespace=keycap-system,patch=`{"matchConditions":[{"name":"spec-changed","expression":"request.operation != 'UPDATE' || object.?spec.orValue({}) != oldObject.?spec.orValue({})"}]}`

// standardMethods are the methods of RFC 9110 and RFC 5789; others earn a warning, not a refusal
// (WebDAV and other extensions have their own).
var standardMethods = []string{"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}

// setupRoutePolicyWebhook registers the RoutePolicy validator with mgr's webhook server.
func setupRoutePolicyWebhook(mgr ctrl.Manager) {
	mgr.GetWebhookServer().Register(PathRoutePolicy, &ctrlwebhook.Admission{
		Handler: &routePolicyWebhook{reader: mgr.GetCache(), decoder: admission.NewDecoder(mgr.GetScheme())},
	})
}

// routePolicyWebhook validates RoutePolicies: the rules the CRD's schema and CEL cannot state
// (refusals), and the hosts an older policy already holds (warnings: the race between two
// policies ends oldest-first in status and in the data plane either way).
type routePolicyWebhook struct {
	reader  client.Reader
	decoder admission.Decoder
}

var _ admission.Handler = &routePolicyWebhook{}

// Handle implements admission.Handler.
func (h *routePolicyWebhook) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	var rp keycapv1alpha1.RoutePolicy
	if err := h.decoder.DecodeRaw(req.Object, &rp); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	errs, warnings := validateRoutePolicySpec(&rp.Spec, specPath)
	if len(errs) > 0 {
		status := apierrors.NewInvalid(keycapv1alpha1.GroupVersion.WithKind(keycapv1alpha1.KindRoutePolicy).GroupKind(), rp.Name, errs).Status()
		return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Result: &status, Warnings: warnings}}
	}
	conflicts, err := h.conflictWarnings(ctx, &rp)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.Allowed("").WithWarnings(append(warnings, conflicts...)...)
}

// validateRoutePolicySpec checks what the schema cannot: a path prefix listed twice in a rule
// under spellings the data plane takes as one ("/Admin", "/admin/"), and a prefix and method that
// two rules both claim (both would apply, which is rarely what was meant: merge them). Methods
// outside RFC 9110 earn a warning.
func validateRoutePolicySpec(spec *keycapv1alpha1.RoutePolicySpec, path *field.Path) (field.ErrorList, []string) {
	var errs field.ErrorList
	var warnings []string
	type claim struct{ prefix, method string }
	claimed := map[claim]int{}
	for i := range spec.Rules {
		rule := &spec.Rules[i]
		rulePath := path.Child("rules").Index(i)
		seen := map[string]int{}
		for j, p := range rule.Paths {
			key := routepolicy.PrefixKey(p)
			if k, dup := seen[key]; dup {
				errs = append(errs, field.Duplicate(rulePath.Child("paths").Index(j),
					fmt.Sprintf("%s (the same prefix as paths[%d]: prefixes match case-insensitively, with or without a trailing slash)", p, k)))
				continue
			}
			seen[key] = j
			methods := rule.Methods
			if len(methods) == 0 {
				methods = []string{"*"}
			}
			for _, m := range methods {
				c := claim{key, m}
				if other, dup := claimed[c]; dup && other != i {
					errs = append(errs, field.Duplicate(rulePath.Child("paths").Index(j),
						fmt.Sprintf("%s for %s is already claimed by rules[%d]; merge the two rules", p, methodName(m), other)))
					continue
				}
				claimed[c] = i
			}
		}
		for j, m := range rule.Methods {
			if !slices.Contains(standardMethods, m) {
				warnings = append(warnings, fmt.Sprintf("%s: %s is not an HTTP method of RFC 9110", rulePath.Child("methods").Index(j), m))
			}
		}
	}
	return errs, warnings
}

func methodName(m string) string {
	if m == "*" {
		return "every method"
	}
	return m
}

// conflictWarnings names the hosts of rp that an older policy holds.
func (h *routePolicyWebhook) conflictWarnings(ctx context.Context, rp *keycapv1alpha1.RoutePolicy) ([]string, error) {
	var list keycapv1alpha1.RoutePolicyList
	if err := h.reader.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("listing RoutePolicies: %w", err)
	}
	var warnings []string
	for i := range list.Items {
		other := &list.Items[i]
		if other.Namespace == rp.Namespace && other.Name == rp.Name {
			continue
		}
		// A new object has no creationTimestamp yet: every stored policy is older.
		if !rp.CreationTimestamp.IsZero() && !routepolicy.Older(other, rp) {
			continue
		}
		for _, host := range rp.Spec.Hosts {
			if slices.ContainsFunc(other.Spec.Hosts, func(h string) bool { return strings.EqualFold(h, host) }) {
				warnings = append(warnings, fmt.Sprintf("host %s is held by the older RoutePolicy %s/%s; it will not apply here (Ready=False, reason HostConflict)", host, other.Namespace, other.Name))
			}
		}
	}
	return warnings, nil
}
