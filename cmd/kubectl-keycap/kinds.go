package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/registry"
)

// kind is a credential kind as the registry describes it: every command iterates
// registry.Kinds() and finds kinds with registry.Lookup, so the plugin keeps no list of its own.
type kind = registry.Kind

// kinds are the credential kinds in the order list shows them.
var kinds = registry.Kinds()

// lookupKind finds a kind by what the user typed (case-insensitive; "apikey.keycap.dev" works).
func lookupKind(s string) (*kind, error) {
	if k, ok := registry.Lookup(s); ok {
		return k, nil
	}
	names := make([]string, 0, len(kinds))
	for _, k := range kinds {
		names = append(names, strings.ToLower(k.Name))
	}
	return nil, usagef("unknown kind %q: use %s", s, strings.Join(names, ", "))
}

// credential is the view of any credential kind that the commands need.
type credential struct {
	kind     *kind
	obj      keycapv1alpha1.Credential
	disabled bool
	status   *keycapv1alpha1.CredentialStatus
	// digests and previousValidUntil are set for the opaque kinds.
	digests            []string
	previousValidUntil *metav1.Time
	// details are kind-specific spec and status fields for get, in order.
	details [][2]string
}

// view returns the credential view of obj, a credential of any registry kind.
func view(obj keycapv1alpha1.Credential) credential {
	c := credential{
		kind: registry.Of(obj), obj: obj,
		disabled: obj.GetCredentialSpec().Disabled, status: obj.GetCredentialStatus(),
		digests: obj.GetStatusDigests(),
	}
	if o, ok := obj.(keycapv1alpha1.OpaqueKeyCredential); ok {
		c.previousValidUntil = o.GetOpaqueKeyStatus().PreviousKeyValidUntil
	}
	add := func(name, value string) {
		if value != "" {
			c.details = append(c.details, [2]string{name, value})
		}
	}
	if describe, ok := kindDetails[c.kind.Name]; ok {
		describe(obj, add)
	}
	addCommon(add, obj.GetCredentialSpec())
	if l := obj.GetLifetime(); l.ExpiresAt != nil || l.Duration != nil {
		addLifetime(add, &l)
	}
	if o, ok := obj.(keycapv1alpha1.OpaqueKeyCredential); ok {
		addOpaque(add, o.GetOpaqueKeySpec())
	}
	if describe, ok := kindStatusDetails[c.kind.Name]; ok {
		describe(obj, add)
	}
	return c
}

// kindDetails add the spec fields only one kind has, shown by get before the common ones. A kind
// without an entry is shown with the common fields only.
var kindDetails = map[string]func(keycapv1alpha1.Credential, func(string, string)){
	keycapv1alpha1.KindApiKey: func(obj keycapv1alpha1.Credential, add func(string, string)) {
		add("Prefix", obj.(*keycapv1alpha1.ApiKey).Spec.Prefix)
	},
	keycapv1alpha1.KindAgentKey: func(obj keycapv1alpha1.Credential, add func(string, string)) {
		o := obj.(*keycapv1alpha1.AgentKey)
		add("Parent", o.Spec.APIKeyRef.Name)
		add("Agent", o.Spec.Agent)
		add("Label", o.Spec.Label)
	},
	keycapv1alpha1.KindAppToken: func(obj keycapv1alpha1.Credential, add func(string, string)) {
		o := obj.(*keycapv1alpha1.AppToken)
		add("Subject", o.Spec.Subject)
		add("Audiences", strings.Join(o.Spec.Audiences, ","))
		add("Label", o.Spec.Label)
	},
	keycapv1alpha1.KindLicense: func(obj keycapv1alpha1.Credential, add func(string, string)) {
		o := obj.(*keycapv1alpha1.License)
		add("Product", o.Spec.Product)
		add("Customer", o.Spec.Customer)
		add("Plan", o.Spec.Plan)
		add("Entitlements", strings.Join(o.Spec.Entitlements, ","))
		if o.Spec.MaxInstances != 0 {
			add("Max instances", fmt.Sprint(o.Spec.MaxInstances))
		}
	},
}

