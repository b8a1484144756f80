package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// policyTimeout bounds the apiserver loading a ValidatingAdmissionPolicy it was just given.
const policyTimeout = 30 * time.Second

const (
	authzUsername   = "system:serviceaccount:keycap-system:keycap-authz"
	managerUsername = "system:serviceaccount:keycap-system:keycap-manager"
)

// TestDataPlaneStatusPolicy: with config/rbac and config/admission applied to the real apiserver,
// the data plane's identity (keycap-authz, impersonated) may write status.lastUsedAt of every kind
// and status.activations of a License, and nothing else: not the digests it trusts, not another
// status field, not spec. The operator's identity still writes status as before. The raw merge
// PATCH of /status is what an attacker holding the data plane's token sends.
func TestDataPlaneStatusPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	g := gomega.NewWithT(t)
	ctx := context.Background()
	env, admin, stop, err := testenv.Start()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	t.Cleanup(stop)
	kubectlBin, err := testenv.Kubectl()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	kubeconfig := adminKubeconfig(t, env)

	g.Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "keycap-system"}})).To(gomega.Succeed())
	for _, dir := range []string{"rbac", "admission"} {
		out, err := runKubectl(kubectlBin, kubeconfig, "apply", "-k", filepath.Join(testenv.RepoRoot(), "config", dir))
		g.Expect(err).NotTo(gomega.HaveOccurred(), "applying config/%s: %s", dir, out)
	}
	tenant := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tenant-"}}
	g.Expect(admin.Create(ctx, tenant)).To(gomega.Succeed())
	ns := tenant.Name

	as := func(username string) client.Client {
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: username}
		c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
		g.Expect(err).NotTo(gomega.HaveOccurred())
		return c
	}
	dataPlane, operator := as(authzUsername), as(managerUsername)
	patchStatus := func(c client.Client, obj client.Object, body string, opts ...client.SubResourcePatchOption) error {
		return c.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, []byte(body)), opts...)
	}
	digest := func(b byte) string { return strings.Repeat(fmt.Sprintf("%02x", b), 32) }

	// The operator issues: status written under its shipped RBAC, which the policy leaves alone.
	key := &keycapv1alpha1.ApiKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "victim"}}
	g.Expect(admin.Create(ctx, key)).To(gomega.Succeed())
	g.Expect(patchStatus(operator, key, `{"status":{"digests":["`+digest(1)+`"],"keyID":"kid_1","observedGeneration":1}}`)).To(gomega.Succeed())
	agent := &keycapv1alpha1.AgentKey{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent"},
		Spec: keycapv1alpha1.AgentKeySpec{APIKeyRef: keycapv1alpha1.ApiKeyReference{Name: "victim"}, Agent: "a-1"}}
	g.Expect(admin.Create(ctx, agent)).To(gomega.Succeed())
	g.Expect(patchStatus(operator, agent, `{"status":{"digests":["`+digest(2)+`"]}}`)).To(gomega.Succeed())
	lic := &keycapv1alpha1.License{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lic"}, Spec: keycapv1alpha1.LicenseSpec{Product: "cap"}}
	g.Expect(admin.Create(ctx, lic)).To(gomega.Succeed())
	g.Expect(patchStatus(operator, lic, `{"status":{"digests":["`+digest(3)+`"]}}`)).To(gomega.Succeed())
	tok := &keycapv1alpha1.AppToken{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tok"}, Spec: keycapv1alpha1.AppTokenSpec{Audiences: []string{"api"}}}
	g.Expect(admin.Create(ctx, tok)).To(gomega.Succeed())

	refused := func(g gomega.Gomega, err error, what string) {
		g.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "want 403, got %v", err)
		g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring(what)))
	}
	injected := `{"status":{"digests":["` + digest(1) + `","` + digest(0xee) + `"]}}`
	// The apiserver loads a new policy in the background: wait on a dry run, which writes nothing.
	g.Eventually(func(g gomega.Gomega) {
		refused(g, patchStatus(dataPlane, key, injected, client.DryRunAll), "the data plane may change only status.lastUsedAt of a ApiKey, not status.digests")
	}).WithTimeout(policyTimeout).Should(gomega.Succeed())

	cases := map[string]struct {
		obj     client.Object
		body    string
		refusal string // empty: allowed
	}{
		"injecting a digest into an ApiKey is refused":   {key, injected, "not status.digests"},
		"injecting a digest into an AgentKey is refused": {agent, `{"status":{"digests":["` + digest(0xee) + `"]}}`, "not status.digests"},
		"injecting a digest into a License is refused":   {lic, `{"status":{"digests":["` + digest(0xee) + `"]}}`, "may change only status.lastUsedAt and status.activations of a License, not status.digests"},
		"marking an ApiKey Ready is refused":             {key, `{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Issued","message":"","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`, "not status.conditions"},
		"removing a status field is refused":             {key, `{"status":{"keyID":null}}`, "not status.keyID"},
		"moving an AppToken's revocation is refused":     {tok, `{"status":{"tokensNotBefore":"2020-01-01T00:00:00Z"}}`, "not status.tokensNotBefore"},
		"lastUsedAt with a digest change is refused":     {key, `{"status":{"lastUsedAt":"2026-01-01T00:00:00Z","digests":[]}}`, "not status.digests"},
		"writing lastUsedAt of an ApiKey is allowed":     {key, `{"status":{"lastUsedAt":"2026-01-01T00:00:00Z"}}`, ""},
		"writing lastUsedAt of an AgentKey is allowed":   {agent, `{"status":{"lastUsedAt":"2026-01-01T00:00:00Z"}}`, ""},
		"writing lastUsedAt of an AppToken is allowed":   {tok, `{"status":{"lastUsedAt":"2026-01-01T00:00:00Z"}}`, ""},
		"writing a License's activations is allowed":     {lic, `{"status":{"lastUsedAt":"2026-01-01T00:00:00Z","activations":[{"instanceID":"i-1","activatedAt":"2026-01-01T00:00:00Z","lastSeenAt":"2026-01-01T00:00:00Z"}]}}`, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			before := c.obj.DeepCopyObject().(client.Object)
			g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(c.obj), before)).To(gomega.Succeed())
			err := patchStatus(dataPlane, c.obj.DeepCopyObject().(client.Object), c.body)
			if c.refusal == "" {
				g.Expect(err).NotTo(gomega.HaveOccurred())
				return
			}
			refused(g, err, c.refusal)
			after := c.obj.DeepCopyObject().(client.Object)
			g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(c.obj), after)).To(gomega.Succeed())
			g.Expect(after.GetResourceVersion()).To(gomega.Equal(before.GetResourceVersion()), "nothing was written")
		})
	}
	t.Run("the data plane cannot change a spec", func(t *testing.T) {
		g := gomega.NewWithT(t)
		err := dataPlane.Patch(ctx, key.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"scopes":["admin"]}}`)))
		g.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "want 403, got %v", err)
	})
	t.Run("the operator still writes every status field", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Expect(patchStatus(operator, key.DeepCopy(), `{"status":{"digests":["`+digest(4)+`","`+digest(1)+`"],"keyID":"kid_4"}}`)).To(gomega.Succeed())
		stored := &keycapv1alpha1.ApiKey{}
		g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(key), stored)).To(gomega.Succeed())
		g.Expect(stored.Status.Digests).To(gomega.Equal([]string{digest(4), digest(1)}))
		g.Expect(stored.Status.LastUsedAt).NotTo(gomega.BeNil(), "the data plane's lastUsedAt stays")
	})
}

// adminKubeconfig writes a kubeconfig for a cluster admin of env (for kubectl) and returns its path.
func adminKubeconfig(t *testing.T, env *envtest.Environment) string {
	t.Helper()
	user, err := env.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
