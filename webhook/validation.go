package webhook

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/plaintext"
)

// This file holds the pure validation functions: they see only what they are given (a spec, the
// old object, an instant, bounds) and return field errors, so they are tested without a cluster.
// The rules that the OpenAPI schema and the CEL rules in api/v1alpha1 already enforce (formats,
// lengths, list sizes, immutability, expiresAt xor duration, renewBefore < duration ...) are not
// repeated here: they hold even when the webhook is down.

// MsgPlaintextCredential is the refusal for a plaintext keycap key found in a manifest.
const MsgPlaintextCredential = "plaintext credential; apply only keyHash"

// DurationBounds bound a duration; a zero bound is no bound.
type DurationBounds struct {
	Min, Max time.Duration
}

// Policy holds the configurable limits the webhook enforces on top of the schema.
type Policy struct {
	// AppTokenDuration bounds spec.duration of an AppToken (the schema allows 1m to 8760h; an
	// operator may narrow it, e.g. to at most 24h).
	AppTokenDuration DurationBounds
	// AppTokenMinUse is the least time a token is used before its renewal starts
	// (duration - renewBefore), so a token is never renewed in a tight loop.
	AppTokenMinUse time.Duration
	// MaxLifetime bounds spec.duration of ApiKey, AgentKey and License; zero: no bound.
	MaxLifetime time.Duration
}

// DefaultPolicy is the policy when Options.Policy is zero.
func DefaultPolicy() Policy {
	return Policy{
		AppTokenDuration: DurationBounds{Min: time.Minute, Max: 8760 * time.Hour},
		AppTokenMinUse:   30 * time.Second,
	}
}

// validateCredentialSpec holds the rules every kind shares.
func validateCredentialSpec(spec *keycapv1alpha1.CredentialSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if t := spec.SecretTemplate; t != nil {
		tPath := fldPath.Child("secretTemplate")
		errs = append(errs, metav1validation.ValidateLabels(t.Labels, tPath.Child("labels"))...)
		errs = append(errs, apivalidation.ValidateAnnotations(t.Annotations, tPath.Child("annotations"))...)
		for _, k := range sortedKeys(t.Labels) {
			if keycapv1alpha1.IsReservedMetadataKey(k) {
				errs = append(errs, field.Forbidden(tPath.Child("labels").Key(k),
					"keycap sets this label on the Secret itself; it cannot be overridden"))
			}
		}
		for _, k := range sortedKeys(t.Annotations) {
			if keycapv1alpha1.IsReservedMetadataKey(k) {
				errs = append(errs, field.Forbidden(tPath.Child("annotations").Key(k),
					"keycap sets this annotation on the Secret itself; it cannot be overridden"))
			}
		}
	}
	return errs
}

// validateLifetime: a lifetime that is already over at creation, or not positive, is a mistake.
func validateLifetime(l *keycapv1alpha1.Lifetime, creating bool, now time.Time, policy Policy, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if l.Duration != nil {
		p := fldPath.Child("duration")
		switch {
		case l.Duration.Duration <= 0:
			errs = append(errs, field.Invalid(p, l.Duration.Duration.String(), "must be positive"))
		case policy.MaxLifetime > 0 && l.Duration.Duration > policy.MaxLifetime:
			errs = append(errs, field.Invalid(p, l.Duration.Duration.String(),
				fmt.Sprintf("must be at most %s", policy.MaxLifetime)))
		}
	}
	if creating {
		errs = append(errs, validateExpiresAt(l.ExpiresAt, now, fldPath.Child("expiresAt"))...)
	}
	return errs
}

func validateExpiresAt(expiresAt *metav1.Time, now time.Time, fldPath *field.Path) field.ErrorList {
	if expiresAt != nil && !expiresAt.After(now) {
		return field.ErrorList{field.Invalid(fldPath, expiresAt.UTC().Format(time.RFC3339),
			"is in the past; a credential created already expired is never usable")}
	}
	return nil
}

// validateApiKey validates an ApiKey's spec.
func validateApiKey(spec *keycapv1alpha1.ApiKeySpec, creating bool, now time.Time, policy Policy, fldPath *field.Path) field.ErrorList {
	errs := validateCredentialSpec(&spec.CredentialSpec, fldPath)
	errs = append(errs, validateLifetime(&spec.Lifetime, creating, now, policy, fldPath)...)
	return errs
}

