package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

// pollInterval is how often create and rotate look at the credential while waiting.
const pollInterval = 200 * time.Millisecond

// createFlags are the flags of create; each kind uses the ones that apply to it.
type createFlags struct {
	description, scopes, prefix, parent, agent, label, audience, subject string
	product, plan, customer, entitlements, secretName                    string
	expiresIn, rotateEvery, grace, duration                              time.Duration
	maxInstances                                                         int
	// maxInstancesSet tells --max-instances 0 (refused) from no --max-instances (the default).
	maxInstancesSet bool
}

func runCreate(e *env, args []string) error {
	var f createFlags
	fs := newFlagSet("create", e)
	fs.StringVar(&f.description, "description", "", "what the credential is for")
	fs.StringVar(&f.scopes, "scopes", "", "comma-separated scopes")
	fs.StringVar(&f.secretName, "secret-name", "", "name of the Secret (default: the credential's name)")
	fs.Var(durationFlag{&f.expiresIn}, "expires-in", "lifetime from creation, e.g. 30d or 720h (default: no expiry)")
	fs.StringVar(&f.prefix, "prefix", "", "apikey: key prefix (default kc)")
	fs.Var(durationFlag{&f.rotateEvery}, "rotate-every", "apikey, agentkey: rotate the key this often, e.g. 30d")
	fs.Var(durationFlag{&f.grace}, "grace", "apikey, agentkey: how long the previous key keeps working after a rotation, e.g. 1d")
	fs.StringVar(&f.parent, "parent", "", "agentkey: the parent ApiKey")
	fs.StringVar(&f.agent, "agent", "", "agentkey: the agent ID")
	fs.StringVar(&f.label, "label", "", "agentkey, apptoken: a human-readable label")
	fs.StringVar(&f.audience, "audience", "", "apptoken: comma-separated audiences")
	fs.StringVar(&f.subject, "subject", "", "apptoken: the sub claim (default namespace/name)")
	fs.Var(durationFlag{&f.duration}, "duration", "apptoken: lifetime of each token (default 1h)")
	fs.StringVar(&f.product, "product", "", "license: the licensed product")
	fs.StringVar(&f.plan, "plan", "", "license: the plan")
	fs.StringVar(&f.customer, "customer", "", "license: the customer")
	fs.IntVar(&f.maxInstances, "max-instances", 0, "license: how many instances may be active at once (default 1)")
	fs.StringVar(&f.entitlements, "entitlements", "", "license: comma-separated entitlements")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("create needs KIND and NAME, e.g. 'kubectl keycap create apikey my-key'")
	}
	if err := e.checkOutput(); err != nil {
		return err
	}
	k, err := lookupKind(pos[0])
	if err != nil {
		return err
	}
	if err := checkCreateFlags(fs, k); err != nil {
		return err
	}
	f.maxInstancesSet = isSet(fs, "max-instances")
	obj, err := f.object(k, pos[1])
	if err != nil {
		return err
	}
	c, namespace, err := e.connect()
	if err != nil {
		return err
	}
	obj.SetNamespace(namespace)
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	if err := c.Create(ctx, obj); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s %s/%s already exists; keycap prints a key only when it creates one (use 'kubectl keycap rotate' for a new key)",
				k.Name, namespace, obj.GetName())
		}
		return fmt.Errorf("creating %s %s/%s: %w", k.Name, namespace, obj.GetName(), explain(err))
	}
	issued, err := waitForKey(ctx, c, obj, e.timeout, func(credential) bool { return true })
	if err != nil {
		return fmt.Errorf("%w\nThe %s was created; delete it with 'kubectl keycap revoke %s %s --delete -n %s'",
			err, k.Name, strings.ToLower(k.Name), obj.GetName(), namespace)
	}
	return e.printKey(issued, "created")
}

// kindFlags are the create flags that apply to one kind only; the others apply to all.
var kindFlags = map[string][]string{
	keycapv1alpha1.KindApiKey:   {"prefix", "rotate-every", "grace", "expires-in"},
	keycapv1alpha1.KindAgentKey: {"parent", "agent", "label", "rotate-every", "grace", "expires-in"},
	keycapv1alpha1.KindAppToken: {"audience", "subject", "label", "duration"},
	keycapv1alpha1.KindLicense:  {"product", "plan", "customer", "max-instances", "entitlements", "expires-in"},
}

