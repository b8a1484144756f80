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
)

// kind describes one credential kind for the plugin.
type kind struct {
	// name is the Kind, e.g. "ApiKey".
	name string
	// aliases are what a user may type: singular, plural, short name.
	aliases []string
	// secretKey is the Secret data key that holds the credential.
	secretKey string
	// opaque kinds carry status.digests and can be verified by digest.
	opaque bool
	// rotatable kinds honour the keycap.dev/rotate annotation.
	rotatable bool
	newObject func() client.Object
	newList   func() client.ObjectList
}

// kinds in the order list shows them.
var kinds = []*kind{
	{
		name: "ApiKey", aliases: []string{"apikey", "apikeys", "ak"}, secretKey: keycapv1alpha1.ApiKeySecretKey,
		opaque: true, rotatable: true,
		newObject: func() client.Object { return &keycapv1alpha1.ApiKey{} },
		newList:   func() client.ObjectList { return &keycapv1alpha1.ApiKeyList{} },
	},
	{
		name: "AgentKey", aliases: []string{"agentkey", "agentkeys", "agk"}, secretKey: keycapv1alpha1.AgentKeySecretKey,
		opaque: true, rotatable: true,
		newObject: func() client.Object { return &keycapv1alpha1.AgentKey{} },
		newList:   func() client.ObjectList { return &keycapv1alpha1.AgentKeyList{} },
	},
	{
		name: "AppToken", aliases: []string{"apptoken", "apptokens", "at"}, secretKey: keycapv1alpha1.AppTokenSecretKey,
		newObject: func() client.Object { return &keycapv1alpha1.AppToken{} },
		newList:   func() client.ObjectList { return &keycapv1alpha1.AppTokenList{} },
	},
	{
		name: "License", aliases: []string{"license", "licenses", "licence", "licences", "lic"}, secretKey: keycapv1alpha1.LicenseKeySecretKey,
		opaque:    true,
		newObject: func() client.Object { return &keycapv1alpha1.License{} },
		newList:   func() client.ObjectList { return &keycapv1alpha1.LicenseList{} },
	},
}

// lookupKind finds a kind by what the user typed (case-insensitive; "apikey.keycap.dev" works).
func lookupKind(s string) (*kind, error) {
	s = strings.TrimSuffix(strings.ToLower(s), "."+keycapv1alpha1.GroupVersion.Group)
	for _, k := range kinds {
		for _, a := range k.aliases {
			if s == a {
				return k, nil
			}
		}
	}
	return nil, usagef("unknown kind %q: use apikey, agentkey, apptoken or license", s)
}

// credential is the view of any credential kind that the commands need.
type credential struct {
	kind     *kind
	obj      client.Object
	disabled bool
	status   *keycapv1alpha1.CredentialStatus
	// digests and previousValidUntil are set for the opaque kinds.
	digests            []string
	previousValidUntil *metav1.Time
	// details are kind-specific spec and status fields for get, in order.
	details [][2]string
}

// view returns the credential view of obj, one of the four kinds.
func view(obj client.Object) credential {
	c := credential{obj: obj}
	add := func(name, value string) {
		if value != "" {
			c.details = append(c.details, [2]string{name, value})
		}
	}
	switch o := obj.(type) {
	case *keycapv1alpha1.ApiKey:
		c.kind, c.disabled, c.status = kinds[0], o.Spec.Disabled, &o.Status.CredentialStatus
		c.digests, c.previousValidUntil = o.Status.Digests, o.Status.PreviousKeyValidUntil
		add("Prefix", o.Spec.Prefix)
		addCommon(add, &o.Spec.CredentialSpec)
		addLifetime(add, &o.Spec.Lifetime)
		addOpaque(add, &o.Spec.OpaqueKeySpec)
	case *keycapv1alpha1.AgentKey:
		c.kind, c.disabled, c.status = kinds[1], o.Spec.Disabled, &o.Status.CredentialStatus
		c.digests, c.previousValidUntil = o.Status.Digests, o.Status.PreviousKeyValidUntil
		add("Parent", o.Spec.APIKeyRef.Name)
		add("Agent", o.Spec.Agent)
		add("Label", o.Spec.Label)
		addCommon(add, &o.Spec.CredentialSpec)
		addLifetime(add, &o.Spec.Lifetime)
		addOpaque(add, &o.Spec.OpaqueKeySpec)
		add("Parent key ID", o.Status.ParentKeyID)
	case *keycapv1alpha1.AppToken:
		c.kind, c.disabled, c.status = kinds[2], o.Spec.Disabled, &o.Status.CredentialStatus
		add("Subject", o.Spec.Subject)
		add("Audiences", strings.Join(o.Spec.Audiences, ","))
		add("Label", o.Spec.Label)
		addCommon(add, &o.Spec.CredentialSpec)
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
	case *keycapv1alpha1.License:
		c.kind, c.disabled, c.status = kinds[3], o.Spec.Disabled, &o.Status.CredentialStatus
		c.digests = o.Status.Digests
		add("Product", o.Spec.Product)
		add("Customer", o.Spec.Customer)
		add("Plan", o.Spec.Plan)
		add("Entitlements", strings.Join(o.Spec.Entitlements, ","))
		if o.Spec.MaxInstances != 0 {
			add("Max instances", fmt.Sprint(o.Spec.MaxInstances))
		}
		addCommon(add, &o.Spec.CredentialSpec)
		addLifetime(add, &o.Spec.Lifetime)
		add("Activations", fmt.Sprint(len(o.Status.Activations)))
		for _, a := range o.Status.Activations {
			add("  "+a.InstanceID, fmt.Sprintf("activated %s, last seen %s", formatTime(&a.ActivatedAt), formatTime(&a.LastSeenAt)))
		}
	default:
		panic(fmt.Sprintf("view: unexpected %T", obj))
	}
	return c
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
	if s := specSecretName(c.obj); s != "" {
		return s
	}
	return c.obj.GetName()
}

func specSecretName(obj client.Object) string {
	switch o := obj.(type) {
	case *keycapv1alpha1.ApiKey:
		return o.Spec.SecretName
	case *keycapv1alpha1.AgentKey:
		return o.Spec.SecretName
	case *keycapv1alpha1.AppToken:
		return o.Spec.SecretName
	case *keycapv1alpha1.License:
		return o.Spec.SecretName
	}
	return ""
}

// listItems returns the items of a typed credential list as objects, sorted by namespace and name.
func listItems(list client.ObjectList) ([]client.Object, error) {
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	out := make([]client.Object, 0, len(items))
	for _, item := range items {
		o, ok := item.(client.Object)
		if !ok {
			return nil, fmt.Errorf("unexpected list item %T", item)
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetNamespace() != out[j].GetNamespace() {
			return out[i].GetNamespace() < out[j].GetNamespace()
		}
		return out[i].GetName() < out[j].GetName()
	})
	return out, nil
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
