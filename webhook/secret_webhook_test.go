package webhook

import (
	"context"
	"strings"
	"testing"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// userClient returns a client for a new, ordinary user who may create, get, update and delete
// Secrets in the given namespaces (a namespace admin, say).
func userClient(t *testing.T, name string, namespaces ...string) client.Client {
	t.Helper()
	ctx := context.Background()
	user, err := env.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secret-editor"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create", "get", "list", "update", "patch", "delete"}}}}
		binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secret-editor-" + name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "secret-editor"},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: name}}}
		if err := k8sClient.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if err := k8sClient.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	c, err := client.New(user.Config(), client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func managedSecret(ns, name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			keycapv1alpha1.LabelManagedBy: keycapv1alpha1.ManagedByValue,
			keycapv1alpha1.LabelKind:      "ApiKey",
			keycapv1alpha1.LabelName:      name,
		}},
		Data: map[string][]byte{keycapv1alpha1.ApiKeySecretKey: []byte("issued-by-keycap")},
	}
}

func TestTamperGuard(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	user := userClient(t, "alice", ns, operatorNS)
	gomega.NewWithT(t).Expect(registered.Operators).To(gomega.ContainElement("admin"), "the suite's manager runs as envtest's admin")

	// get reads the Secret as the user sees it.
	get := func(g gomega.Gomega, name string) *corev1.Secret {
		s := &corev1.Secret{}
		g.Expect(user.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)).To(gomega.Succeed())
		return s
	}
	refused := func(g gomega.Gomega, err error, what string) {
		g.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "want 403, got %v", err)
		g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("is managed by keycap: only the operator may change its " + what)))
	}

	mustCreate(t, managedSecret(ns, "key"))

	t.Run("a user editing a managed Secret's data is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		s := get(g, "key")
		s.Data[keycapv1alpha1.ApiKeySecretKey] = []byte("chosen-by-alice")
		refused(g, user.Update(ctx, s), "data")
		s = get(g, "key")
		s.StringData = map[string]string{"extra": "x"}
		refused(g, user.Update(ctx, s), "data")
	})
	t.Run("a user removing the managed-by label is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		s := get(g, "key")
		delete(s.Labels, keycapv1alpha1.LabelManagedBy)
		refused(g, user.Update(ctx, s), "metadata.labels")
	})
	t.Run("a user adding an unrelated annotation is allowed", func(t *testing.T) {
		g := gomega.NewWithT(t)
		s := get(g, "key")
		s.Annotations = map[string]string{"example.com/reloaded-at": "now"}
		g.Expect(user.Update(ctx, s)).To(gomega.Succeed())
	})
	t.Run("a user editing a Secret keycap does not manage is allowed", func(t *testing.T) {
		g := gomega.NewWithT(t)
		mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own"}, Data: map[string][]byte{"a": []byte("1")}})
		s := get(g, "own")
		s.Data["a"] = []byte("2")
		g.Expect(user.Update(ctx, s)).To(gomega.Succeed())
	})
	t.Run("the operator editing a managed Secret's data is allowed", func(t *testing.T) {
		g := gomega.NewWithT(t)
		s := &corev1.Secret{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "key"}, s)).To(gomega.Succeed())
		s.Data[keycapv1alpha1.ApiKeySecretKey] = []byte("rotated-by-keycap")
		g.Expect(k8sClient.Update(ctx, s)).To(gomega.Succeed())
		g.Expect(get(g, "key").Data[keycapv1alpha1.ApiKeySecretKey]).To(gomega.Equal([]byte("rotated-by-keycap")))
	})
	t.Run("a user deleting a managed Secret is allowed", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Expect(user.Delete(ctx, get(g, "key"))).To(gomega.Succeed())
	})
	t.Run("Secrets in the operator's namespace are not guarded", func(t *testing.T) {
		g := gomega.NewWithT(t)
		// The operator must always be able to repair its own Secrets (the webhook's certificate
		// lives there), so the namespaceSelector leaves the namespace out.
		internal := managedSecret(operatorNS, "internal-"+ns)
		mustCreate(t, internal)
		t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), internal) })
		s := &corev1.Secret{}
		g.Expect(user.Get(ctx, client.ObjectKeyFromObject(internal), s)).To(gomega.Succeed())
		s.Data["x"] = []byte("y")
		g.Expect(user.Update(ctx, s)).To(gomega.Succeed())
	})
}

