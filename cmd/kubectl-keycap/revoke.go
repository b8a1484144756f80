package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/lifecycle"
)

func runRevoke(e *env, args []string) error {
	fs := newFlagSet("revoke", e)
	del := fs.Bool("delete", false, "delete the credential (and with it its Secret) instead of disabling it")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("revoke needs KIND and NAME")
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
	obj := k.New()
	obj.SetNamespace(namespace)
	obj.SetName(pos[1])
	if *del {
		if err := c.Delete(ctx, obj); err != nil {
			return notFound(err, k, namespace, pos[1])
		}
		fmt.Fprintf(e.stdout, "%s %s/%s deleted; its Secret is garbage-collected with it.\n", k.Name, namespace, pos[1])
		return nil
	}
	// A merge patch touches only spec.disabled, whatever else changes concurrently.
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"disabled":true}}`))
	if err := c.Patch(ctx, obj, patch); err != nil {
		return notFound(err, k, namespace, pos[1])
	}
	fmt.Fprintf(e.stdout, "%s %s/%s disabled: the data plane refuses it from now on. Its Secret is kept; "+
		"re-enable it with: kubectl patch %s %s -n %s --type=merge -p '{\"spec\":{\"disabled\":false}}'\n",
		k.Name, namespace, pos[1], strings.ToLower(k.Name), pos[1], namespace)
	return nil
}

func runRotate(e *env, args []string) error {
	fs := newFlagSet("rotate", e)
	noGrace := fs.Bool("no-grace", false, "rotate a key that has no grace period, so that its current key stops working at once")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("rotate needs KIND (apikey or agentkey) and NAME")
	}
	if err := e.checkOutput(); err != nil {
		return err
	}
	k, err := lookupKind(pos[0])
	if err != nil {
		return err
	}
	if !k.OpaqueKey {
		return usagef("%s cannot be rotated by request; only apikey and agentkey can", k.Name)
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
	before := view(obj)
	if keyHash(obj) != "" {
		return fmt.Errorf("%s %s/%s has a bring-your-own keyHash: keycap holds no key to rotate; create a new key and change spec.keyHash", k.Name, namespace, pos[1])
	}
	if before.disabled {
		return fmt.Errorf("%s %s/%s is disabled; enable it before rotating", k.Name, namespace, pos[1])
	}
	// The controller keeps the previous key for spec.rotation.gracePeriod; without one, a rotation
	// cuts off every client still holding the current key, so that takes an explicit --no-grace.
	if rotationGrace(obj) == 0 && !*noGrace {
		return fmt.Errorf("%s %s/%s has no grace period (spec.rotation.gracePeriod): rotating it now stops its current key at once.\n"+
			"Run again with --no-grace to do that, or first give it a rotation policy with a grace period, e.g.\n"+
			"  kubectl patch %s %s -n %s --type=merge -p '{\"spec\":{\"rotation\":{\"every\":\"2160h\",\"gracePeriod\":\"24h\"}}}'",
			k.Name, namespace, pos[1], strings.ToLower(k.Name), pos[1], namespace)
	}
	// The value only has to differ from the last request the controller observed.
	value := time.Now().UTC().Format(time.RFC3339)
	if obj.GetAnnotations()[keycapv1alpha1.AnnotationRotate] == value {
		value = time.Now().UTC().Format(time.RFC3339Nano)
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{keycapv1alpha1.AnnotationRotate: value}}})
	if err != nil {
		return err
	}
	if err := c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, body)); err != nil {
		if apierrors.IsNotFound(err) {
			return notFound(err, k, namespace, pos[1])
		}
		return fmt.Errorf("requesting the rotation of %s %s/%s: %w", k.Name, namespace, pos[1], err)
	}
	oldKeyID := before.status.KeyID
	issued, err := waitForKey(ctx, c, obj, e.timeout, func(cr credential) bool { return cr.status.KeyID != oldKeyID })
	if err != nil {
		return fmt.Errorf("rotation requested, but no new key: %w", err)
	}
	if err := e.printKey(issued, "rotated"); err != nil {
		return err
	}
	if issued.previousValidUntil != nil {
		fmt.Fprintf(e.stderr, "The previous key (%s) keeps working until %s.\n", oldKeyID, formatTime(issued.previousValidUntil))
	} else {
		fmt.Fprintf(e.stderr, "The previous key (%s) stopped working.\n", oldKeyID)
	}
	return nil
}

// rotationGrace returns spec.rotation.gracePeriod of an opaque-key kind; zero without one.
func rotationGrace(obj keycapv1alpha1.Credential) time.Duration {
	o, ok := obj.(keycapv1alpha1.OpaqueKeyCredential)
	if !ok {
		return 0
	}
	return lifecycle.GracePeriod(o.GetOpaqueKeySpec().Rotation)
}

// keyHash returns spec.keyHash of an opaque-key kind.
func keyHash(obj keycapv1alpha1.Credential) string {
	if o, ok := obj.(keycapv1alpha1.OpaqueKeyCredential); ok {
		return o.GetOpaqueKeySpec().KeyHash
	}
	return ""
}
