package webhook

import (
	"context"
	"testing"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// userClient returns a client for a new, ordinary user who may get, update and delete Secrets in
// the given namespaces (a namespace admin, say).
func userClient(t *testing.T, name string, namespaces ...string) client.Client {
	t.Helper()
	ctx := context.Background()
	user, err := env.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secret-editor"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "update", "patch", "delete"}}}}
		binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secret-editor-" + name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "secret-editor"},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: name}}}
		if err := k8sClient.Create(ctx, role); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		if err := k8sClient.Create(ctx, binding); err != nil {
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
	g := gomega.NewWithT(t)
	ns := newNamespace(t)
	user := userClient(t, "alice", ns, operatorNS)
	g.Expect(registered.Operators).To(gomega.ContainElement("admin"), "the suite's manager runs as envtest's admin")

	// get reads the Secret as the user sees it.
	get := func(name string) *corev1.Secret {
		s := &corev1.Secret{}
		g.Expect(user.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)).To(gomega.Succeed())
		return s
	}
	refused := func(err error, what string) {
		t.Helper()
		g.Expect(apierrors.IsForbidden(err)).To(gomega.BeTrue(), "want 403, got %v", err)
		g.Expect(err.Error()).To(gomega.ContainSubstring("is managed by keycap: only the operator may change its " + what))
	}

	mustCreate(t, managedSecret(ns, "key"))

	t.Run("a user editing a managed Secret's data is refused", func(t *testing.T) {
		s := get("key")
		s.Data[keycapv1alpha1.ApiKeySecretKey] = []byte("chosen-by-alice")
		refused(user.Update(ctx, s), "data")
		s = get("key")
		s.StringData = map[string]string{"extra": "x"}
		refused(user.Update(ctx, s), "data")
	})
	t.Run("a user removing the managed-by label is refused", func(t *testing.T) {
		s := get("key")
		delete(s.Labels, keycapv1alpha1.LabelManagedBy)
		refused(user.Update(ctx, s), "metadata.labels")
	})
	t.Run("a user adding an unrelated annotation is allowed", func(t *testing.T) {
		s := get("key")
		s.Annotations = map[string]string{"example.com/reloaded-at": "now"}
		g.Expect(user.Update(ctx, s)).To(gomega.Succeed())
	})
	t.Run("a user editing a Secret keycap does not manage is allowed", func(t *testing.T) {
		mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own"}, Data: map[string][]byte{"a": []byte("1")}})
		s := get("own")
		s.Data["a"] = []byte("2")
		g.Expect(user.Update(ctx, s)).To(gomega.Succeed())
	})
	t.Run("the operator editing a managed Secret's data is allowed", func(t *testing.T) {
		s := &corev1.Secret{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "key"}, s)).To(gomega.Succeed())
		s.Data[keycapv1alpha1.ApiKeySecretKey] = []byte("rotated-by-keycap")
		g.Expect(k8sClient.Update(ctx, s)).To(gomega.Succeed())
		g.Expect(get("key").Data[keycapv1alpha1.ApiKeySecretKey]).To(gomega.Equal([]byte("rotated-by-keycap")))
	})
	t.Run("a user deleting a managed Secret is allowed", func(t *testing.T) {
		g.Expect(user.Delete(ctx, get("key"))).To(gomega.Succeed())
	})
	t.Run("Secrets in the operator's namespace are not guarded", func(t *testing.T) {
		// The operator must always be able to repair its own Secrets (the webhook's certificate
		// lives there), so the namespaceSelector leaves the namespace out.
		mustCreate(t, managedSecret(operatorNS, "internal"))
		s := &corev1.Secret{}
		g.Expect(user.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "internal"}, s)).To(gomega.Succeed())
		s.Data["x"] = []byte("y")
		g.Expect(user.Update(ctx, s)).To(gomega.Succeed())
	})
}
