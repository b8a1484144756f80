package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// requeueAt returns the Result that runs the reconciler for obj again at deadline (nil: no timed
// work). This is the only way the credential reconcilers schedule timed work.
func (r *credentialReconciler) requeueAt(obj client.Object, deadline *time.Time) ctrl.Result {
	if deadline == nil {
		return ctrl.Result{}
	}
	wait := deadline.Sub(r.Clock.Now())
	if wait <= 0 {
		// Due already (the clock moved during the reconcile): run again at once.
		wait = time.Nanosecond
	}
	if r.deadlines != nil {
		r.deadlines.Store(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}}, *deadline)
	}
	return ctrl.Result{RequeueAfter: wait}
}

// clockQueue is a controller work queue whose delayed adds (a reconcile's RequeueAfter) wait on
// the injected clock instead of the wall clock, so that with a fake clock a test sees expiry,
// rotation and the end of a grace period happen when it steps the clock, through the same
// RequeueAfter path as production. The reconciler records the absolute deadline behind each
// RequeueAfter (requeueAt), so a clock step between the reconcile and the queue's AddAfter cannot
// push the wake-up later. Rate-limited retries after errors keep the wall clock (the embedded
// queue's own delaying), so error backoff never waits for a fake clock.
//
// It is used only when Options.Clock is not the real clock; production uses controller-runtime's
// default queue.
type clockQueue struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	clock     clock.Clock
	deadlines *sync.Map

	once sync.Once
	done chan struct{}
}

func newClockQueue(c clock.Clock, deadlines *sync.Map, name string, rateLimiter workqueue.TypedRateLimiter[reconcile.Request]) *clockQueue {
	return &clockQueue{
		TypedRateLimitingInterface: workqueue.NewTypedRateLimitingQueueWithConfig(rateLimiter,
			workqueue.TypedRateLimitingQueueConfig[reconcile.Request]{Name: name}),
		clock:     c,
		deadlines: deadlines,
		done:      make(chan struct{}),
	}
}

// AddAfter adds item when the clock reaches the deadline its reconcile recorded, or after d.
func (q *clockQueue) AddAfter(item reconcile.Request, d time.Duration) {
	if deadline, ok := q.deadlines.LoadAndDelete(item); ok {
		d = deadline.(time.Time).Sub(q.clock.Now())
	}
	if d <= 0 {
		q.Add(item)
		return
	}
	timer := q.clock.NewTimer(d)
	go func() {
		select {
		case <-timer.C():
			q.Add(item)
		case <-q.done:
			timer.Stop()
		}
	}()
}

// ShutDown stops the pending delayed adds and the queue.
func (q *clockQueue) ShutDown() {
	q.once.Do(func() { close(q.done) })
	q.TypedRateLimitingInterface.ShutDown()
}

// ShutDownWithDrain stops the pending delayed adds and drains the queue.
func (q *clockQueue) ShutDownWithDrain() {
	q.once.Do(func() { close(q.done) })
	q.TypedRateLimitingInterface.ShutDownWithDrain()
}
