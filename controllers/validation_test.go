package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/keys"
)

// TestBadSpecsAreRefusedByTheAPIServer checks that the CRD's OpenAPI schema and CEL rules refuse
// each bad spec with the field and the reason named, without the webhook.
func TestBadSpecsAreRefusedByTheAPIServer(t *testing.T) {
	ns := newNamespace(t)
	goodHash := "sha256:" + keys.Digest("k")
	hour := metav1.Duration{Duration: time.Hour}
	at := metav1.NewTime(time.Now().Add(time.Hour))

	apiKeyCases := map[string]refusedCase[*keycapv1alpha1.ApiKey]{
		"expiresAt and duration together": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.ExpiresAt, a.Spec.Duration = &at, &hour },
			want:   []string{"spec", "set at most one of expiresAt and duration"},
		},
		"a grace period as long as the rotation interval": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.Rotation = rotationEvery(time.Hour, time.Hour) },
			want:   []string{"spec.rotation", "gracePeriod must be shorter than every"},
		},
		"a rotation interval under a minute": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.Rotation = rotationEvery(30*time.Second, 0) },
			want:   []string{"spec.rotation.every", "every must be at least 1m"},
		},
		"a negative grace period": {
			create: func(a *keycapv1alpha1.ApiKey) {
				a.Spec.Rotation = rotationEvery(time.Hour, 0)
				a.Spec.Rotation.GracePeriod = &metav1.Duration{Duration: -time.Minute}
			},
			want: []string{"spec.rotation.gracePeriod", "must not be negative"},
		},
		"a keyHash that is not sha256:<64 hex>": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.KeyHash = "md5:abc" },
			want:   []string{"spec.keyHash"},
		},
		"a keyHash with uppercase hex": {
			create: func(a *keycapv1alpha1.ApiKey) {
				a.Spec.KeyHash = strings.ToUpper(goodHash[:7]) + strings.ToUpper(goodHash[7:])
			},
			want: []string{"spec.keyHash"},
		},
		"a plaintext key pasted as keyHash": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.KeyHash, _ = keys.Generate("kc") },
			want:   []string{"spec.keyHash"},
		},
		"rotation with keyHash": {
			create: func(a *keycapv1alpha1.ApiKey) {
				a.Spec.KeyHash, a.Spec.Rotation = goodHash, rotationEvery(time.Hour, 0)
			},
			want: []string{"spec", "rotation cannot be used with keyHash"},
		},
		"a prefix with uppercase letters": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.Prefix = "Acme" },
			want:   []string{"spec.prefix"},
		},
		"a prefix of one character": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.Prefix = "a" },
			want:   []string{"spec.prefix"},
		},
		"a prefix with an underscore, which would break the key format": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.Prefix = "ac_me" },
			want:   []string{"spec.prefix"},
		},
		"a secretName that is not a DNS subdomain": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.SecretName = "Not_A_Name" },
			want:   []string{"spec.secretName"},
		},
		"a scope with a space": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.Scopes = []string{"videos:read", "bad scope"} },
			want:   []string{"spec.scopes[1]"},
		},
		"changing the prefix": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.Prefix = "acme" },
			update: func(a *keycapv1alpha1.ApiKey) { a.Spec.Prefix = "other" },
			want:   []string{"spec", "prefix is immutable"},
		},
		"removing the prefix": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.Prefix = "acme" },
			update: func(a *keycapv1alpha1.ApiKey) { a.Spec.Prefix = "" },
			want:   []string{"spec", "prefix is immutable"},
		},
		"changing the secretName": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.SecretName = "one" },
			update: func(a *keycapv1alpha1.ApiKey) { a.Spec.SecretName = "two" },
			want:   []string{"spec.secretName", "secretName is immutable"},
		},
		"adding a keyHash to a generated key": {
			create: func(a *keycapv1alpha1.ApiKey) {},
			update: func(a *keycapv1alpha1.ApiKey) { a.Spec.KeyHash = goodHash },
			want:   []string{"spec", "keyHash cannot be added or removed"},
		},
		"removing the keyHash": {
			create: func(a *keycapv1alpha1.ApiKey) { a.Spec.KeyHash = goodHash },
			update: func(a *keycapv1alpha1.ApiKey) { a.Spec.KeyHash = "" },
			want:   []string{"spec", "keyHash cannot be added or removed"},
		},
	}
	n := 0
	for name, tc := range apiKeyCases {
		t.Run("ApiKey: "+name, func(t *testing.T) {
			n++
			expectRefused(t, newApiKey(ns, fmt.Sprintf("bad-%d", n)), tc)
		})
	}

	agentKeyCases := map[string]refusedCase[*keycapv1alpha1.AgentKey]{
		"no parent": {
			create: func(a *keycapv1alpha1.AgentKey) { a.Spec.APIKeyRef.Name = "" },
			want:   []string{"spec.apiKeyRef.name"},
		},
		"no agent": {
			create: func(a *keycapv1alpha1.AgentKey) { a.Spec.Agent = "" },
			want:   []string{"spec.agent"},
		},
		"changing the parent": {
			create: func(a *keycapv1alpha1.AgentKey) {},
			update: func(a *keycapv1alpha1.AgentKey) { a.Spec.APIKeyRef.Name = "another" },
			want:   []string{"spec.apiKeyRef", "apiKeyRef is immutable"},
		},
		"expiresAt and duration together": {
			create: func(a *keycapv1alpha1.AgentKey) { a.Spec.ExpiresAt, a.Spec.Duration = &at, &hour },
			want:   []string{"spec", "set at most one of expiresAt and duration"},
		},
		"rotation with keyHash": {
			create: func(a *keycapv1alpha1.AgentKey) {
				a.Spec.KeyHash, a.Spec.Rotation = goodHash, rotationEvery(time.Hour, 0)
			},
			want: []string{"spec", "rotation cannot be used with keyHash"},
		},
	}
	for name, tc := range agentKeyCases {
		t.Run("AgentKey: "+name, func(t *testing.T) {
			n++
			expectRefused(t, newAgentKey(ns, fmt.Sprintf("bad-agent-%d", n), "parent", "bot"), tc)
		})
	}
}

// refusedCase is a bad spec of a T: create is the object to create; update, when set, changes it
// after a valid create.
type refusedCase[T client.Object] struct {
	create func(T)
	update func(T)
	// want are the substrings the error must hold: the field path and the reason.
	want []string
}

// expectRefused creates obj changed by tc.create and, when tc.update is set, updates it with a
// merge patch (without resourceVersion: the controller may write the status meanwhile) after a
// create that must succeed. The last write must be refused as Invalid with each of tc.want in the
// error.
func expectRefused[T client.Object](t *testing.T, obj T, tc refusedCase[T]) {
	t.Helper()
	g := gomega.NewWithT(t)
	ctx := context.Background()
	tc.create(obj)
	err := k8sClient.Create(ctx, obj)
	if tc.update != nil {
		g.Expect(err).NotTo(gomega.HaveOccurred())
		base := client.MergeFrom(obj.DeepCopyObject().(client.Object))
		tc.update(obj)
		err = k8sClient.Patch(ctx, obj, base)
	}
	g.Expect(err).To(gomega.HaveOccurred())
	g.Expect(apierrors.IsInvalid(err)).To(gomega.BeTrue(), "want Invalid, got %v", err)
	for _, w := range tc.want {
		g.Expect(err.Error()).To(gomega.ContainSubstring(w))
	}
}