// kindStatusDetails add the fields only one kind has that get shows after the common ones.
var kindStatusDetails = map[string]func(keycapv1alpha1.Credential, func(string, string)){
	keycapv1alpha1.KindAgentKey: func(obj keycapv1alpha1.Credential, add func(string, string)) {
		add("Parent key ID", obj.(*keycapv1alpha1.AgentKey).Status.ParentKeyID)
	},
	keycapv1alpha1.KindAppToken: func(obj keycapv1alpha1.Credential, add func(string, string)) {
		o := obj.(*keycapv1alpha1.AppToken)
		if o.Spec.Duration != nil {
			add("Token duration", o.Spec.Duration.Duration.String())
		}
		if o.Spec.RenewBefore != nil {
			add("Renew before", o.Spec.RenewBefore.Duration.String())
		}
		add("Issued at", formatTime(o.Status.IssuedAt))
		add("Token expires at", formatTime(o.Status.TokenExpiresAt))
		add("Renew at", formatTime(o.Status.RenewAt))
		add("Signing key ID", o.Status.SigningKeyID)
	},
	keycapv1alpha1.KindLicense: func(obj keycapv1alpha1.Credential, add func(string, string)) {
		o := obj.(*keycapv1alpha1.License)
		add("Activations", fmt.Sprint(len(o.Status.Activations)))
		for _, a := range o.Status.Activations {
			add("  "+a.InstanceID, fmt.Sprintf("activated %s, last seen %s", formatTime(&a.ActivatedAt), formatTime(&a.LastSeenAt)))
		}
	},
}

func addCommon(add func(string, string), spec *keycapv1alpha1.CredentialSpec) {
	add("Description", spec.Description)
	add("Scopes", strings.Join(spec.Scopes, ","))
	add("Disabled", fmt.Sprint(spec.Disabled))
}

func addLifetime(add func(string, string), l *keycapv1alpha1.Lifetime) {
	add("Spec expires at", formatTime(l.ExpiresAt))
	if l.Duration != nil {
		add("Lifetime", l.Duration.Duration.String())
	}
}

func addOpaque(add func(string, string), o *keycapv1alpha1.OpaqueKeySpec) {
	if r := o.Rotation; r != nil {
		s := "every " + r.Every.Duration.String()
		if r.GracePeriod != nil {
			s += ", grace " + r.GracePeriod.Duration.String()
		}
		add("Rotation", s)
	}
	if o.KeyHash != "" {
		add("Key hash", "bring-your-own ("+o.KeyHash+")")
	}
}

// ready returns the Ready condition, or nil.
func (c credential) ready() *metav1.Condition {
	return meta.FindStatusCondition(c.status.Conditions, keycapv1alpha1.ConditionReady)
}

// readyCurrent reports whether Ready is True for the object's current generation.
func (c credential) readyCurrent() bool {
	cond := c.ready()
	return cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == c.obj.GetGeneration()
}

// readyColumn is what list shows in READY.
func (c credential) readyColumn() string {
	cond := c.ready()
	if cond == nil {
		return "Unknown"
	}
	if cond.Status == metav1.ConditionTrue {
		return "True"
	}
	return string(cond.Status) + " (" + cond.Reason + ")"
}

// secretName is the Secret that holds the credential.
func (c credential) secretName() string {
	if c.status.SecretName != "" {
		return c.status.SecretName
	}
	return keycapv1alpha1.SecretNameOf(c.obj)
}

// listItems returns the items of a credential list, sorted by namespace and name.
func listItems(list keycapv1alpha1.CredentialList) []keycapv1alpha1.Credential {
	out := list.Credentials()
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetNamespace() != out[j].GetNamespace() {
			return out[i].GetNamespace() < out[j].GetNamespace()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out
}

// formatTime formats t in RFC 3339 (UTC), or "" for nil.
func formatTime(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05Z07:00")
}

// scheme knows the built-in kinds and keycap's.
func scheme() *kruntime.Scheme {
	s := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := keycapv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// connect returns a client for the cluster of the kubeconfig (as kubectl finds it: --kubeconfig,
// then $KUBECONFIG, then ~/.kube/config; --context or the current context) and the namespace to
// work in (-n, then the context's namespace, then "default").
func (e *env) connect() (client.Client, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = e.kubeconfig
	overrides := &clientcmd.ConfigOverrides{CurrentContext: e.kubeContext}
	overrides.Context.Namespace = e.namespace
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, "", errors.New("no kubeconfig found: pass --kubeconfig or set KUBECONFIG")
	}
	if err != nil {
		return nil, "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	namespace, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
	}
	cfg.UserAgent = "kubectl-keycap"
	c, err := client.New(cfg, client.Options{Scheme: scheme()})
	if err != nil {
		return nil, "", fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, namespace, nil
}

// explain adds what a user can do about an error the apiserver gives for keycap's kinds.
func explain(err error) error {
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("%w (are keycap's CRDs installed in this cluster? see config/crd)", err)
	}
	return err
}
