package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/keys"
	"github.com/keycap-dev/keycap/internal/signing"
)

// maxKeyBytes bounds what verify and activate read from stdin.
const maxKeyBytes = 16 << 10

// Reasons of a verify answer that matched no credential; the data plane's codes for the same.
const (
	verifyMalformed = "MALFORMED"
	verifyNotFound  = "NOT_FOUND"
)

// verifyResult is verify's answer; -o json prints it as it is.
type verifyResult struct {
	// Valid is the answer: the data plane would accept the key (or token) now.
	Valid bool `json:"valid"`
	// Reason and Message say why, when no credential holds the key.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Credentials are those that hold the key (one, unless two share a digest).
	Credentials []verifiedCredential `json:"credentials"`
}

// verifiedCredential is one credential holding the verified key, and what makes it (in)valid.
type verifiedCredential struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// KeyID is the ID of the verified key (for an AppToken, the AppToken's).
	KeyID string `json:"keyID"`
	// Key is "current" or "previous" (a rotated key in its grace period); opaque keys only.
	Key                string `json:"key,omitempty"`
	PreviousValidUntil string `json:"previousValidUntil,omitempty"`
	Ready              string `json:"ready"`
	ReadyReason        string `json:"readyReason,omitempty"`
	Disabled           bool   `json:"disabled"`
	ExpiresAt          string `json:"expiresAt,omitempty"`
	Expired            bool   `json:"expired"`
	// The token's claims, for an AppToken.
	Subject        string   `json:"subject,omitempty"`
	Audiences      []string `json:"audiences,omitempty"`
	Scopes         []string `json:"scopes,omitempty"`
	TokenExpiresAt string   `json:"tokenExpiresAt,omitempty"`
	SigningKeyID   string   `json:"signingKeyID,omitempty"`
	Valid          bool     `json:"valid"`
	// Problems say why the key is not valid; empty when it is.
	Problems []string `json:"problems,omitempty"`
}

func runVerify(e *env, args []string) error {
	fs := newFlagSet("verify", e)
	base := fs.String("url", "http://127.0.0.1:9002", "AppTokens: base URL of keycap's data plane HTTP port, which serves the JWKS")
	audience := fs.String("audience", "", "AppTokens: require the token to be meant for this audience")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("verify needs the key, or - to read it from stdin (recommended: echo \"$KEY\" | kubectl keycap verify -)")
	}
	if err := e.checkOutput(); err != nil {
		return err
	}
	key, err := readSecretArg(e, pos[0])
	if err != nil {
		return err
	}
	var res verifyResult
	if apptoken.LooksLikeJWT(key) {
		res, err = e.verifyToken(key, *base, *audience)
	} else {
		res, err = e.verifyKey(key)
	}
	if err != nil {
		return err
	}
	if err := e.printVerify(res); err != nil {
		return err
	}
	if !res.Valid {
		return exitError{exitFailure}
	}
	return nil
}

