package webhook

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

func newApiKey(ns, name string) *keycapv1alpha1.ApiKey {
	return &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: keycapv1alpha1.ApiKeySpec{CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: []string{"videos:read", "videos:write"}}}}
}

func newAgentKey(ns, name, parent string, scopes ...string) *keycapv1alpha1.AgentKey {
	return &keycapv1alpha1.AgentKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: keycapv1alpha1.AgentKeySpec{
			CredentialSpec: keycapv1alpha1.CredentialSpec{Scopes: scopes},
			APIKeyRef:      keycapv1alpha1.ApiKeyReference{Name: parent},
			Agent:          "agent-" + name,
		}}
}

func newAppToken(ns, name string) *keycapv1alpha1.AppToken {
	return &keycapv1alpha1.AppToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: keycapv1alpha1.AppTokenSpec{Audiences: []string{"api.example.com"}}}
}

func newLicense(ns, name string, maxInstances int32) *keycapv1alpha1.License {
	return &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: keycapv1alpha1.LicenseSpec{Product: "cap", MaxInstances: maxInstances}}
}

func keyHash(t *testing.T) (hash, digest string) {
	d := keys.Digest(mustKey(t, "kc"))
	return "sha256:" + d, d
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "wh-"}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), ns) })
	return ns.Name
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8sClient.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// expectRefused waits until a server-side dry run of op is refused with a message holding every
// substring (the cache behind the uniqueness checks may need a moment to see a new object) and
// checks it is a 422 Invalid, the status kubectl prints field by field.
func expectRefused(t *testing.T, op func(dryRun bool) error, substrings ...string) {
	t.Helper()
	g := gomega.NewWithT(t)
	g.Eventually(func(g gomega.Gomega) {
		err := op(true)
		g.Expect(err).To(gomega.HaveOccurred())
		g.Expect(apierrors.IsInvalid(err)).To(gomega.BeTrue(), "want 422 Invalid, got %v", err)
		for _, s := range substrings {
			g.Expect(err.Error()).To(gomega.ContainSubstring(s))
		}
	}).WithTimeout(admissionTimeout).Should(gomega.Succeed())
}

func createOp(obj client.Object) func(bool) error {
	return func(dryRun bool) error {
		var opts []client.CreateOption
		if dryRun {
			opts = append(opts, client.DryRunAll)
		}
		return k8sClient.Create(context.Background(), obj.DeepCopyObject().(client.Object), opts...)
	}
}

func updateOp(obj client.Object) func(bool) error {
	return func(dryRun bool) error {
		var opts []client.UpdateOption
		if dryRun {
			opts = append(opts, client.DryRunAll)
		}
		return k8sClient.Update(context.Background(), obj.DeepCopyObject().(client.Object), opts...)
	}
}

// warningRecorder collects the apiserver's warnings (what kubectl prints as "Warning: ...").
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.warnings)
}

func (w *warningRecorder) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = nil
}

