package webhook

import (
	"context"
	"testing"

	"github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

// The rules of this file are the schema's (markers and CEL in api/v1alpha1): they hold with the
// webhook down. The objects are unstructured, since a typed one cannot even hold "90d" or a
// duration with a unit Go does not know.

// manifest returns an unstructured kind object in ns with spec.
func manifest(kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(keycapv1alpha1.GroupVersion.WithKind(kind))
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// expectSchemaRefusal: a dry-run create of obj is refused with 422, naming the field and saying
// why; never a webhook's error (a 500, or a refusal that names no field).
func expectSchemaRefusal(t *testing.T, obj client.Object, fieldPath, reason string) {
	t.Helper()
	g := gomega.NewWithT(t)
	err := k8sClient.Create(context.Background(), obj, client.DryRunAll)
	g.Expect(apierrors.IsInvalid(err)).To(gomega.BeTrue(), "want 422 Invalid, got %v", err)
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring(fieldPath + ": Invalid value")))
	g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring(reason)))
	g.Expect(err).NotTo(gomega.MatchError(gomega.ContainSubstring("admission webhook")), "the schema refuses it, not the webhook")
}

// TestDurationsInDays: every duration field refuses "90d" in the schema, naming the field and
// saying to use hours; the same field takes "2160h".
func TestDurationsInDays(t *testing.T) {
	ns := newNamespace(t)
	const hint = "use hours, e.g. 2160h"
	apiKey := func(spec map[string]any) *unstructured.Unstructured { return manifest("ApiKey", ns, "k", spec) }
	agentKey := func(spec map[string]any) *unstructured.Unstructured {
		spec["apiKeyRef"], spec["agent"] = map[string]any{"name": "parent"}, "agent-1"
		return manifest("AgentKey", ns, "a", spec)
	}
	appToken := func(spec map[string]any) *unstructured.Unstructured {
		spec["audiences"] = []any{"api.example.com"}
		return manifest("AppToken", ns, "t", spec)
	}
	license := func(spec map[string]any) *unstructured.Unstructured {
		spec["product"] = "cap"
		return manifest("License", ns, "l", spec)
	}
	rotation := func(every, grace string) map[string]any {
		return map[string]any{"rotation": map[string]any{"every": every, "gracePeriod": grace}}
	}
	cases := map[string]struct {
		bad, good *unstructured.Unstructured
		field     string
	}{
		"ApiKey spec.duration":              {apiKey(map[string]any{"duration": "90d"}), apiKey(map[string]any{"duration": "2160h"}), "spec.duration"},
		"ApiKey spec.rotation.every":        {apiKey(rotation("30d", "1h")), apiKey(rotation("720h", "1h")), "spec.rotation.every"},
		"ApiKey spec.rotation.gracePeriod":  {apiKey(rotation("720h", "1d")), apiKey(rotation("720h", "24h")), "spec.rotation.gracePeriod"},
		"AgentKey spec.duration":            {agentKey(map[string]any{"duration": "1w"}), nil, "spec.duration"},
		"AgentKey spec.rotation.every":      {agentKey(rotation("30d", "1h")), nil, "spec.rotation.every"},
		"AppToken spec.duration":            {appToken(map[string]any{"duration": "1d"}), appToken(map[string]any{"duration": "24h"}), "spec.duration"},
		"AppToken spec.renewBefore":         {appToken(map[string]any{"duration": "24h", "renewBefore": "0.5d"}), appToken(map[string]any{"duration": "24h", "renewBefore": "8h"}), "spec.renewBefore"},
		"License spec.duration":             {license(map[string]any{"duration": "365d"}), license(map[string]any{"duration": "8760h"}), "spec.duration"},
		"License spec.refreshInterval":      {license(map[string]any{"refreshInterval": "1d"}), license(map[string]any{"refreshInterval": "24h"}), "spec.refreshInterval"},
		"License spec.heartbeatTimeout":     {license(map[string]any{"heartbeatTimeout": "3d"}), license(map[string]any{"heartbeatTimeout": "72h"}), "spec.heartbeatTimeout"},
		"a duration that is not one at all": {apiKey(map[string]any{"duration": "soon"}), nil, "spec.duration"},
		"a duration with a space in it":     {license(map[string]any{"refreshInterval": "24 h"}), nil, "spec.refreshInterval"},
		"fractions and compound units work": {license(map[string]any{"heartbeatTimeout": "1.5d"}), license(map[string]any{"heartbeatTimeout": "1h30m", "refreshInterval": "1.5h"}), "spec.heartbeatTimeout"},
		"a bare zero is a duration":         {apiKey(rotation("720h", "0d")), apiKey(rotation("720h", "0")), "spec.rotation.gracePeriod"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			expectSchemaRefusal(t, c.bad, c.field, hint)
			if c.good != nil {
				gomega.NewWithT(t).Expect(k8sClient.Create(context.Background(), c.good, client.DryRunAll)).To(gomega.Succeed())
			}
		})
	}
}

