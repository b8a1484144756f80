package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/keycap-dev/keycap/config"
)

// fieldManager owns what the local control plane applies (server-side apply).
const fieldManager = "keycap-local-control-plane"

// establishTimeout bounds the wait for the CRDs to be served.
const establishTimeout = time.Minute

var (
	crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	vwcGVR = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
)

// install applies the CRDs, waits until they are Established, creates the operator's namespace,
// and registers (or, without a WebhookURL, removes) the webhook configuration.
func install(ctx context.Context, cfg *rest.Config, opts Options) error {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := installCRDs(ctx, dyn); err != nil {
		return err
	}
	if opts.OperatorNamespace != "" {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.OperatorNamespace}}
		if _, err := core.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", opts.OperatorNamespace, err)
		}
	}
	return installWebhook(ctx, dyn, opts.WebhookURL)
}

func installCRDs(ctx context.Context, dyn dynamic.Interface) error {
	files, err := fs.Glob(config.CRDs, "crd/bases/*.yaml")
	if err != nil {
		return err
	}
	var names []string
	for _, f := range files {
		objs, err := readObjects(config.CRDs, f)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if obj.GetKind() != "CustomResourceDefinition" {
				continue
			}
			if _, err := dyn.Resource(crdGVR).Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
				return fmt.Errorf("installing CRD %s: %w", obj.GetName(), err)
			}
			names = append(names, obj.GetName())
		}
	}
	if len(names) == 0 {
		return errors.New("no CRDs embedded from config/crd/bases; run `make manifests`")
	}
	for _, name := range names {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, establishTimeout, true, func(ctx context.Context) (bool, error) {
			crd, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil //nolint:nilerr // retried until the timeout; the last state is reported below
			}
			return conditionTrue(crd, "Established"), nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not Established: %w", name, err)
		}
	}
	return nil
}

// WebhookConfigurationName is the name the local control plane registers config/webhook's
// ValidatingWebhookConfiguration under. It is not the manifests' name on purpose: the local one
// points at a URL on 127.0.0.1 and the manifests' one at a Service, so with one name applying
// the manifests (`make deploy` on a `make run` cluster) would merge a service into a webhook
// that has a url, which the apiserver refuses. With two names both can exist; each is served by
// the keycap that manages its caBundle.
const WebhookConfigurationName = "keycap-local-validating-webhook"

// installWebhook registers the ValidatingWebhookConfiguration of config/webhook/manifests.yaml
// as WebhookConfigurationName with every webhook's clientConfig pointing at webhookURL + the
// webhook's path, since the apiserver runs on this machine rather than in a cluster with keycap's
// Service. caBundle is not part of what is applied, so the one keycap's certificate manager
// injected stays.
func installWebhook(ctx context.Context, dyn dynamic.Interface, webhookURL string) error {
	objs, err := readObjects(config.Webhook, config.WebhookManifests)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no webhook markers yet
	}
	if err != nil {
		return err
	}
	for _, obj := range objs {
		if obj.GetKind() != "ValidatingWebhookConfiguration" {
			continue
		}
		// A state directory from before WebhookConfigurationName holds the local configuration
		// under the manifests' name; remove it only if this package applied it.
		if err := deleteIfLocal(ctx, dyn, obj.GetName()); err != nil {
			return err
		}
		obj.SetName(WebhookConfigurationName)
		if webhookURL == "" {
			err := dyn.Resource(vwcGVR).Delete(ctx, obj.GetName(), metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("removing webhook configuration %s: %w", obj.GetName(), err)
			}
			continue
		}
		if err := pointAt(obj, webhookURL); err != nil {
			return err
		}
		if _, err := dyn.Resource(vwcGVR).Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
			return fmt.Errorf("registering webhook configuration %s: %w", obj.GetName(), err)
		}
	}
	return nil
}

// deleteIfLocal deletes the ValidatingWebhookConfiguration name if fieldManager (the local
// control plane) applied it, and leaves one that anything else (kubectl, Helm) created alone.
func deleteIfLocal(ctx context.Context, dyn dynamic.Interface, name string) error {
	vwc, err := dyn.Resource(vwcGVR).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading webhook configuration %s: %w", name, err)
	}
	for _, mf := range vwc.GetManagedFields() {
		if mf.Manager == fieldManager && mf.Operation == metav1.ManagedFieldsOperationApply {
			err := dyn.Resource(vwcGVR).Delete(ctx, name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: ptr.To(vwc.GetUID())},
			})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("removing the local webhook configuration of an older version, %s: %w", name, err)
			}
			return nil
		}
	}
	return nil
}

// pointAt replaces each webhook's clientConfig.service with url = base + service.path.
func pointAt(vwc *unstructured.Unstructured, base string) error {
	hooks, _, err := unstructured.NestedSlice(vwc.Object, "webhooks")
	if err != nil {
		return fmt.Errorf("webhook configuration %s: %w", vwc.GetName(), err)
	}
	for i, h := range hooks {
		hook, ok := h.(map[string]any)
		if !ok {
			return fmt.Errorf("webhook configuration %s: webhooks[%d] is not an object", vwc.GetName(), i)
		}
		p, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "path")
		if p == "" {
			p, _, _ = unstructured.NestedString(hook, "clientConfig", "url")
			if p != "" {
				continue // already a URL: leave it
			}
		}
		if err := unstructured.SetNestedField(hook, strings.TrimSuffix(base, "/")+path.Clean("/"+p), "clientConfig", "url"); err != nil {
			return err
		}
		unstructured.RemoveNestedField(hook, "clientConfig", "service")
		unstructured.RemoveNestedField(hook, "clientConfig", "caBundle")
		hooks[i] = hook
	}
	return unstructured.SetNestedSlice(vwc.Object, hooks, "webhooks")
}

// readObjects decodes every YAML document of file into an object, skipping empty documents.
func readObjects(fsys fs.FS, file string) ([]*unstructured.Unstructured, error) {
	data, err := fs.ReadFile(fsys, file)
	if err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decoding %s: %w", file, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

func conditionTrue(obj *unstructured.Unstructured, condType string) bool {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == condType && m["status"] == "True" {
			return true
		}
	}
	return false
}