// checkCreateFlags refuses a flag given for a kind it does not apply to, rather than ignoring it.
func checkCreateFlags(fs *flag.FlagSet, k *kind) error {
	specific := map[string]bool{}
	for _, names := range kindFlags {
		for _, n := range names {
			specific[n] = true
		}
	}
	allowed := map[string]bool{}
	for _, n := range kindFlags[k.Name] {
		allowed[n] = true
	}
	var err error
	fs.Visit(func(fl *flag.Flag) {
		if err == nil && specific[fl.Name] && !allowed[fl.Name] {
			err = usagef("--%s does not apply to %s", fl.Name, k.Name)
		}
	})
	return err
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	return set
}

// object builds the credential to create.
func (f *createFlags) object(k *kind, name string) (keycapv1alpha1.Credential, error) {
	common := keycapv1alpha1.CredentialSpec{Description: f.description, Scopes: splitList(f.scopes), SecretName: f.secretName}
	var lifetime keycapv1alpha1.Lifetime
	if f.expiresIn < 0 {
		return nil, usagef("--expires-in must be positive")
	}
	if f.expiresIn > 0 {
		lifetime.Duration = &metav1.Duration{Duration: f.expiresIn}
	}
	var opaque keycapv1alpha1.OpaqueKeySpec
	switch {
	case f.rotateEvery > 0:
		opaque.Rotation = &keycapv1alpha1.RotationPolicy{Every: metav1.Duration{Duration: f.rotateEvery}}
		if f.grace > 0 {
			opaque.Rotation.GracePeriod = &metav1.Duration{Duration: f.grace}
		}
	case f.grace != 0:
		return nil, usagef("--grace needs --rotate-every")
	case f.rotateEvery < 0:
		return nil, usagef("--rotate-every must be positive")
	}
	meta := metav1.ObjectMeta{Name: name}
	switch k.Name {
	case keycapv1alpha1.KindApiKey:
		return &keycapv1alpha1.ApiKey{ObjectMeta: meta, Spec: keycapv1alpha1.ApiKeySpec{
			CredentialSpec: common, Lifetime: lifetime, OpaqueKeySpec: opaque, Prefix: f.prefix,
		}}, nil
	case keycapv1alpha1.KindAgentKey:
		if f.parent == "" || f.agent == "" {
			return nil, usagef("create agentkey needs --parent APIKEY and --agent ID")
		}
		return &keycapv1alpha1.AgentKey{ObjectMeta: meta, Spec: keycapv1alpha1.AgentKeySpec{
			CredentialSpec: common, Lifetime: lifetime, OpaqueKeySpec: opaque,
			APIKeyRef: keycapv1alpha1.ApiKeyReference{Name: f.parent}, Agent: f.agent, Label: f.label,
		}}, nil
	case keycapv1alpha1.KindAppToken:
		audiences := splitList(f.audience)
		if len(audiences) == 0 {
			return nil, usagef("create apptoken needs --audience")
		}
		spec := keycapv1alpha1.AppTokenSpec{CredentialSpec: common, Audiences: audiences, Subject: f.subject, Label: f.label}
		if f.duration < 0 {
			return nil, usagef("--duration must be positive")
		}
		if f.duration > 0 {
			spec.Duration = &metav1.Duration{Duration: f.duration}
		}
		return &keycapv1alpha1.AppToken{ObjectMeta: meta, Spec: spec}, nil
	case keycapv1alpha1.KindLicense:
		if f.product == "" {
			return nil, usagef("create license needs --product")
		}
		if f.maxInstancesSet && (f.maxInstances < 1 || f.maxInstances > 100000) {
			return nil, usagef("--max-instances must be between 1 and 100000")
		}
		return &keycapv1alpha1.License{ObjectMeta: meta, Spec: keycapv1alpha1.LicenseSpec{
			CredentialSpec: common, Lifetime: lifetime, Product: f.product, Customer: f.customer, Plan: f.plan,
			Entitlements: splitList(f.entitlements), MaxInstances: int32(f.maxInstances), //nolint:gosec // bounded above
		}}, nil
	}
	return nil, usagef("create does not know the fields of %s; write its manifest and kubectl apply it", k.Name)
}

// issuedKey is a credential with the key its Secret holds.
type issuedKey struct {
	credential
	key string
}

// terminalReasons are Ready reasons that waiting will not change.
var terminalReasons = map[string]bool{
	keycapv1alpha1.ReasonSecretConflict: true,
	keycapv1alpha1.ReasonInvalidSpec:    true,
	keycapv1alpha1.ReasonDisabled:       true,
	keycapv1alpha1.ReasonExpired:        true,
	keycapv1alpha1.ReasonDuplicateKey:   true,
}

