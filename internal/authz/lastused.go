package authz

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/registry"
)

// LastUsedThrottle is the least time between two lastUsedAt writes for one credential by one
// replica.
const LastUsedThrottle = time.Minute

const (
	defaultLastUsedFlush = 10 * time.Second
	lastUsedQueueSize    = 4096
	lastUsedWriters      = 4
	// defaultLastUsedRate bounds the lastUsedAt patches one replica sends the apiserver per
	// second (burst: twice that). With more credentials in use than that per minute, writes queue
	// up and lastUsedAt lags further behind; it is advisory, the apiserver's health is not.
	defaultLastUsedRate = 50
)

// usageRecorder writes status.lastUsedAt in the background. The request path only compares and
// swaps an atomic mark on the credential's slot and, at most once a minute per credential, does a
// non-blocking send on a channel; a background loop batches what arrived and patches each object's
// status with a merge patch that touches lastUsedAt alone.
type usageRecorder struct {
	client   client.Client
	clock    clock.WithTicker
	interval time.Duration
	queue    chan usage
	limiter  *rate.Limiter
}

type usage struct {
	slot *index.Slot
	at   time.Time
}

func newUsageRecorder(c client.Client, clk clock.WithTicker, interval time.Duration, perSecond float64) *usageRecorder {
	if interval <= 0 {
		interval = defaultLastUsedFlush
	}
	if perSecond <= 0 {
		perSecond = defaultLastUsedRate
	}
	return &usageRecorder{
		client: c, clock: clk, interval: interval,
		queue:   make(chan usage, lastUsedQueueSize),
		limiter: rate.NewLimiter(rate.Limit(perSecond), int(2*perSecond)),
	}
}

// record notes that an allowed request used the credential of slot at now. It never blocks.
func (u *usageRecorder) record(slot *index.Slot, cred *index.Credential, now time.Time) {
	if u == nil || slot == nil {
		return
	}
	mark := slot.LastUsedMark()
	last := mark.Load()
	n := now.UnixNano()
	if n-last < int64(LastUsedThrottle) {
		return
	}
	// Another replica (or a previous run) wrote it recently: nothing to do for now.
	if !cred.LastUsedAt.IsZero() && now.Sub(cred.LastUsedAt.Time()) < LastUsedThrottle {
		mark.CompareAndSwap(last, int64(cred.LastUsedAt))
		return
	}
	if !mark.CompareAndSwap(last, n) {
		return // a concurrent request queued it
	}
	select {
	case u.queue <- usage{slot: slot, at: now}:
	default:
		mark.Store(last) // queue full: let a later request try again
	}
}

// run batches recorded uses and writes them every interval until ctx ends.
func (u *usageRecorder) run(ctx context.Context) {
	ticker := u.clock.NewTicker(u.interval)
	defer ticker.Stop()
	pending := map[*index.Slot]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case use := <-u.queue:
			pending[use.slot] = use.at
		case <-ticker.C():
			if len(pending) > 0 {
				u.flush(ctx, pending)
				pending = map[*index.Slot]time.Time{}
			}
		}
	}
}

func (u *usageRecorder) flush(ctx context.Context, batch map[*index.Slot]time.Time) {
	log := logf.FromContext(ctx).WithName("lastused")
	work := make(chan usage)
	var wg sync.WaitGroup
	for range min(lastUsedWriters, len(batch)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for use := range work {
				if u.limiter.Wait(ctx) != nil {
					continue
				}
				cred := use.slot.Load()
				if cred == nil {
					continue // deleted since: nothing to write
				}
				key := cred.Key()
				err := u.write(ctx, key, use.at)
				switch {
				case err == nil:
					lastUsedWrites.WithLabelValues("ok").Inc()
				case apierrors.IsNotFound(err):
				default:
					lastUsedWrites.WithLabelValues("error").Inc()
					log.V(1).Info("writing lastUsedAt failed", "kind", key.Kind,
						"namespace", key.Namespace, "name", key.Name, "error", err.Error())
				}
			}
		}()
	}
	for slot, at := range batch {
		select {
		case work <- usage{slot: slot, at: at}:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
}

func (u *usageRecorder) write(ctx context.Context, key index.ObjectKey, at time.Time) error {
	kind, ok := registry.ByName(key.Kind)
	if !ok {
		return nil
	}
	obj := kind.New()
	obj.SetNamespace(key.Namespace)
	obj.SetName(key.Name)
	body, err := json.Marshal(map[string]any{"status": map[string]any{"lastUsedAt": metav1.NewTime(at)}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return u.client.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body))
}