// TestTamperGuardRefusesPlantedSecrets: a tenant who may create Secrets cannot plant one that
// claims to be keycap's (issue: a planted Secret was adopted, with a key and lifecycle
// annotations of the tenant's choosing), neither by creating it nor by turning her own Secret
// into one; the operator can.
func TestTamperGuardRefusesPlantedSecrets(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	user := userClient(t, "mallory", ns)
	owner := newApiKey(ns, "victim")
	mustCreate(t, owner)
	ownerRef := metav1.OwnerReference{APIVersion: keycapv1alpha1.GroupVersion.String(), Kind: keycapv1alpha1.KindApiKey,
		Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}
	planted := func(name string, change func(*corev1.Secret)) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Data: map[string][]byte{keycapv1alpha1.ApiKeySecretKey: []byte("chosen-by-mallory")}}
		change(s)
		return s
	}
	claims := map[string]func(*corev1.Secret){
		"labelled managed-by keycap": func(s *corev1.Secret) {
			s.Labels = map[string]string{keycapv1alpha1.LabelManagedBy: keycapv1alpha1.ManagedByValue}
		},
		"with keycap's lifecycle annotations": func(s *corev1.Secret) {
			s.Annotations = map[string]string{"keycap.dev/issued-at": "2099-01-01T00:00:00Z", "keycap.dev/previous-digest": "00"}
		},
		"with a keycap.dev label": func(s *corev1.Secret) {
			s.Labels = map[string]string{keycapv1alpha1.LabelKind: keycapv1alpha1.KindApiKey}
		},
		"owner-referenced to an apikey": func(s *corev1.Secret) {
			s.OwnerReferences = []metav1.OwnerReference{ownerRef}
		},
	}
	for what, claim := range claims {
		t.Run("a user creating a Secret "+what+" is refused", func(t *testing.T) {
			g := gomega.NewWithT(t)
			err := user.Create(ctx, planted("planted", claim))
			g.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "want 403, got %v", err)
			g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("claims to be managed by keycap")))
		})
		t.Run("a user turning her own Secret into one "+what+" is refused", func(t *testing.T) {
			g := gomega.NewWithT(t)
			name := "own-" + strings.ReplaceAll(strings.ReplaceAll(what, " ", "-"), "'", "")
			g.Expect(user.Create(ctx, planted(name, func(*corev1.Secret) {}))).To(gomega.Succeed())
			s := &corev1.Secret{}
			g.Expect(user.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)).To(gomega.Succeed())
			claim(s)
			err := user.Update(ctx, s)
			g.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "want 403, got %v", err)
			g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("would claim to be managed by keycap")))
		})
		t.Run("the operator creating a Secret "+what+" is allowed", func(t *testing.T) {
			g := gomega.NewWithT(t)
			name := "by-operator-" + strings.ReplaceAll(strings.ReplaceAll(what, " ", "-"), "'", "")
			g.Expect(k8sClient.Create(ctx, planted(name, claim))).To(gomega.Succeed())
		})
	}
	t.Run("a user creating an ordinary Secret is allowed", func(t *testing.T) {
		g := gomega.NewWithT(t)
		g.Expect(user.Create(ctx, planted("ordinary", func(s *corev1.Secret) {
			s.Labels = map[string]string{"app.kubernetes.io/managed-by": "helm"}
			s.Annotations = map[string]string{"example.com/keycap.dev": "not keycap's prefix"}
		}))).To(gomega.Succeed())
	})
	t.Run("a user adding a keycap ownerReference to a managed Secret is refused", func(t *testing.T) {
		g := gomega.NewWithT(t)
		mustCreate(t, managedSecret(ns, "managed"))
		s := &corev1.Secret{}
		g.Expect(user.Get(ctx, client.ObjectKey{Namespace: ns, Name: "managed"}, s)).To(gomega.Succeed())
		s.OwnerReferences = []metav1.OwnerReference{ownerRef}
		err := user.Update(ctx, s)
		g.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "want 403, got %v", err)
		g.Expect(err).To(gomega.MatchError(gomega.ContainSubstring("only the operator may change its metadata.ownerReferences")))
	})
}

// TestOperatorIdentity: without OperatorUsernames the operator is this process and the in-cluster
// ServiceAccount config/rbac gives it; nobody else.
func TestOperatorIdentity(t *testing.T) {
	g := gomega.NewWithT(t)
	g.Expect(registered.Operators).To(gomega.ConsistOf("admin", "system:serviceaccount:keycap-system:keycap-manager"))
}
