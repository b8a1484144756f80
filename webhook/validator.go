package webhook

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// specPath is the root of every spec field error.
var specPath = field.NewPath("spec")

// validator holds what the four validators share.
type validator struct {
	// reader is the manager's cache, with the field indexes of index.go.
	reader client.Reader
	// apiReader reads the apiserver directly, for the parent of an AgentKey the cache may not
	// have seen yet (a parent and its agent key applied together).
	apiReader client.Reader
	clock     clock.PassiveClock
	policy    Policy
}

// kindValidator is the admission.Validator of a kind whose creates and updates need nothing but
// check (old is nil on create). Deletes are not validated.
type kindValidator[T client.Object] struct {
	check func(ctx context.Context, obj, old T) error
}

// ValidateCreate implements admission.Validator.
func (k kindValidator[T]) ValidateCreate(ctx context.Context, obj T) (admission.Warnings, error) {
	var none T
	return nil, k.check(ctx, obj, none)
}

// ValidateUpdate implements admission.Validator.
func (k kindValidator[T]) ValidateUpdate(ctx context.Context, oldObj, newObj T) (admission.Warnings, error) {
	return nil, k.check(ctx, newObj, oldObj)
}

// ValidateDelete implements admission.Validator; deletes are not validated.
func (k kindValidator[T]) ValidateDelete(context.Context, T) (admission.Warnings, error) {
	return nil, nil
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
// oldSpec is nil on create.
func (v *validator) uniqueness(ctx context.Context, self credentialRef, spec, oldSpec *keycapv1alpha1.CredentialSpec, keyHash, oldKeyHash string) (field.ErrorList, error) {
	var errs field.ErrorList
	if keyHash != "" && keyHash != oldKeyHash {
		e, err := validateUniqueDigest(ctx, v.reader, keyHash, self, specPath.Child("keyHash"))
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		errs = append(errs, e...)
	}
	if self.Name != "" && (oldSpec == nil || secretNameOf(oldSpec, self.Name) != secretNameOf(spec, self.Name)) {
		e, err := validateUniqueSecretName(ctx, v.reader, spec, self, specPath)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		errs = append(errs, e...)
	}
	return errs, nil
}
