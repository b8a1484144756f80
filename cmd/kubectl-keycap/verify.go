package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keycap-dev/keycap/internal/keys"
)

// maxKeyBytes bounds what verify and activate read from stdin.
const maxKeyBytes = 16 << 10

func runVerify(e *env, args []string) error {
	fs := newFlagSet("verify", e)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("verify needs the key, or - to read it from stdin (recommended: echo \"$KEY\" | kubectl keycap verify -)")
	}
	key, err := readSecretArg(e, pos[0])
	if err != nil {
		return err
	}
	invalid := func(format string, args ...any) error {
		fmt.Fprintf(e.stdout, "invalid: "+format+"\n", args...)
		return exitError{exitFailure}
	}
	// A keycap-shaped key with a wrong checksum is a typo or a forgery: refuse it before any lookup,
	// as the data plane does. A key of another shape may be a bring-your-own key (spec.keyHash).
	checked := keys.Check(key)
	switch {
	case errors.Is(checked, keys.ErrChecksum):
		return invalid("malformed: the key has keycap's format but its checksum does not match (mistyped or truncated?)")
	case looksLikeJWT(key):
		return invalid("this is a JWT (an AppToken); verify checks opaque keys (ApiKey, AgentKey, License) only; " +
			"an AppToken is verified by its signature against keycap's /.well-known/jwks.json")
	}

	c, namespace, err := e.connect()
	if err != nil {
		return err
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
	opaque := slices.DeleteFunc(slices.Clone(kinds), func(k *kind) bool { return !k.opaque })
	creds, err := listCredentials(ctx, c, opaque, opts...)
	if err != nil {
		return err
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
		return invalid("no credential in %s knows this key%s%s", where, shape, hint)
	}
	valid := false
	for i, m := range matches {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		problems := m.problems(digest, time.Now())
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		line := func(name, value string) { fmt.Fprintf(tw, "%s:\t%s\n", name, value) }
		line("Kind", m.kind.name)
		line("Namespace", m.obj.GetNamespace())
		line("Name", m.obj.GetName())
		line("Key ID", keys.KeyID(digest))
		if m.digests[0] == digest {
			line("Key", "current")
		} else {
			line("Key", "previous (valid until "+orNone(formatTime(m.previousValidUntil))+")")
		}
		ready := "Unknown"
		if cond := m.ready(); cond != nil {
			ready = fmt.Sprintf("%s (%s)", cond.Status, cond.Reason)
		}
		line("Ready", ready)
		line("Disabled", fmt.Sprint(m.disabled))
		expired := "no expiry"
		if m.status.ExpiresAt != nil {
			expired = fmt.Sprintf("%t (expires at %s)", !time.Now().Before(m.status.ExpiresAt.Time), formatTime(m.status.ExpiresAt))
		}
		line("Expired", expired)
		if len(problems) == 0 {
			line("Result", "valid")
			valid = true
		} else {
			line("Result", "invalid: "+strings.Join(problems, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !valid {
		return exitError{exitFailure}
	}
	return nil
}

// problems lists why the key with digest, held by c, is not valid now; none means valid.
func (c credential) problems(digest string, now time.Time) []string {
	var out []string
	if c.disabled {
		out = append(out, "disabled")
	}
	if c.status.ExpiresAt != nil && !now.Before(c.status.ExpiresAt.Time) {
		out = append(out, "expired")
	}
	if c.digests[0] != digest && (c.previousValidUntil == nil || !now.Before(c.previousValidUntil.Time)) {
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

// looksLikeJWT reports whether s has the shape of a compact JWS.
func looksLikeJWT(s string) bool {
	return strings.HasPrefix(s, "eyJ") && strings.Count(s, ".") == 2
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