// verifyKey judges an opaque key (ApiKey, AgentKey, License) by its digest.
func (e *env) verifyKey(key string) (verifyResult, error) {
	// A keycap-shaped key with a wrong checksum is a typo or a forgery: refuse it before any lookup,
	// as the data plane does. A key of another shape may be a bring-your-own key (spec.keyHash).
	checked := keys.Check(key)
	if errors.Is(checked, keys.ErrChecksum) {
		return verifyResult{Reason: verifyMalformed,
			Message: "malformed: the key has keycap's format but its checksum does not match (mistyped or truncated?)"}, nil
	}
	c, namespace, err := e.connect()
	if err != nil {
		return verifyResult{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	var opts []client.ListOption
	where := "namespace " + namespace
	if e.allNamespaces {
		where = "any namespace"
	} else {
		opts = append(opts, client.InNamespace(namespace))
	}
	digest := keys.Digest(key)
	opaque := slices.DeleteFunc(slices.Clone(kinds), func(k *kind) bool { return !k.FoundByDigest })
	creds, err := listCredentials(ctx, c, opaque, opts...)
	if err != nil {
		return verifyResult{}, err
	}
	matches := slices.DeleteFunc(creds, func(cr credential) bool { return !slices.Contains(cr.digests, digest) })
	if len(matches) == 0 {
		shape := ""
		if checked != nil {
			shape = " (it is not a keycap-format key either; a bring-your-own key is found only through its keyHash)"
		}
		hint := ""
		if !e.allNamespaces {
			hint = "; use -A to search every namespace"
		}
		return verifyResult{Reason: verifyNotFound, Message: fmt.Sprintf("no credential in %s knows this key%s%s", where, shape, hint)}, nil
	}
	now := time.Now()
	res := verifyResult{}
	for _, m := range matches {
		v := m.verified(keys.KeyID(digest), now)
		if m.digests[0] == digest {
			v.Key = "current"
		} else {
			v.Key, v.PreviousValidUntil = "previous", formatTime(m.previousValidUntil)
		}
		v.Problems = m.problems(digest, now)
		v.Valid = len(v.Problems) == 0
		res.Valid = res.Valid || v.Valid
		res.Credentials = append(res.Credentials, v)
	}
	return res, nil
}

// verifyToken judges an AppToken JWT as the data plane does: its signature against the JWKS the
// data plane at base publishes, its issuer, expiry and (if asked) audience; then the AppToken it
// names by key ID must exist in the namespace the token's org claims, and be neither disabled nor
// expired.
func (e *env) verifyToken(token, base, audience string) (verifyResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	issuer, jwks, err := fetchSigningKeys(ctx, base)
	if err != nil {
		return verifyResult{}, err
	}
	verified, err := apptoken.NewVerifier(jwks, apptoken.VerifierOptions{Issuer: issuer}).Verify(token, audience)
	if err != nil {
		// The error names the reason and golang-jwt's explanation, never the token.
		return verifyResult{Reason: string(apptoken.ReasonOf(err)), Message: "the token does not verify: " + err.Error()}, nil
	}
	c, _, err := e.connect()
	if err != nil {
		return verifyResult{}, err
	}
	var list keycapv1alpha1.AppTokenList
	if err := c.List(ctx, &list, client.InNamespace(verified.Org)); err != nil {
		return verifyResult{}, fmt.Errorf("listing AppTokens in namespace %s: %w", verified.Org, explain(err))
	}
	i := slices.IndexFunc(list.Items, func(at keycapv1alpha1.AppToken) bool { return at.Status.KeyID == verified.KeyID })
	if i < 0 {
		return verifyResult{Reason: verifyNotFound, Message: fmt.Sprintf(
			"the token's signature is valid, but no AppToken in namespace %s has key ID %s (deleted?): the data plane refuses it", verified.Org, verified.KeyID)}, nil
	}
	m := view(&list.Items[i])
	now := time.Now()
	v := m.verified(verified.KeyID, now)
	v.Subject, v.Audiences, v.SigningKeyID = verified.Subject, verified.Audiences, verified.SigningKeyID
	v.Scopes = tokenScopes(verified.Scopes, list.Items[i].Spec.Scopes)
	v.TokenExpiresAt = verified.ExpiresAt.UTC().Format(time.RFC3339)
	v.Problems = m.problems("", now)
	v.Valid = len(v.Problems) == 0
	return verifyResult{Valid: v.Valid, Credentials: []verifiedCredential{v}}, nil
}

// tokenScopes are the token's scopes that its AppToken still grants (what the data plane passes
// upstream).
func tokenScopes(token, granted []string) []string {
	var out []string
	for _, s := range token {
		if slices.Contains(granted, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// jwkSet is a JWKS as a key lookup for apptoken.Verifier.
type jwkSet map[string]ed25519.PublicKey

func (s jwkSet) PublicKey(kid string) (ed25519.PublicKey, bool) {
	k, ok := s[kid]
	return k, ok
}

// fetchSigningKeys reads the issuer (from the OpenID configuration) and the JWKS that the data
// plane at base serves.
func fetchSigningKeys(ctx context.Context, base string) (string, jwkSet, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", nil, usagef("--url must be an http:// or https:// URL, e.g. http://127.0.0.1:9002")
	}
	var discovery signing.OpenIDConfiguration
	if err := getJSON(ctx, u.JoinPath(signing.OpenIDConfigurationPath), &discovery); err != nil {
		return "", nil, err
	}
	var set signing.JWKSet
	if err := getJSON(ctx, u.JoinPath(signing.JWKSPath), &set); err != nil {
		return "", nil, err
	}
	keys := jwkSet{}
	for _, k := range set.Keys {
		if pub, err := k.PublicKey(); err == nil && k.KeyID == signing.Thumbprint(pub) {
			keys[k.KeyID] = pub
		}
	}
	if discovery.Issuer == "" || len(keys) == 0 {
		return "", nil, fmt.Errorf("%s serves no issuer or no Ed25519 keys; is it keycap's data plane HTTP port?", base)
	}
	return discovery.Issuer, keys, nil
}

func getJSON(ctx context.Context, u *url.URL, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reading keycap's signing keys (an AppToken is verified against the JWKS of the data plane; --url): %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("reading %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: not the expected JSON: %w", u, err)
	}
	return nil
}

// verified is the part of a verify answer that c's status and spec give.
func (c credential) verified(keyID string, now time.Time) verifiedCredential {
	v := verifiedCredential{
		Kind: c.kind.Name, Namespace: c.obj.GetNamespace(), Name: c.obj.GetName(), KeyID: keyID,
		Ready: "Unknown", Disabled: c.disabled,
	}
	if cond := c.ready(); cond != nil {
		v.Ready, v.ReadyReason = string(cond.Status), cond.Reason
	}
	if c.status.ExpiresAt != nil {
		v.ExpiresAt, v.Expired = formatTime(c.status.ExpiresAt), !now.Before(c.status.ExpiresAt.Time)
	}
	return v
}

// problems lists why the key with digest (opaque kinds; "" for an AppToken's token), held by c, is
// not valid now; none means valid.
func (c credential) problems(digest string, now time.Time) []string {
	var out []string
	if c.disabled {
		out = append(out, "disabled")
	}
	if c.status.ExpiresAt != nil && !now.Before(c.status.ExpiresAt.Time) {
		out = append(out, "expired")
	}
	if c.kind.FoundByDigest && (len(c.digests) == 0 || c.digests[0] != digest) &&
		(c.previousValidUntil == nil || !now.Before(c.previousValidUntil.Time)) {
		out = append(out, "previous key past its grace period")
	}
	cond := c.ready()
	switch {
	case cond == nil:
		out = append(out, "not Ready yet")
	case cond.Status != metav1.ConditionTrue:
		reason := strings.ToLower(cond.Reason)
		if !slices.Contains(out, reason) {
			out = append(out, fmt.Sprintf("not Ready (%s: %s)", cond.Reason, cond.Message))
		}
	}
	return out
}

// printVerify prints res as text or, with -o json, as JSON.
func (e *env) printVerify(res verifyResult) error {
	if e.output == "json" {
		if res.Credentials == nil {
			res.Credentials = []verifiedCredential{}
		}
		return writeJSON(e, res)
	}
	if len(res.Credentials) == 0 {
		_, err := fmt.Fprintf(e.stdout, "invalid: %s\n", res.Message)
		return err
	}
	for i, v := range res.Credentials {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		line := func(name, value string) {
			if value != "" {
				fmt.Fprintf(tw, "%s:\t%s\n", name, value)
			}
		}
		line("Kind", v.Kind)
		line("Namespace", v.Namespace)
		line("Name", v.Name)
		line("Key ID", v.KeyID)
		if v.Key == "previous" {
			line("Key", "previous (valid until "+orNone(v.PreviousValidUntil)+")")
		} else {
			line("Key", v.Key)
		}
		line("Subject", v.Subject)
		line("Audiences", strings.Join(v.Audiences, ","))
		line("Scopes", strings.Join(v.Scopes, ","))
		line("Token expires at", v.TokenExpiresAt)
		line("Signing key ID", v.SigningKeyID)
		ready := v.Ready
		if v.ReadyReason != "" {
			ready += " (" + v.ReadyReason + ")"
		}
		line("Ready", ready)
		line("Disabled", fmt.Sprint(v.Disabled))
		expired := "no expiry"
		if v.ExpiresAt != "" {
			expired = fmt.Sprintf("%t (expires at %s)", v.Expired, v.ExpiresAt)
		}
		line("Expired", expired)
		if v.Valid {
			line("Result", "valid")
		} else {
			line("Result", "invalid: "+strings.Join(v.Problems, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// readSecretArg returns arg, or the first line of stdin when arg is "-". Surrounding whitespace
// (a trailing newline from echo) is dropped.
func readSecretArg(e *env, arg string) (string, error) {
	value := arg
	if arg == "-" {
		line, err := bufio.NewReader(io.LimitReader(e.stdin, maxKeyBytes)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the key from stdin: %w", err)
		}
		value = line
	}
	value = strings.TrimSpace(value)
	if value == "" {
		return "", usagef("the key is empty")
	}
	return value, nil
}