// TestCreateRules: for every rule, a manifest that breaks it is refused naming the field, and one
// that keeps it is created.
func TestCreateRules(t *testing.T) {
	plaintext := mustKey(t, "kc")
	cases := map[string]struct {
		// setup creates what the rule is checked against and returns the object to create.
		setup func(t *testing.T, ns string) (bad, good client.Object)
		// refusal are the substrings of bad's refusal: the field and the reason.
		refusal []string
		// hidden must not appear in the refusal.
		hidden []string
	}{
		"a plaintext key in a spec string is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				bad := newApiKey(ns, "plain")
				bad.Spec.Description = "prod key " + plaintext
				good := newApiKey(ns, "plain")
				good.Spec.Description = "prod key, see vault"
				good.Spec.KeyHash = "sha256:" + keys.Digest(plaintext)
				return bad, good
			},
			refusal: []string{"spec.description", MsgPlaintextCredential},
		},
		"a plaintext key in an annotation is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				bad := newAppToken(ns, "annotated")
				bad.Annotations = map[string]string{"note": plaintext}
				good := newAppToken(ns, "annotated")
				good.Annotations = map[string]string{"note": "rotated monthly"}
				return bad, good
			},
			refusal: []string{"metadata.annotations[note]", MsgPlaintextCredential},
		},
		"a keyHash another ApiKey in another namespace uses is refused, naming neither it nor its namespace": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				hash, _ := keyHash(t)
				other := newNamespace(t)
				first := newApiKey(other, "first")
				first.Spec.KeyHash = hash
				mustCreate(t, first)
				bad := newApiKey(ns, "second")
				bad.Spec.KeyHash = hash
				good := newApiKey(ns, "second")
				good.Spec.KeyHash, _ = keyHash(t)
				return bad, good
			},
			refusal: []string{"spec.keyHash", "already used by a credential in another namespace"},
			// The other tenant's object is "first" in a namespace named wh-...; the refused object
			// is "second", and its own namespace is not in the message either.
			hidden: []string{"first", "wh-"},
		},
		"a keyHash equal to a generated AgentKey's digest is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				hash, digest := keyHash(t)
				mustCreate(t, newApiKey(ns, "parent"))
				agent := newAgentKey(ns, "issued", "parent", "videos:read")
				mustCreate(t, agent)
				agent.Status.Digests = []string{digest}
				if err := k8sClient.Status().Update(context.Background(), agent); err != nil {
					t.Fatal(err)
				}
				bad := newAgentKey(ns, "byo", "parent")
				bad.Spec.KeyHash = hash
				good := newAgentKey(ns, "byo", "parent")
				good.Spec.KeyHash, _ = keyHash(t)
				return bad, good
			},
			refusal: []string{"spec.keyHash", "already used by AgentKey " + "wh-"},
		},
		"a keyHash equal to a License's digest is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				hash, digest := keyHash(t)
				lic := newLicense(ns, "lic", 1)
				mustCreate(t, lic)
				lic.Status.Digests = []string{digest}
				if err := k8sClient.Status().Update(context.Background(), lic); err != nil {
					t.Fatal(err)
				}
				bad := newApiKey(ns, "byo")
				bad.Spec.KeyHash = hash
				good := newApiKey(ns, "byo")
				good.Spec.KeyHash, _ = keyHash(t)
				return bad, good
			},
			refusal: []string{"spec.keyHash", "already used by License"},
		},
		"an AgentKey without its parent is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				// The parent is created now and the good agent key right after it: the webhook
				// must find a parent its cache has not seen yet.
				return newAgentKey(ns, "orphan", "missing"), nil
			},
			refusal: []string{"spec.apiKeyRef.name", "Not found", "missing"},
		},
		"an AgentKey created right after its parent is accepted": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				mustCreate(t, newApiKey(ns, "fresh-parent"))
				return nil, newAgentKey(ns, "child", "fresh-parent", "videos:read")
			},
		},
		"an AgentKey under a disabled parent is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				off := newApiKey(ns, "off")
				off.Spec.Disabled = true
				mustCreate(t, off)
				mustCreate(t, newApiKey(ns, "on"))
				return newAgentKey(ns, "agent", "off"), newAgentKey(ns, "agent", "on")
			},
			refusal: []string{"spec.apiKeyRef.name", "the parent ApiKey is disabled"},
		},
		"an AgentKey with a scope its parent lacks is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				mustCreate(t, newApiKey(ns, "parent"))
				return newAgentKey(ns, "agent", "parent", "videos:read", "billing:admin"),
					newAgentKey(ns, "agent", "parent", "videos:read")
			},
			refusal: []string{"spec.scopes[1]", "billing:admin", "not a scope of the parent ApiKey"},
		},
		"an AppToken longer than the configured bound is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				bad := newAppToken(ns, "long")
				bad.Spec.Duration = &metav1.Duration{Duration: 48 * time.Hour}
				good := newAppToken(ns, "long")
				good.Spec.Duration = &metav1.Duration{Duration: 24 * time.Hour}
				return bad, good
			},
			refusal: []string{"spec.duration", "must be between 1m0s and 24h0m0s"},
		},
		"an AppToken renewed right after issue is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				bad := newAppToken(ns, "eager")
				bad.Spec.Duration = &metav1.Duration{Duration: 10 * time.Minute}
				bad.Spec.RenewBefore = &metav1.Duration{Duration: 9*time.Minute + 50*time.Second}
				good := bad.DeepCopy()
				good.Spec.RenewBefore = &metav1.Duration{Duration: 3 * time.Minute}
				return bad, good
			},
			refusal: []string{"spec.renewBefore", "before renewal starts"},
		},
		"an AppToken without audiences is refused (by the schema)": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				bad := newAppToken(ns, "noaud")
				bad.Spec.Audiences = nil
				return bad, newAppToken(ns, "noaud")
			},
			refusal: []string{"spec.audiences"},
		},
		"a License with zero instances is refused (by the schema)": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				bad := &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "zero"}}
				// maxInstances is omitempty, so 0 would be defaulted to 1; -1 reaches the schema.
				bad.Spec.Product = "cap"
				bad.Spec.MaxInstances = -1
				return bad, newLicense(ns, "zero", 1)
			},
			refusal: []string{"spec.maxInstances"},
		},
		"a License whose heartbeat timeout is shorter than its refresh interval is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				bad := newLicense(ns, "hb", 2)
				bad.Spec.RefreshInterval = &metav1.Duration{Duration: time.Hour}
				bad.Spec.HeartbeatTimeout = &metav1.Duration{Duration: 10 * time.Minute}
				good := bad.DeepCopy()
				good.Spec.HeartbeatTimeout = &metav1.Duration{Duration: 3 * time.Hour}
				return bad, good
			},
			refusal: []string{"spec.heartbeatTimeout", "must be at least refreshInterval"},
		},
		"a credential that expired before it was created is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				bad := newApiKey(ns, "stale")
				past := metav1.NewTime(fakeClock.Now().Add(-time.Hour))
				bad.Spec.ExpiresAt = &past
				good := newApiKey(ns, "stale")
				future := metav1.NewTime(fakeClock.Now().Add(30 * 24 * time.Hour))
				good.Spec.ExpiresAt = &future
				return bad, good
			},
			refusal: []string{"spec.expiresAt", "is in the past"},
		},
		"a Secret name another credential writes is refused, naming it": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				mustCreate(t, newApiKey(ns, "billing"))
				bad := newLicense(ns, "lic", 1)
				bad.Spec.SecretName = "billing"
				good := newLicense(ns, "lic", 1)
				good.Spec.SecretName = "billing-license"
				return bad, good
			},
			refusal: []string{"spec.secretName", "already written by ApiKey"},
		},
		"a credential whose own name is the Secret another credential chose is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				lic := newLicense(ns, "lic", 1)
				lic.Spec.SecretName = "shared"
				mustCreate(t, lic)
				bad := newApiKey(ns, "shared")
				good := newApiKey(ns, "shared")
				good.Spec.SecretName = "shared-key"
				return bad, good
			},
			refusal: []string{"spec.secretName", `Secret "shared" is already written by License`},
		},
		"a credential of another kind with the same name is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				mustCreate(t, newAppToken(ns, "twin"))
				bad := newApiKey(ns, "twin")
				good := newApiKey(ns, "twin")
				good.Spec.SecretName = "twin-key"
				return bad, good
			},
			refusal: []string{"spec.secretName", `Secret "twin" is already written by AppToken`},
		},
		"a secretTemplate taking over keycap's labels is refused": {
			setup: func(t *testing.T, ns string) (client.Object, client.Object) {
				bad := newApiKey(ns, "tmpl")
				bad.Spec.SecretTemplate = &keycapv1alpha1.SecretTemplate{Labels: map[string]string{keycapv1alpha1.LabelKind: "License"}}
				good := newApiKey(ns, "tmpl")
				good.Spec.SecretTemplate = &keycapv1alpha1.SecretTemplate{Labels: map[string]string{"team": "billing"}}
				return bad, good
			},
			refusal: []string{"spec.secretTemplate.labels[keycap.dev/kind]", "cannot be overridden"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ns := newNamespace(t)
			bad, good := c.setup(t, ns)
			if bad != nil {
				expectRefused(t, createOp(bad), c.refusal...)
				err := createOp(bad)(true)
				for _, h := range c.hidden {
					gomega.NewWithT(t).Expect(err).NotTo(gomega.MatchError(gomega.ContainSubstring(h)))
				}
			}
			if good != nil {
				// No retry: a valid manifest is accepted at once.
				mustCreate(t, good)
			}
		})
	}
}

