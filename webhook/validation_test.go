package webhook

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func mustKey(t *testing.T, prefix string) string {
	t.Helper()
	k, err := keys.Generate(prefix)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fields returns "<field>: <type>" of each error, the part a user reads first.
func fields(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field+": "+string(e.Type))
	}
	return out
}

func TestContainsKey(t *testing.T) {
	key := mustKey(t, "kc")
	long := mustKey(t, "acmeprod")
	// Change one character of the random part: same shape, checksum no longer matches.
	broken := key[:5] + string(rune(key[5]^1)) + key[6:]
	cases := map[string]struct {
		s    string
		want bool
	}{
		"a bare key":                                {key, true},
		"a key with a long prefix":                  {long, true},
		"a key inside a sentence":                   {"use " + key + " for prod", true},
		"a key after another identifier":            {"x_" + key, true},
		"a key glued to letters in front":           {"token" + key, true},
		"a key in a URL query":                      {"https://x.example/?k=" + key + "&a=1", true},
		"the right shape with a wrong checksum":     {broken, false},
		"a keyHash":                                 {"sha256:" + keys.Digest(key), false},
		"a hint":                                    {keys.Hint(key), false},
		"an ordinary description":                   {"key for the billing service, owned by team a_b_c", false},
		"empty":                                     {"", false},
		"the key's tail without any prefix":         {key[strings.IndexByte(key, '_'):], false},
		"a key split over two strings does nothing": {key[:10], false},
		"a key split by a space":                    {key[:12] + " " + key[12:], true},
		"a key split over lines":                    {"key:\n  " + key[:20] + "\n  " + key[20:] + "\n", true},
		"a key in base64":                           {base64.StdEncoding.EncodeToString([]byte(key)), true},
		"a key in unpadded URL-safe base64":         {base64.RawURLEncoding.EncodeToString([]byte("\xfb\xff" + key)), true},
		"a sentence holding a key, in base64":       {"blob: " + base64.StdEncoding.EncodeToString([]byte("the prod key is "+key+", rotate monthly")), true},
		"base64 glued to other characters":          {"k=abc" + base64.StdEncoding.EncodeToString([]byte(key)), true},
		"base64 wrapped over lines":                 {wrap(base64.StdEncoding.EncodeToString([]byte("the prod key is "+key)), 16), true},
		"a broken key in base64":                    {base64.StdEncoding.EncodeToString([]byte(broken)), false},
		"ordinary base64":                           {base64.StdEncoding.EncodeToString([]byte("a certificate, say, or some other long value that is no key at all")), false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			gomega.NewWithT(t).Expect(containsKey(c.s)).To(gomega.Equal(c.want))
		})
	}
}

// wrap puts a newline after every n characters of s.
func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n] + "\n")
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

func TestValidateNoPlaintext(t *testing.T) {
	key := mustKey(t, "kc")
	cases := map[string]struct {
		meta metav1.ObjectMeta
		spec keycapv1alpha1.ApiKeySpec
		want []string
	}{
		"a key in the description is refused": {
			spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Description: "key " + key}},
			want: []string{"spec.description: FieldValueForbidden"},
		},
		"a key in a secretTemplate annotation is refused": {
			spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{
				SecretTemplate: &keycapv1alpha1.SecretTemplate{Annotations: map[string]string{"note": key}}}},
			want: []string{"spec.secretTemplate.annotations.note: FieldValueForbidden"},
		},
		"a key in a label value is refused": {
			meta: metav1.ObjectMeta{Labels: map[string]string{"k": key}},
			want: []string{"metadata.labels[k]: FieldValueForbidden"},
		},
		"a key as an annotation name is refused without naming it": {
			meta: metav1.ObjectMeta{Annotations: map[string]string{key: "x"}},
			want: []string{"metadata.annotations: FieldValueForbidden"},
		},
		"a key in a finalizer is refused": {
			meta: metav1.ObjectMeta{Finalizers: []string{"example.com/" + key}},
			want: []string{"metadata.finalizers[0]: FieldValueForbidden"},
		},
		"a base64-encoded key in an annotation is refused": {
			meta: metav1.ObjectMeta{Annotations: map[string]string{"config": base64.StdEncoding.EncodeToString([]byte(`{"apiKey":"` + key + `"}`))}},
			want: []string{"metadata.annotations[config]: FieldValueForbidden"},
		},
		"a key split by a space in the description is refused": {
			spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Description: "key " + key[:8] + " " + key[8:]}},
			want: []string{"spec.description: FieldValueForbidden"},
		},
		"a keyHash and ordinary metadata pass": {
			meta: metav1.ObjectMeta{Labels: map[string]string{"team": "billing"}},
			spec: keycapv1alpha1.ApiKeySpec{OpaqueKeySpec: keycapv1alpha1.OpaqueKeySpec{KeyHash: "sha256:" + keys.Digest(key)}},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			errs := validateNoPlaintext(&c.meta, &c.spec, specPath)
			g.Expect(fields(errs)).To(gomega.Equal(c.want))
			for _, e := range errs {
				g.Expect(e.Error()).To(gomega.ContainSubstring(MsgPlaintextCredential))
				g.Expect(e.Error()).NotTo(gomega.ContainSubstring(key), "the refusal must never echo the key")
			}
		})
	}
}