// validateAgentKey validates an AgentKey's spec against its parent ApiKey's spec. parent is nil
// when the parent does not exist; parentRequired says whether that is an error (on create, and on
// an update that changes the scopes; an agent key whose parent is gone may still be disabled or
// relabelled).
func validateAgentKey(spec *keycapv1alpha1.AgentKeySpec, parent *keycapv1alpha1.ApiKey, creating bool, now time.Time, policy Policy, fldPath *field.Path) field.ErrorList {
	errs := validateCredentialSpec(&spec.CredentialSpec, fldPath)
	errs = append(errs, validateLifetime(&spec.Lifetime, creating, now, policy, fldPath)...)
	refPath := fldPath.Child("apiKeyRef", "name")
	switch {
	case parent == nil && creating:
		errs = append(errs, field.NotFound(refPath, spec.APIKeyRef.Name))
	case parent == nil:
	case creating && parent.Spec.Disabled:
		errs = append(errs, field.Invalid(refPath, spec.APIKeyRef.Name, "the parent ApiKey is disabled"))
	}
	if parent != nil {
		errs = append(errs, validateScopesSubset(spec.Scopes, parent.Spec.Scopes, fldPath.Child("scopes"))...)
	}
	return errs
}

// validateParentName refuses an apiKeyRef.name that cannot name an ApiKey (the schema's pattern
// says the same; this holds where the schema is older than the webhook), so that no lookup is
// made with it.
func validateParentName(name string, fldPath *field.Path) field.ErrorList {
	if name == "" {
		return nil // required: the schema's
	}
	if msgs := utilvalidation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(fldPath, name,
			"must be the name of an ApiKey in the AgentKey's own namespace: "+strings.Join(msgs, "; "))}
	}
	return nil
}

// validateScopesSubset: an agent key's scopes can only narrow its parent's. The data plane
// matches scopes exactly, so the subset is exact too.
func validateScopesSubset(scopes, parentScopes []string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, s := range scopes {
		if !slices.Contains(parentScopes, s) {
			errs = append(errs, field.Invalid(fldPath.Index(i), s, "not a scope of the parent ApiKey; an agent key's scopes can only narrow its parent's"))
		}
	}
	return errs
}

// validateAppToken validates an AppToken's spec.
func validateAppToken(spec *keycapv1alpha1.AppTokenSpec, creating bool, now time.Time, policy Policy, fldPath *field.Path) field.ErrorList {
	errs := validateCredentialSpec(&spec.CredentialSpec, fldPath)
	for i, a := range spec.Audiences {
		if strings.TrimSpace(a) != a || a == "" {
			errs = append(errs, field.Invalid(fldPath.Child("audiences").Index(i), a, "must not be blank or have leading or trailing spaces"))
		}
	}
	if creating {
		errs = append(errs, validateExpiresAt(spec.ExpiresAt, now, fldPath.Child("expiresAt"))...)
	}
	duration := keycapv1alpha1.DefaultAppTokenDuration // the schema's default
	if spec.Duration != nil {
		duration = spec.Duration.Duration
		b := policy.AppTokenDuration
		if (b.Min > 0 && duration < b.Min) || (b.Max > 0 && duration > b.Max) {
			errs = append(errs, field.Invalid(fldPath.Child("duration"), duration.String(),
				fmt.Sprintf("must be between %s and %s", b.Min, b.Max)))
		}
	}
	if spec.RenewBefore != nil && policy.AppTokenMinUse > 0 {
		if rb := spec.RenewBefore.Duration; duration-rb < policy.AppTokenMinUse {
			errs = append(errs, field.Invalid(fldPath.Child("renewBefore"), rb.String(),
				fmt.Sprintf("must leave at least %s of the token's duration (%s) before renewal starts", policy.AppTokenMinUse, duration)))
		}
	}
	return errs
}

// validateLicense validates a License's spec; old is the License before an update (nil on create).
func validateLicense(spec *keycapv1alpha1.LicenseSpec, old *keycapv1alpha1.License, now time.Time, policy Policy, fldPath *field.Path) field.ErrorList {
	errs := validateCredentialSpec(&spec.CredentialSpec, fldPath)
	errs = append(errs, validateLifetime(&spec.Lifetime, old == nil, now, policy, fldPath)...)
	// maxInstances >= 1 is the schema's (default 1, Minimum 1); only the comparison with the
	// activations, which live in status, is the webhook's.
	if old != nil && spec.MaxInstances < old.Spec.MaxInstances {
		if active := len(old.Status.Activations); int(spec.MaxInstances) < active {
			errs = append(errs, field.Invalid(fldPath.Child("maxInstances"), spec.MaxInstances,
				fmt.Sprintf("cannot be lowered below the %d instances activated now; deactivate instances first", active)))
		}
	}
	if ri := spec.RefreshInterval; ri != nil && ri.Duration <= 0 {
		errs = append(errs, field.Invalid(fldPath.Child("refreshInterval"), ri.Duration.String(), "must be positive"))
	}
	if ht := spec.HeartbeatTimeout; ht != nil {
		switch {
		case ht.Duration <= 0:
			errs = append(errs, field.Invalid(fldPath.Child("heartbeatTimeout"), ht.Duration.String(), "must be positive"))
		case spec.RefreshInterval != nil && ht.Duration < spec.RefreshInterval.Duration:
			errs = append(errs, field.Invalid(fldPath.Child("heartbeatTimeout"), ht.Duration.String(),
				"must be at least refreshInterval, or instances that check in on time lose their seat"))
		}
	}
	return errs
}