// TestUpdateRules: rules that compare with the object before the update.
func TestUpdateRules(t *testing.T) {
	ctx := context.Background()
	t.Run("lowering a License's maxInstances below its activations is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		ns := newNamespace(t)
		lic := newLicense(ns, "seats", 5)
		mustCreate(t, lic)
		now := metav1.NewTime(fakeClock.Now())
		lic.Status.Activations = []keycapv1alpha1.LicenseActivation{
			{InstanceID: "i-1", ActivatedAt: now, LastSeenAt: now},
			{InstanceID: "i-2", ActivatedAt: now, LastSeenAt: now},
		}
		g.Expect(k8sClient.Status().Update(ctx, lic)).To(gomega.Succeed())
		lic.Spec.MaxInstances = 1
		expectRefused(t, updateOp(lic), "spec.maxInstances", "cannot be lowered below the 2 instances activated now")
		lic.Spec.MaxInstances = 2
		g.Expect(k8sClient.Update(ctx, lic)).To(gomega.Succeed())
	})
	t.Run("widening an AgentKey's scopes beyond its parent's is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		ns := newNamespace(t)
		mustCreate(t, newApiKey(ns, "parent"))
		agent := newAgentKey(ns, "agent", "parent", "videos:read")
		mustCreate(t, agent)
		agent.Spec.Scopes = []string{"videos:read", "videos:delete"}
		expectRefused(t, updateOp(agent), "spec.scopes[1]", "not a scope of the parent ApiKey")
		agent.Spec.Scopes = []string{"videos:read", "videos:write"}
		g.Expect(k8sClient.Update(ctx, agent)).To(gomega.Succeed())
	})
	t.Run("an AgentKey whose parent is gone can still be disabled", func(t *testing.T) {
		g := gomega.NewWithT(t)
		ns := newNamespace(t)
		parent := newApiKey(ns, "parent")
		mustCreate(t, parent)
		agent := newAgentKey(ns, "agent", "parent", "videos:read")
		mustCreate(t, agent)
		g.Expect(k8sClient.Delete(ctx, parent)).To(gomega.Succeed())
		agent.Spec.Disabled = true
		g.Expect(k8sClient.Update(ctx, agent)).To(gomega.Succeed())
	})
	t.Run("setting a secretName after creation to another credential's Secret is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		ns := newNamespace(t)
		mustCreate(t, newApiKey(ns, "billing"))
		tok := newAppToken(ns, "token")
		mustCreate(t, tok)
		tok.Spec.SecretName = "billing"
		expectRefused(t, updateOp(tok), "spec.secretName", "already written by ApiKey "+ns+"/billing")
		tok.Spec.SecretName = "token-secret"
		g.Expect(k8sClient.Update(ctx, tok)).To(gomega.Succeed())
	})
	t.Run("narrowing or disabling a parent ApiKey warns about its agent keys", func(t *testing.T) {
		g := gomega.NewWithT(t)
		ns := newNamespace(t)
		parent := newApiKey(ns, "parent")
		mustCreate(t, parent)
		mustCreate(t, newAgentKey(ns, "writer", "parent", "videos:read", "videos:write"))
		warnings := &warningRecorder{}
		wcfg := rest.CopyConfig(cfg)
		wcfg.WarningHandler = warnings
		c, err := client.New(wcfg, client.Options{Scheme: k8sClient.Scheme()})
		g.Expect(err).NotTo(gomega.HaveOccurred())
		// The agent key reaches the webhook's cache a moment after its creation: update until the
		// warnings name it (each update after the first changes nothing, so keep toggling).
		g.Eventually(func(g gomega.Gomega) {
			p := &keycapv1alpha1.ApiKey{}
			g.Expect(c.Get(ctx, client.ObjectKeyFromObject(parent), p)).To(gomega.Succeed())
			p.Spec.Scopes, p.Spec.Disabled = []string{"videos:read", "videos:write"}, false
			g.Expect(c.Update(ctx, p)).To(gomega.Succeed())
			warnings.reset()
			p.Spec.Scopes, p.Spec.Disabled = []string{"videos:read"}, true
			g.Expect(c.Update(ctx, p)).To(gomega.Succeed(), "the update is allowed; warnings only")
			g.Expect(warnings.get()).To(gomega.ConsistOf(
				"disabling this ApiKey also deactivates its 1 agent key(s): writer",
				"AgentKey writer loses scope(s) videos:write: the parent no longer grants them"))
		}).WithTimeout(admissionTimeout).Should(gomega.Succeed())
	})
	t.Run("changing a keyHash to one another credential uses is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		ns := newNamespace(t)
		taken, _ := keyHash(t)
		a := newApiKey(ns, "a")
		a.Spec.KeyHash = taken
		mustCreate(t, a)
		b := newApiKey(ns, "b")
		b.Spec.KeyHash, _ = keyHash(t)
		mustCreate(t, b)
		b.Spec.KeyHash = taken
		expectRefused(t, updateOp(b), "spec.keyHash", "already used by ApiKey "+ns+"/a")
		b.Spec.KeyHash, _ = keyHash(t)
		g.Expect(k8sClient.Update(ctx, b)).To(gomega.Succeed())
	})
}