// TestHeaderInjection: the values the data plane passes upstream in headers cannot hold CR/LF
// or other control characters, and those joined with commas cannot hold commas.
func TestHeaderInjection(t *testing.T) {
	ns := newNamespace(t)
	mustCreate(t, newApiKey(ns, "parent"))
	appToken := func(change func(map[string]any)) *unstructured.Unstructured {
		spec := map[string]any{"audiences": []any{"api.example.com"}}
		change(spec)
		return manifest("AppToken", ns, "t", spec)
	}
	license := func(change func(map[string]any)) *unstructured.Unstructured {
		spec := map[string]any{"product": "cap"}
		change(spec)
		return manifest("License", ns, "l", spec)
	}
	agentKey := func(change func(map[string]any)) *unstructured.Unstructured {
		spec := map[string]any{"apiKeyRef": map[string]any{"name": "parent"}, "agent": "agent-1", "scopes": []any{"videos:read"}}
		change(spec)
		return manifest("AgentKey", ns, "a", spec)
	}
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	cases := map[string]struct {
		bad, good     *unstructured.Unstructured
		field, reason string
	}{
		"an AppToken subject with CR/LF": {appToken(set("subject", "job\r\nx-evil: 1")), appToken(set("subject", "system:serviceaccount:ci:deployer")),
			"spec.subject", "subject must be printable ASCII without commas"},
		"an AppToken subject with a comma": {appToken(set("subject", "job, admin")), appToken(set("subject", "team-a/job-1")),
			"spec.subject", "it is sent upstream in the x-keycap-subject header"},
		"an AppToken subject with a tab": {appToken(set("subject", "job\tx")), nil, "spec.subject", "no CR, LF or other control characters"},
		"a License entitlement with a comma": {license(set("entitlements", []any{"sso,admin"})), license(set("entitlements", []any{"sso", "audit-log", "tier:gold"})),
			"spec.entitlements", "each entitlement must be a word like 'sso' or 'audit-log'"},
		"a License entitlement with CR/LF": {license(set("entitlements", []any{"sso\r\nx-evil: 1"})), nil,
			"spec.entitlements", "no commas, spaces or control characters"},
		"an AppToken audience with LF": {appToken(set("audiences", []any{"api.example.com\nx-evil: 1"})), nil,
			"spec.audiences", "audiences must not contain control characters"},
		"an AppToken label with LF": {appToken(set("label", "ci\nx")), appToken(set("label", "CI token, deploys")),
			"spec.label", "label must not contain control characters"},
		"an AgentKey label with CR": {agentKey(set("label", "bot\r")), agentKey(set("label", "support bot #2")),
			"spec.label", "label must not contain control characters"},
		"a License plan with LF":     {license(set("plan", "gold\nx")), license(set("plan", "Gold (annual)")), "spec.plan", "plan must not contain control characters"},
		"a License customer with LF": {license(set("customer", "Acme\nx")), license(set("customer", "Acme, Inc.")), "spec.customer", "customer must not contain control characters"},
		"a License product with LF":  {license(set("product", "cap\nx")), nil, "spec.product", "product must not contain control characters"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			expectSchemaRefusal(t, c.bad, c.field, c.reason)
			if c.good != nil {
				gomega.NewWithT(t).Expect(k8sClient.Create(context.Background(), c.good, client.DryRunAll)).To(gomega.Succeed())
			}
		})
	}
}

// TestParentReferenceInAnotherNamespace: apiKeyRef names an ApiKey of the AgentKey's own
// namespace; "t2/ak2" is refused as invalid (422, naming the field), not with a webhook error.
func TestParentReferenceInAnotherNamespace(t *testing.T) {
	ns := newNamespace(t)
	other := newNamespace(t)
	mustCreate(t, newApiKey(other, "ak2"))
	bad := manifest("AgentKey", ns, "a", map[string]any{"apiKeyRef": map[string]any{"name": other + "/ak2"}, "agent": "agent-1"})
	expectSchemaRefusal(t, bad, "spec.apiKeyRef.name", "should match")
}