// waitForKey waits until obj is Ready for its current generation, done accepts it, and its Secret
// holds the key that the status describes (same key ID; for opaque keys the digest listed first).
// It returns the key, or an error quoting the Ready condition.
func waitForKey(ctx context.Context, c client.Client, obj keycapv1alpha1.Credential, timeout time.Duration, done func(credential) bool) (*issuedKey, error) {
	key := client.ObjectKeyFromObject(obj)
	var last credential
	var found *issuedKey
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, key, obj); err != nil {
			if apierrors.IsNotFound(err) {
				return false, fmt.Errorf("%s was deleted while waiting for it", key)
			}
			lastErr = err
			return false, nil
		}
		last = view(obj)
		if cond := last.ready(); cond != nil && cond.Status != metav1.ConditionTrue &&
			cond.ObservedGeneration == obj.GetGeneration() && terminalReasons[cond.Reason] {
			return false, fmt.Errorf("%s %s is not Ready: %s: %s", last.kind.Name, key, cond.Reason, cond.Message)
		}
		if !last.readyCurrent() || !done(last) {
			return false, nil
		}
		var secret corev1.Secret
		if err := c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: last.secretName()}, &secret); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			if apierrors.IsForbidden(err) {
				return false, fmt.Errorf("reading Secret %s/%s: %w", key.Namespace, last.secretName(), err)
			}
			lastErr = err
			return false, nil
		}
		value := string(secret.Data[last.kind.SecretDataKey])
		if value == "" || !secretMatches(last, &secret, value) {
			return false, nil
		}
		found = &issuedKey{credential: last, key: value}
		return true, nil
	})
	if err == nil {
		return found, nil
	}
	if !wait.Interrupted(err) {
		return nil, err
	}
	if last.obj == nil {
		if lastErr != nil {
			return nil, fmt.Errorf("reading %s: %w", key, lastErr)
		}
		return nil, fmt.Errorf("timed out after %s reading %s", timeout, key)
	}
	msg := fmt.Sprintf("%s %s is not Ready after %s", last.kind.Name, key, timeout)
	if cond := last.ready(); cond != nil {
		msg += fmt.Sprintf(": Ready=%s, reason %s: %s", cond.Status, cond.Reason, cond.Message)
	} else {
		msg += ": no Ready condition yet (is the keycap controller running?)"
	}
	if lastErr != nil {
		msg += fmt.Sprintf(" (last error: %v)", lastErr)
	}
	return nil, errors.New(msg)
}

// secretMatches reports whether the key in secret is the one the status describes.
func secretMatches(c credential, secret *corev1.Secret, value string) bool {
	if id := secret.Annotations[keycapv1alpha1.AnnotationKeyID]; id != "" && id != c.status.KeyID {
		return false
	}
	if c.kind.FoundByDigest {
		return len(c.digests) > 0 && keys.Digest(value) == c.digests[0]
	}
	return true
}

// keyOutput is the JSON create and rotate print with -o json.
type keyOutput struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	KeyID     string `json:"keyID"`
	Key       string `json:"key"`
}

// printKey prints the key once on stdout and, on stderr, what it is and that it is not shown again.
func (e *env) printKey(k *issuedKey, what string) error {
	ns, name := k.obj.GetNamespace(), k.obj.GetName()
	if e.output == "json" {
		b, err := json.Marshal(keyOutput{Name: name, Namespace: ns, KeyID: k.status.KeyID, Key: k.key})
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(e.stdout, "%s\n", b); err != nil {
			return err
		}
	} else if _, err := fmt.Fprintln(e.stdout, k.key); err != nil {
		return err
	}
	if at, ok := k.obj.(*keycapv1alpha1.AppToken); ok {
		// An AppToken's token is one of a series: the Secret always holds a current one.
		fmt.Fprintf(e.stderr, "AppToken %s/%s %s: key ID %s; this token expires at %s.\n"+
			"keycap renews it into Secret %s/%s (data key %s) before then: workloads read the token from the Secret, not from this copy.\n",
			ns, name, what, k.status.KeyID, orNone(formatTime(at.Status.TokenExpiresAt)), ns, k.secretName(), k.kind.SecretDataKey)
		return nil
	}
	fmt.Fprintf(e.stderr, "%s %s/%s %s: key ID %s, hint %s.\n"+
		"Store the key now: kubectl keycap will not show it again (it stays only in Secret %s/%s, data key %s).\n",
		k.kind.Name, ns, name, what, k.status.KeyID, k.status.Hint, ns, k.secretName(), k.kind.SecretDataKey)
	return nil
}
