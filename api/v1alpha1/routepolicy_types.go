package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KindRoutePolicy is the kind name of RoutePolicy. It is a policy, not a credential: it is not in
// the credential registry (internal/registry).
const KindRoutePolicy = "RoutePolicy"

// Reasons of a RoutePolicy's Ready condition.
const (
	// ReasonApplied: every host of the policy is applied by the data plane.
	ReasonApplied = "Applied"
	// ReasonHostConflict: an older RoutePolicy claims some of the policy's hosts; the older one
	// applies there (as in Gateway API), the policy's other hosts still apply.
	ReasonHostConflict = "HostConflict"
)

// RoutePolicySpec states per-host, per-path requirements that the data plane applies on top of
// what the proxy states (context_extensions, the forward-auth URL's query), for proxies that
// cannot state requirements per route (Istio's CUSTOM action, Envoy's HTTP ext_authz).
// A policy only ever adds requirements: a request must satisfy both the proxy's and the rule's.
type RoutePolicySpec struct {
	// hosts are the request hosts the policy applies to: exact names ("shop.example.com") or a
	// wildcard of one leading label ("*.example.com", which matches "a.example.com" and
	// "a.b.example.com" but not "example.com"). Lower case, without a port. An exact name wins
	// over a wildcard, a longer wildcard over a shorter one. When two policies claim the same
	// host, the older one (creationTimestamp, then namespace/name) applies there and the other
	// reports Ready=False with reason HostConflict.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Hosts []string `json:"hosts"`

	// rules hold the requirements by path prefix. For a request, the rules whose paths and
	// methods match are candidates and the one with the longest matching prefix applies (when
	// several rules share that prefix, all of them apply). A request that no rule matches gets
	// no requirements from the policy; a rule for "/" covers everything else.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Rules []RoutePolicyRule `json:"rules"`
}

// RoutePolicyRule is the requirements of a set of path prefixes and methods. A rule without
// requirements is allowed: it carves a path out of a shorter prefix's rule (the proxy's own
// requirements still apply there).
type RoutePolicyRule struct {
	// paths are path prefixes matched segment by segment against the request's path after the
	// normalisation an upstream applies (percent-decoding, dot segments removed, repeated slashes
	// merged, ASCII case ignored): "/admin" matches "/admin", "/admin/" and "/admin/users", not
	// "/administrators". Each starts with "/", has no empty, "." or ".." segment and no
	// percent-encoding, query or fragment.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	// +kubebuilder:validation:items:Pattern=`^/([A-Za-z0-9._~!$&'()*+,=:@-]+(/[A-Za-z0-9._~!$&'()*+,=:@-]+)*/?)?$`
	// +kubebuilder:validation:XValidation:rule="self.all(p, !p.contains('/./') && !p.contains('/../') && !p.endsWith('/.') && !p.endsWith('/..'))",message="a path prefix has no . or .. segment"
	Paths []string `json:"paths"`

	// methods limit the rule to these request methods (upper case, e.g. "POST"); all methods when
	// empty. A rule that lists GET also matches HEAD, which most servers answer with their GET
	// handler.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:items:Pattern=`^[A-Z]+$`
	Methods []string `json:"methods,omitempty"`

	// scopes must all be held by the credential.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9][A-Za-z0-9._:/*-]*$`
	Scopes []string `json:"scopes,omitempty"`

	// namespaces: the credential's namespace (its tenant) must be one of these.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`

	// audiences must all be in an AppToken's aud claim; credentials without an audience (opaque
	// keys, licences) do not satisfy a rule that states audiences.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	Audiences []string `json:"audiences,omitempty"`

	// entitlements must all be held by the request's licence; other credentials do not satisfy a
	// rule that states entitlements.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	Entitlements []string `json:"entitlements,omitempty"`
}

// RoutePolicyStatus is the observed state of a RoutePolicy.
type RoutePolicyStatus struct {
	// conditions: Ready is True when every host of the policy is applied by the data plane;
	// False with reason HostConflict when an older policy holds some of its hosts (the others
	// still apply).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conflictingHosts are the hosts of this policy that an older policy holds.
	// +optional
	// +listType=set
	ConflictingHosts []string `json:"conflictingHosts,omitempty"`
}

// RoutePolicy adds per-host, per-path requirements (scopes, namespaces, audiences, entitlements)
// to the data plane's decisions, matched on the original request's host, path and method.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories={keycap},shortName=rp
// +kubebuilder:printcolumn:name="Hosts",type=string,JSONPath=`.spec.hosts`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RoutePolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec RoutePolicySpec `json:"spec"`
	// +optional
	Status RoutePolicyStatus `json:"status,omitempty"`
}

// RoutePolicyList is a list of RoutePolicies.
// +kubebuilder:object:root=true
type RoutePolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RoutePolicy `json:"items"`
}