// validateNoPlaintext refuses a plaintext keycap key anywhere in the object's spec, labels,
// annotations or finalizers. The key is never echoed: the error names only the field.
func validateNoPlaintext(meta metav1.Object, spec any, specPath *field.Path) field.ErrorList {
	raw, err := json.Marshal(spec)
	if err != nil {
		return field.ErrorList{field.InternalError(specPath, err)}
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return field.ErrorList{field.InternalError(specPath, err)}
	}
	return plaintextInObject(meta, tree, specPath)
}

// validateNoPlaintextIn is validateNoPlaintext of a credential and its spec.
func validateNoPlaintextIn(obj keycapv1alpha1.Credential, specPath *field.Path) field.ErrorList {
	raw, err := json.Marshal(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(specPath, err)}
	}
	var tree map[string]any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return field.ErrorList{field.InternalError(specPath, err)}
	}
	return plaintextInObject(obj, tree["spec"], specPath)
}

func plaintextInObject(meta metav1.Object, spec any, specPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	metaPath := field.NewPath("metadata")
	errs = append(errs, plaintextInMap(meta.GetLabels(), metaPath.Child("labels"))...)
	errs = append(errs, plaintextInMap(meta.GetAnnotations(), metaPath.Child("annotations"))...)
	for i, f := range meta.GetFinalizers() {
		if containsKey(f) {
			errs = append(errs, field.Forbidden(metaPath.Child("finalizers").Index(i), MsgPlaintextCredential))
		}
	}
	return append(errs, plaintextInTree(spec, specPath)...)
}

func plaintextInMap(m map[string]string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, k := range sortedKeys(m) {
		switch {
		case containsKey(k):
			// The key itself holds the credential: name only the map.
			errs = append(errs, field.Forbidden(fldPath, MsgPlaintextCredential))
		case containsKey(m[k]):
			errs = append(errs, field.Forbidden(fldPath.Key(k), MsgPlaintextCredential))
		}
	}
	return errs
}

func plaintextInTree(v any, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch v := v.(type) {
	case string:
		if containsKey(v) {
			errs = append(errs, field.Forbidden(fldPath, MsgPlaintextCredential))
		}
	case []any:
		for i, item := range v {
			errs = append(errs, plaintextInTree(item, fldPath.Index(i))...)
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if containsKey(k) {
				errs = append(errs, field.Forbidden(fldPath, MsgPlaintextCredential))
				continue
			}
			errs = append(errs, plaintextInTree(v[k], fldPath.Child(k))...)
		}
	}
	return errs
}

// containsKey reports whether s holds a keycap key with a valid checksum (see plaintext.Contains:
// as it is, inside a longer text, with whitespace put into it, or base64-encoded).
func containsKey(s string) bool { return plaintext.Contains(s) }

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// maxWarnedAgents bounds the agent keys a warning names.
const maxWarnedAgents = 10

// parentChangeWarnings tells the user what an ApiKey update does to its agent keys: disabling it
// deactivates them; dropping a scope takes it from the agent keys that hold it (the data plane
// narrows an agent key to its parent's scopes).
func parentChangeWarnings(old, new *keycapv1alpha1.ApiKeySpec, agents []keycapv1alpha1.AgentKey) []string {
	var out []string
	var active []string
	for _, a := range agents {
		if !a.Spec.Disabled {
			active = append(active, a.Name)
		}
	}
	sort.Strings(active)
	if new.Disabled && !old.Disabled && len(active) > 0 {
		out = append(out, fmt.Sprintf("disabling this ApiKey also deactivates its %d agent key(s): %s", len(active), nameList(active)))
	}
	removed := removedScopes(old.Scopes, new.Scopes)
	if len(removed) == 0 {
		return out
	}
	sorted := slices.Clone(agents)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for i, a := range sorted {
		if i == maxWarnedAgents {
			out = append(out, fmt.Sprintf("... and possibly more of the %d agent keys", len(sorted)))
			break
		}
		var lost []string
		for _, s := range a.Spec.Scopes {
			if slices.Contains(removed, s) {
				lost = append(lost, s)
			}
		}
		if len(lost) > 0 {
			out = append(out, fmt.Sprintf("AgentKey %s loses scope(s) %s: the parent no longer grants them", a.Name, strings.Join(lost, ", ")))
		}
	}
	return out
}

// removedScopes returns the scopes in old that are not in new.
func removedScopes(old, new []string) []string {
	var out []string
	for _, s := range old {
		if !slices.Contains(new, s) {
			out = append(out, s)
		}
	}
	return out
}

func nameList(names []string) string {
	if len(names) > maxWarnedAgents {
		return strings.Join(names[:maxWarnedAgents], ", ") + fmt.Sprintf(" and %d more", len(names)-maxWarnedAgents)
	}
	return strings.Join(names, ", ")
}
