package controllers

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/internal/testenv"
)

// How long a test waits for the controllers to act on a change. Generous: the machine is shared.
const reconcileTimeout = 30 * time.Second

var (
	testEnv *envtest.Environment
	cfg     *rest.Config
	// k8sClient reads straight from the apiserver (no cache), so tests see what is stored.
	k8sClient client.Client
	// fakeClock is the clock of every manager the suite starts.
	fakeClock *clocktesting.FakeClock
	// stopManager stops the running manager and waits for it to finish.
	stopManager func()
	namespaceN  atomic.Int32
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapLevel())))
	var (
		stopEnv func()
		err     error
	)
	if testEnv, k8sClient, stopEnv, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopEnv()
	cfg = testEnv.Config
	fakeClock = clocktesting.NewFakeClock(time.Now().Truncate(time.Second))
	if stopManager, err = startManager(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	stopManager()
	return code
}

// zapLevel is quiet unless KEYCAP_TEST_LOG is set.
func zapLevel() zapcore.Level {
	if os.Getenv("KEYCAP_TEST_LOG") != "" {
		return -2
	}
	return zapcore.PanicLevel
}

// startManager starts the real manager with the controllers and the fake clock.
func startManager() (stop func(), err error) {
	return startManagerWith(Options{Clock: fakeClock, OperatorNamespace: "keycap-system"})
}

// startManagerWith starts the real manager with the controllers and opts, and the cache as
// main.go configures it for them.
func startManagerWith(opts Options) (stop func(), err error) {
	return testenv.StartManager(cfg, func(mgr ctrl.Manager) error { return SetupWithManager(mgr, opts) },
		func(o *ctrl.Options) {
			o.Cache = CacheOptions()
			o.Cache.NewInformer = recordInformer
		})
}

// cachedTypes records the type of every informer the controllers' cache started (a Go type, and
// for metadata-only informers the kind): what the operator's memory holds.
var cachedTypes sync.Map

func recordInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	name := fmt.Sprintf("%T", obj)
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		name += " " + m.Kind
	}
	cachedTypes.Store(name, true)
	return toolscache.NewSharedIndexInformer(lw, obj, resync, indexers)
}

// newNamespace creates a namespace of its own for a test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("t%d-%d", time.Now().Unix()%100000, namespaceN.Add(1))}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// failureReasons are the Ready reasons of a failed reconcile, which leaves observedGeneration.
var failureReasons = map[string]bool{
	keycapv1alpha1.ReasonSecretConflict: true, keycapv1alpha1.ReasonError: true, keycapv1alpha1.ReasonInvalidSpec: true,
	keycapv1alpha1.ReasonDuplicateKey: true, keycapv1alpha1.ReasonSigningKeyUnavailable: true,
}

// getReady waits until obj (name and namespace set) has a Ready condition with reason for its
// current generation and observedGeneration caught up, and returns it fresh in obj.
func getReady(t *testing.T, g *gomega.WithT, obj client.Object, reason string) {
	t.Helper()
	key := client.ObjectKeyFromObject(obj)
	g.Eventually(func(g gomega.Gomega) {
		g.Expect(k8sClient.Get(context.Background(), key, obj)).To(gomega.Succeed())
		status := obj.(keycapv1alpha1.Credential).GetCredentialStatus()
		cond := meta.FindStatusCondition(status.Conditions, keycapv1alpha1.ConditionReady)
		g.Expect(cond).NotTo(gomega.BeNil())
		g.Expect(cond.Reason).To(gomega.Equal(reason), "Ready message: %s", cond.Message)
		g.Expect(cond.ObservedGeneration).To(gomega.Equal(obj.GetGeneration()))
		if !failureReasons[reason] {
			g.Expect(status.ObservedGeneration).To(gomega.Equal(obj.GetGeneration()))
		}
	}).WithTimeout(reconcileTimeout).Should(gomega.Succeed())
}

// getSecret reads a Secret.
func getSecret(g gomega.Gomega, namespace, name string) *corev1.Secret {
	var s corev1.Secret
	g.Expect(k8sClient.Get(context.Background(), types.NamespacedName{Namespace: namespace, Name: name}, &s)).To(gomega.Succeed())
	return &s
}

// touchSpec changes the description of a credential and returns once stored: the generation
// moves, so getReady afterwards proves a reconcile ran after the change.
func touchSpec(t *testing.T, obj client.Object) {
	t.Helper()
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	obj.(keycapv1alpha1.Credential).GetCredentialSpec().Description = fmt.Sprintf("touched %d", time.Now().UnixNano())
	if err := k8sClient.Patch(context.Background(), obj, patch); err != nil {
		t.Fatal(err)
	}
}

// patch changes obj through mutate with a merge patch (no resourceVersion: the controllers write
// the status concurrently) and leaves the stored object in obj.
func patch(t *testing.T, obj client.Object, mutate func()) {
	t.Helper()
	p := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	mutate()
	if err := k8sClient.Patch(context.Background(), obj, p); err != nil {
		t.Fatal(err)
	}
}

// eventReasons lists the reasons of the Events about the object named name in namespace.
func eventReasons(g gomega.Gomega, namespace, name string) []string {
	var list eventsv1.EventList
	g.Expect(k8sClient.List(context.Background(), &list, client.InNamespace(namespace))).To(gomega.Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}