func TestValidateAgentKey(t *testing.T) {
	parent := func(disabled bool, scopes ...string) *keycapv1alpha1.ApiKey {
		return &keycapv1alpha1.ApiKey{Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Disabled: disabled, Scopes: scopes}}}
	}
	spec := func(scopes ...string) *keycapv1alpha1.AgentKeySpec {
		return &keycapv1alpha1.AgentKeySpec{
			CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: scopes},
			APIKeyRef:      keycapv1alpha1.ApiKeyReference{Name: "parent"},
			Agent:          "agent-1",
		}
	}
	cases := map[string]struct {
		spec     *keycapv1alpha1.AgentKeySpec
		parent   *keycapv1alpha1.ApiKey
		creating bool
		want     []string
	}{
		"narrower scopes under an active parent pass": {spec("a:read"), parent(false, "a:read", "a:write"), true, nil},
		"the parent's exact scopes pass":              {spec("a:read", "a:write"), parent(false, "a:read", "a:write"), true, nil},
		"a scope the parent lacks is refused":         {spec("a:read", "b:write"), parent(false, "a:read"), true, []string{"spec.scopes[1]: FieldValueInvalid"}},
		"any scope under a parent without scopes is refused": {spec("a:read"), parent(false), true,
			[]string{"spec.scopes[0]: FieldValueInvalid"}},
		"a missing parent is refused on create":      {spec(), nil, true, []string{"spec.apiKeyRef.name: FieldValueNotFound"}},
		"a missing parent is not refused on update":  {spec(), nil, false, nil},
		"a disabled parent is refused on create":     {spec(), parent(true), true, []string{"spec.apiKeyRef.name: FieldValueInvalid"}},
		"a disabled parent is not refused on update": {spec(), parent(true), false, nil},
		"widening scopes on update is still refused": {spec("a:read", "a:admin"), parent(false, "a:read"), false, []string{"spec.scopes[1]: FieldValueInvalid"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			errs := validateAgentKey(c.spec, c.parent, c.creating, testNow, DefaultPolicy(), specPath)
			gomega.NewWithT(t).Expect(fields(errs)).To(gomega.Equal(c.want))
		})
	}
}

func TestValidateAppToken(t *testing.T) {
	policy := DefaultPolicy()
	policy.AppTokenDuration = DurationBounds{Min: 5 * time.Minute, Max: 24 * time.Hour}
	d := func(s string) *metav1.Duration {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		return &metav1.Duration{Duration: v}
	}
	spec := func(duration, renewBefore *metav1.Duration, audiences ...string) *keycapv1alpha1.AppTokenSpec {
		return &keycapv1alpha1.AppTokenSpec{Audiences: audiences, Duration: duration, RenewBefore: renewBefore}
	}
	cases := map[string]struct {
		spec *keycapv1alpha1.AppTokenSpec
		want []string
	}{
		"a duration within bounds passes":                {spec(d("1h"), d("20m"), "api"), nil},
		"the default duration passes":                    {spec(nil, nil, "api"), nil},
		"a duration above the configured max is refused": {spec(d("48h"), nil, "api"), []string{"spec.duration: FieldValueInvalid"}},
		"a duration below the configured min is refused": {spec(d("2m"), nil, "api"), []string{"spec.duration: FieldValueInvalid"}},
		"renewBefore leaving under 30s of use is refused": {spec(d("10m"), d("9m45s"), "api"),
			[]string{"spec.renewBefore: FieldValueInvalid"}},
		"renewBefore against the default duration is checked": {spec(nil, d("59m50s"), "api"),
			[]string{"spec.renewBefore: FieldValueInvalid"}},
		"a blank audience is refused": {spec(d("1h"), nil, "api", " "), []string{"spec.audiences[1]: FieldValueInvalid"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			errs := validateAppToken(c.spec, true, testNow, policy, specPath)
			gomega.NewWithT(t).Expect(fields(errs)).To(gomega.Equal(c.want))
		})
	}
}

