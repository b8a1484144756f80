package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/registry"
)

// ssoKind resolves KIND for the SSO commands: only ApiKeys and AgentKeys log into a portal.
func ssoKind(command, s string) (*registry.Kind, error) {
	k, ok := registry.Lookup(s)
	if !ok {
		return nil, usagef("unknown kind %q: %s works for apikey and agentkey", s, command)
	}
	if k.Name != keycapv1alpha1.KindApiKey && k.Name != keycapv1alpha1.KindAgentKey {
		return nil, usagef("%s works for ApiKeys and AgentKeys, not %s", command, k.Name)
	}
	return k, nil
}

// ssoNotFound says which object is missing.
func ssoNotFound(err error, k *registry.Kind, namespace, name string) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %s/%s not found", k.Name, namespace, name)
	}
	return err
}

// runLogout ends every SSO session of a credential ("log out everywhere") by setting its
// spec.sessions.notBefore to now. Sessions logged in afterwards work.
func runLogout(e *env, args []string) error {
	fs := newFlagSet("logout", e)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("logout needs KIND and NAME")
	}
	k, err := ssoKind("logout", pos[0])
	if err != nil {
		return err
	}
	c, namespace, err := e.connect()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	obj := k.New()
	obj.SetNamespace(namespace)
	obj.SetName(pos[1])
	now := time.Now().UTC().Format(time.RFC3339)
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"sessions":{"notBefore":"`+now+`"}}}`))
	if err := c.Patch(ctx, obj, patch); err != nil {
		return ssoNotFound(err, k, namespace, pos[1])
	}
	fmt.Fprintf(e.stdout, "%s %s/%s: every SSO session logged in until %s has ended.\n", k.Name, namespace, pos[1], now)
	return nil
}

// runLoginLink prints a single-use SSO login link for a credential: it reads the key from the
// credential's Secret and asks the data plane for a link (POST /auth/login-links with the key in
// x-api-key), so the key itself never appears in a URL.
func runLoginLink(e *env, args []string) error {
	fs := newFlagSet("login-link", e)
	base := fs.String("url", "http://127.0.0.1:9002", "base URL of keycap's data plane HTTP port")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("login-link needs KIND and NAME")
	}
	k, err := ssoKind("login-link", pos[0])
	if err != nil {
		return err
	}
	c, namespace, err := e.connect()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	obj := k.New()
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: pos[1]}, obj); err != nil {
		return ssoNotFound(err, k, namespace, pos[1])
	}
	secretName := keycapv1alpha1.SecretNameOf(obj)
	var secret corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: secretName}, &secret); err != nil {
		return fmt.Errorf("reading Secret %s/%s: %w", namespace, secretName, err)
	}
	key := strings.TrimSpace(string(secret.Data[k.SecretDataKey]))
	if key == "" {
		return fmt.Errorf("the Secret %s/%s holds no %s (a bring-your-own keyHash credential?): "+
			"POST %s/auth/login-links with your key in the x-api-key header", namespace, secretName, k.SecretDataKey, strings.TrimSuffix(*base, "/"))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(*base, "/")+"/auth/login-links", bytes.NewReader(nil))
	if err != nil {
		return usagef("--url: %v", err)
	}
	req.Header.Set("x-api-key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("asking the data plane for a login link: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the data plane refused a login link (%s): %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var answer struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expiresAt"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || answer.URL == "" {
		return fmt.Errorf("unexpected answer from the data plane: %s", strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(e.stdout, answer.URL)
	fmt.Fprintf(e.stderr, "single use, valid until %s\n", answer.ExpiresAt.Local().Format(time.RFC3339))
	return nil
}
