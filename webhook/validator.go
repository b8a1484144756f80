package webhook

import (
	"context"
	"errors"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/registry"
)

// specPath is the root of every spec field error.
var specPath = field.NewPath("spec")

// validator holds what the validators of every kind share.
type validator struct {
	// reader is the manager's cache, with the registry's field indexes.
	reader client.Reader
	// apiReader reads the apiserver directly, for the parent of an AgentKey the cache may not
	// have seen yet (a parent and its agent key applied together).
	apiReader client.Reader
	clock     clock.PassiveClock
	policy    Policy
}

// kindRules are the rules of one kind beyond those every kind shares (no plaintext key, a unique
// keyHash and Secret name): its spec, checked against the old object on update (old is nil on
// create), and the warnings an update earns.
type kindRules func(ctx context.Context, obj, old keycapv1alpha1.Credential) (field.ErrorList, admission.Warnings, error)

// typedRules adapts the rules of kind T to kindRules.
func typedRules[T keycapv1alpha1.Credential](f func(ctx context.Context, obj, old T) (field.ErrorList, admission.Warnings, error)) kindRules {
	return func(ctx context.Context, obj, old keycapv1alpha1.Credential) (field.ErrorList, admission.Warnings, error) {
		var o T
		if old != nil {
			o = old.(T)
		}
		return f(ctx, obj.(T), o)
	}
}

// kindRules returns the rules of each kind by name. A kind in the registry without rules here
// fails Setup.
func (v *validator) kindRules() map[string]kindRules {
	return map[string]kindRules{
		keycapv1alpha1.KindApiKey:   typedRules(v.apiKeyRules),
		keycapv1alpha1.KindAgentKey: typedRules(v.agentKeyRules),
		keycapv1alpha1.KindAppToken: typedRules(v.appTokenRules),
		keycapv1alpha1.KindLicense:  typedRules(v.licenseRules),
	}
}

// check validates a credential on create (old nil) and update: its kind's rules, then those
// every kind shares.
func (v *validator) check(ctx context.Context, rules kindRules, obj, old keycapv1alpha1.Credential) (admission.Warnings, error) {
	errs, warnings, err := rules(ctx, obj, old)
	if err != nil {
		return nil, err
	}
	errs = append(errs, validateNoPlaintextIn(obj, specPath)...)
	u, err := v.uniqueness(ctx, obj, old)
	if err != nil {
		return nil, err
	}
	if err := result(obj.CredentialKind(), obj.GetName(), append(errs, u...)); err != nil {
		return nil, err
	}
	return warnings, nil
}

// result turns field errors into the Invalid status kubectl prints with the field and the reason.
// A value that holds a plaintext key is never echoed, whichever rule refused it.
func result(kind, name string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	for _, e := range errs {
		if s, ok := e.BadValue.(string); ok && containsKey(s) {
			e.BadValue = field.OmitValueType{}
		}
	}
	return apierrors.NewInvalid(keycapv1alpha1.GroupVersion.WithKind(kind).GroupKind(), name, errs)
}

// uniqueness runs the cluster-wide checks: a keyHash no other credential uses (checked when
// keyHash is new or changed) and a Secret name no other credential in the namespace writes
// (checked on create and when the Secret name changes: secretName may be set after creation).
// old is nil on create.
func (v *validator) uniqueness(ctx context.Context, obj, old keycapv1alpha1.Credential) (field.ErrorList, error) {
	var errs field.ErrorList
	if o, ok := obj.(keycapv1alpha1.OpaqueKeyCredential); ok {
		keyHash, oldKeyHash := o.GetOpaqueKeySpec().KeyHash, ""
		if old != nil {
			oldKeyHash = old.(keycapv1alpha1.OpaqueKeyCredential).GetOpaqueKeySpec().KeyHash
		}
		if keyHash != "" && keyHash != oldKeyHash {
			e, err := validateUniqueDigest(ctx, v.reader, keyHash, refOf(obj), specPath.Child("keyHash"))
			if err != nil {
				return nil, apierrors.NewInternalError(err)
			}
			errs = append(errs, e...)
		}
	}
	if obj.GetName() != "" && (old == nil || keycapv1alpha1.SecretNameOf(old) != keycapv1alpha1.SecretNameOf(obj)) {
		e, err := validateUniqueSecretName(ctx, v.reader, obj, specPath)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		errs = append(errs, e...)
	}
	return errs, nil
}

// validatePath is where the webhook server serves kind's validator: the path controller-runtime
// would give it, which the +kubebuilder:webhook markers in markers.go name.
func validatePath(k *registry.Kind) string {
	gvk := k.GVK()
	return "/validate-" + strings.ReplaceAll(gvk.Group, ".", "-") + "-" + gvk.Version + "-" + strings.ToLower(gvk.Kind)
}

// credentialWebhook is the admission handler of one kind: it decodes the object (and the old
// one) into the kind's type and runs validator.check. Deletes are not validated.
type credentialWebhook struct {
	kind    *registry.Kind
	rules   kindRules
	v       *validator
	decoder admission.Decoder
}

var _ admission.Handler = &credentialWebhook{}

// Handle implements admission.Handler.
func (h *credentialWebhook) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	obj := h.kind.New()
	if err := h.decoder.DecodeRaw(req.Object, obj); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	var old keycapv1alpha1.Credential
	if req.Operation == admissionv1.Update {
		old = h.kind.New()
		if err := h.decoder.DecodeRaw(req.OldObject, old); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
	}
	warnings, err := h.v.check(admission.NewContextWithRequest(ctx, req), h.rules, obj, old)
	var apiStatus apierrors.APIStatus
	switch {
	case errors.As(err, &apiStatus):
		status := apiStatus.Status()
		return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Result: &status, Warnings: warnings}}
	case err != nil:
		return admission.Denied(err.Error()).WithWarnings(warnings...)
	}
	return admission.Allowed("").WithWarnings(warnings...)
}