func TestValidateLicense(t *testing.T) {
	withActivations := func(maxInstances int32, n int) *keycapv1alpha1.License {
		l := &keycapv1alpha1.License{Spec: keycapv1alpha1.LicenseSpec{MaxInstances: maxInstances}}
		for i := 0; i < n; i++ {
			l.Status.Activations = append(l.Status.Activations, keycapv1alpha1.LicenseActivation{InstanceID: string(rune('a' + i))})
		}
		return l
	}
	spec := func(maxInstances int32) *keycapv1alpha1.LicenseSpec {
		return &keycapv1alpha1.LicenseSpec{Product: "p", MaxInstances: maxInstances}
	}
	hb := func(refresh, heartbeat time.Duration) *keycapv1alpha1.LicenseSpec {
		s := spec(1)
		s.RefreshInterval = &metav1.Duration{Duration: refresh}
		s.HeartbeatTimeout = &metav1.Duration{Duration: heartbeat}
		return s
	}
	cases := map[string]struct {
		spec *keycapv1alpha1.LicenseSpec
		old  *keycapv1alpha1.License
		want []string
	}{
		"a new licence passes":                                {spec(5), nil, nil},
		"lowering to the number of activations passes":        {spec(2), withActivations(5, 2), nil},
		"lowering below the number of activations is refused": {spec(1), withActivations(5, 2), []string{"spec.maxInstances: FieldValueInvalid"}},
		"raising is never refused":                            {spec(6), withActivations(5, 5), nil},
		"a heartbeat timeout below the refresh interval is refused": {hb(time.Hour, time.Minute), nil,
			[]string{"spec.heartbeatTimeout: FieldValueInvalid"}},
		"a heartbeat timeout of three refresh intervals passes": {hb(time.Hour, 3*time.Hour), nil, nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			errs := validateLicense(c.spec, c.old, testNow, DefaultPolicy(), specPath)
			gomega.NewWithT(t).Expect(fields(errs)).To(gomega.Equal(c.want))
		})
	}
}

func TestValidateCredentialSpecAndLifetime(t *testing.T) {
	past := metav1.NewTime(testNow.Add(-time.Minute))
	future := metav1.NewTime(testNow.Add(time.Hour))
	cases := map[string]struct {
		spec     keycapv1alpha1.ApiKeySpec
		creating bool
		want     []string
	}{
		"an expiry in the future passes": {spec: keycapv1alpha1.ApiKeySpec{Lifetime: keycapv1alpha1.Lifetime{ExpiresAt: &future}}, creating: true},
		"an expiry in the past is refused on create": {spec: keycapv1alpha1.ApiKeySpec{Lifetime: keycapv1alpha1.Lifetime{ExpiresAt: &past}}, creating: true,
			want: []string{"spec.expiresAt: FieldValueInvalid"}},
		"an expiry in the past is kept on update (the credential just expired)": {spec: keycapv1alpha1.ApiKeySpec{Lifetime: keycapv1alpha1.Lifetime{ExpiresAt: &past}}},
		"a negative duration is refused": {spec: keycapv1alpha1.ApiKeySpec{Lifetime: keycapv1alpha1.Lifetime{Duration: &metav1.Duration{Duration: -time.Hour}}}, creating: true,
			want: []string{"spec.duration: FieldValueInvalid"}},
		"a reserved secretTemplate label is refused": {spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{
			SecretTemplate: &keycapv1alpha1.SecretTemplate{Labels: map[string]string{"keycap.dev/kind": "x"}}}},
			want: []string{"spec.secretTemplate.labels[keycap.dev/kind]: FieldValueForbidden"}},
		"taking over the managed-by label is refused": {spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{
			SecretTemplate: &keycapv1alpha1.SecretTemplate{Labels: map[string]string{keycapv1alpha1.LabelManagedBy: "me"}}}},
			want: []string{"spec.secretTemplate.labels[app.kubernetes.io/managed-by]: FieldValueForbidden"}},
		"an invalid label value is refused": {spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{
			SecretTemplate: &keycapv1alpha1.SecretTemplate{Labels: map[string]string{"team": "not a label value"}}}},
			want: []string{"spec.secretTemplate.labels: FieldValueInvalid"}},
		"an invalid annotation name is refused": {spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{
			SecretTemplate: &keycapv1alpha1.SecretTemplate{Annotations: map[string]string{"not an annotation": "x"}}}},
			want: []string{"spec.secretTemplate.annotations: FieldValueInvalid"}},
		"ordinary template metadata passes": {spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{
			SecretTemplate: &keycapv1alpha1.SecretTemplate{Labels: map[string]string{"team": "billing"}, Annotations: map[string]string{"example.com/owner": "billing team"}}}}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			errs := validateApiKey(&c.spec, c.creating, testNow, DefaultPolicy(), specPath)
			gomega.NewWithT(t).Expect(fields(errs)).To(gomega.Equal(c.want))
		})
	}
}

