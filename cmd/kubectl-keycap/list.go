package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

func runList(e *env, args []string) error {
	fs := newFlagSet("list", e)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("list takes at most one KIND")
	}
	if err := e.checkOutput(); err != nil {
		return err
	}
	selected := kinds
	if len(pos) == 1 {
		k, err := lookupKind(pos[0])
		if err != nil {
			return err
		}
		selected = []*kind{k}
	}
	c, namespace, err := e.connect()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	var opts []client.ListOption
	if !e.allNamespaces {
		opts = append(opts, client.InNamespace(namespace))
	}
	creds, err := listCredentials(ctx, c, selected, opts...)
	if err != nil {
		return err
	}
	if e.output == "json" {
		out := make([]credentialJSON, 0, len(creds))
		for _, cr := range creds {
			out = append(out, cr.json())
		}
		return writeJSON(e, out)
	}
	if len(creds) == 0 {
		where := "in namespace " + namespace
		if e.allNamespaces {
			where = "in any namespace"
		}
		fmt.Fprintf(e.stderr, "No keycap credentials found %s.\n", where)
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 3, ' ', 0)
	header := "NAME\tKIND\tREADY\tHINT\tEXPIRES\tLAST-USED\tAGE"
	if e.allNamespaces {
		header = "NAMESPACE\t" + header
	}
	fmt.Fprintln(tw, header)
	for _, cr := range creds {
		row := []string{cr.obj.GetName(), cr.kind.Name, cr.readyColumn(), orNone(cr.status.Hint),
			orNone(formatTime(cr.status.ExpiresAt)), orNone(ago(now, cr.status.LastUsedAt)), age(now, cr.obj.GetCreationTimestamp())}
		if e.allNamespaces {
			row = append([]string{cr.obj.GetNamespace()}, row...)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func runGet(e *env, args []string) error {
	fs := newFlagSet("get", e)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("get needs KIND and NAME")
	}
	if err := e.checkOutput(); err != nil {
		return err
	}
	k, err := lookupKind(pos[0])
	if err != nil {
		return err
	}
	c, namespace, err := e.connect()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	obj, err := getCredential(ctx, c, k, namespace, pos[1])
	if err != nil {
		return err
	}
	cr := view(obj)
	if e.output == "json" {
		return writeJSON(e, cr.json())
	}
	now := time.Now()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	line := func(name, value string) { fmt.Fprintf(tw, "%s:\t%s\n", name, value) }
	line("Name", obj.GetName())
	line("Namespace", obj.GetNamespace())
	line("Kind", k.Name)
	line("Created", formatTime(ptrTime(obj.GetCreationTimestamp()))+" ("+age(now, obj.GetCreationTimestamp())+" ago)")
	for _, d := range cr.details {
		line(d[0], d[1])
	}
	s := cr.status
	line("Key ID", orNone(s.KeyID))
	line("Hint", orNone(s.Hint))
	if k.FoundByDigest {
		line("Digests (SHA-256)", orNone(strings.Join(cr.digests, ", ")))
		if cr.previousValidUntil != nil {
			line("Previous key valid until", formatTime(cr.previousValidUntil))
		}
	}
	line("Secret", orNone(s.SecretName))
	line("Expires at", orNone(formatTime(s.ExpiresAt)))
	line("Last rotated at", orNone(formatTime(s.LastRotatedAt)))
	line("Last used at", orNone(formatTime(s.LastUsedAt)))
	line("Observed generation", fmt.Sprintf("%d (generation %d)", s.ObservedGeneration, obj.GetGeneration()))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "Conditions:")
	if len(s.Conditions) == 0 {
		fmt.Fprintln(e.stdout, "  <none>")
		return nil
	}
	tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tSINCE\tMESSAGE")
	for _, cond := range s.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", cond.Type, cond.Status, cond.Reason, ago(now, &cond.LastTransitionTime), cond.Message)
	}
	return tw.Flush()
}

// listCredentials lists the objects of the kinds ks, in their order.
func listCredentials(ctx context.Context, c client.Client, ks []*kind, opts ...client.ListOption) ([]credential, error) {
	var creds []credential
	for _, k := range ks {
		list := k.NewList()
		if err := c.List(ctx, list, opts...); err != nil {
			return nil, fmt.Errorf("listing %ss: %w", k.Name, explain(err))
		}
		for _, o := range listItems(list) {
			creds = append(creds, view(o))
		}
	}
	return creds, nil
}

// getCredential reads the object of kind k named name in namespace; a NotFound error becomes a
// plain sentence.
func getCredential(ctx context.Context, c client.Client, k *kind, namespace, name string) (keycapv1alpha1.Credential, error) {
	obj := k.New()
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		return nil, notFound(err, k, namespace, name)
	}
	return obj, nil
}

// credentialJSON is the JSON form of a credential in list and get: the object without anything
// secret (the object never holds a key; only its Secret does).
type credentialJSON struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Ready     string `json:"ready"`
	Object    any    `json:"object"`
}

func (c credential) json() credentialJSON {
	return credentialJSON{Kind: c.kind.Name, Namespace: c.obj.GetNamespace(), Name: c.obj.GetName(), Ready: c.readyColumn(), Object: c.obj}
}

func writeJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// notFound turns a NotFound error into a plain sentence.
func notFound(err error, k *kind, namespace, name string) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s %q not found in namespace %s", k.Name, name, namespace)
	}
	return fmt.Errorf("reading %s %s/%s: %w", k.Name, namespace, name, explain(err))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

// age is kubectl's short form of the time since t.
func age(now time.Time, t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// ago is "5m ago" for a past t, "" for nil.
func ago(now time.Time, t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return duration.HumanDuration(now.Sub(t.Time)) + " ago"
}