func TestResultNeverEchoesAKey(t *testing.T) {
	g := gomega.NewWithT(t)
	key := mustKey(t, "kc")
	spec := &keycapv1alpha1.AgentKeySpec{APIKeyRef: keycapv1alpha1.ApiKeyReference{Name: key}, Agent: "a"}
	errs := validateAgentKey(spec, nil, true, testNow, DefaultPolicy(), specPath)
	errs = append(errs, validateNoPlaintext(&metav1.ObjectMeta{}, spec, specPath)...)
	g.Expect(fields(errs)).To(gomega.ConsistOf("spec.apiKeyRef.name: FieldValueNotFound", "spec.apiKeyRef.name: FieldValueForbidden"))
	err := result("AgentKey", "x", errs)
	g.Expect(err).To(gomega.HaveOccurred())
	g.Expect(err.Error()).To(gomega.ContainSubstring("spec.apiKeyRef.name"))
	g.Expect(err.Error()).NotTo(gomega.ContainSubstring(key))
}

func TestParentChangeWarnings(t *testing.T) {
	agent := func(name string, disabled bool, scopes ...string) keycapv1alpha1.AgentKey {
		return keycapv1alpha1.AgentKey{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: keycapv1alpha1.AgentKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Disabled: disabled, Scopes: scopes}}}
	}
	spec := func(disabled bool, scopes ...string) *keycapv1alpha1.ApiKeySpec {
		return &keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Disabled: disabled, Scopes: scopes}}
	}
	agents := []keycapv1alpha1.AgentKey{agent("b", false, "v:read", "v:write"), agent("a", false, "v:read"), agent("off", true, "v:write")}
	cases := map[string]struct {
		old, new *keycapv1alpha1.ApiKeySpec
		want     []string
	}{
		"disabling names the active agent keys": {spec(false, "v:read"), spec(true, "v:read"),
			[]string{"disabling this ApiKey also deactivates its 2 agent key(s): a, b"}},
		"dropping a scope names the agent keys that lose it": {spec(false, "v:read", "v:write"), spec(false, "v:read"),
			[]string{"AgentKey b loses scope(s) v:write: the parent no longer grants them", "AgentKey off loses scope(s) v:write: the parent no longer grants them"}},
		"adding a scope warns about nothing": {spec(false, "v:read"), spec(false, "v:read", "v:admin"), nil},
		"re-enabling warns about nothing":    {spec(true, "v:read"), spec(false, "v:read"), nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			gomega.NewWithT(t).Expect(parentChangeWarnings(c.old, c.new, agents)).To(gomega.Equal(c.want))
		})
	}
}

func TestValidateParentName(t *testing.T) {
	cases := map[string]struct {
		name string
		want []string
	}{
		"a name":                        {"billing-key", nil},
		"a dotted name":                 {"billing.v2", nil},
		"namespace/name is refused":     {"t2/ak2", []string{"spec.apiKeyRef.name: FieldValueInvalid"}},
		"an upper-case name is refused": {"Billing", []string{"spec.apiKeyRef.name: FieldValueInvalid"}},
		"empty is the schema's":         {"", nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			gomega.NewWithT(t).Expect(fields(validateParentName(c.name, specPath.Child("apiKeyRef", "name")))).To(gomega.Equal(c.want))
		})
	}
}
