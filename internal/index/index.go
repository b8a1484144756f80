// Package index is the data plane's in-memory credential index: every opaque key keycap knows,
// by the SHA-256 digest that the credential's status lists, mapped to what a request-time decision
// needs (kind, namespace, name, key ID, scopes, expiry, disabled state, parent link).
//
// Reads are O(1) in the number of credentials and never wait for long on a writer: the digest
// table is split into 256 shards, each a plain map behind its own RWMutex, and a writer holds a
// shard's lock only for the few map assignments of one object. The credential data itself is an
// immutable *Credential published through an atomic pointer in a Slot, one Slot per object; an
// update swaps the pointer, so a disable is visible to the next lookup without touching the digest
// table. (An immutable snapshot of the whole table swapped atomically was the alternative; it
// costs O(N) per event, which at 100 000 keys is milliseconds per watch event and seconds for the
// initial list. BenchmarkLookupParallel measures the sharded table under a concurrent writer.)
//
// An AgentKey's Credential points to the Slot of its parent ApiKey, which exists (empty) even
// before the parent is seen or after it is deleted, so the decision reads the parent's current
// state at request time in O(1).
package index

import (
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Kinds of credentials the index holds.
const (
	KindApiKey   = "ApiKey"
	KindAgentKey = "AgentKey"
	// KindAppToken credentials are found by their status.keyID (LookupKeyID), which every token's
	// jti starts with; they list no digests.
	KindAppToken = "AppToken"
	// KindLicense credentials are found by the digest of their licence key, like opaque keys.
	KindLicense = "License"
)

// kindIndex numbers the kinds for the per-kind counters.
func kindIndex(kind string) int {
	switch kind {
	case KindAgentKey:
		return 1
	case KindAppToken:
		return 2
	case KindLicense:
		return 3
	}
	return 0
}

// Digest is a raw SHA-256 digest. The index is keyed by it, so a lookup hashes the presented key
// once and never hex-encodes it.
type Digest [32]byte

// ParseDigest decodes a lowercase hex SHA-256 digest as status.digests holds it.
func ParseDigest(s string) (Digest, bool) {
	var d Digest
	if len(s) != 64 || strings.ToLower(s) != s {
		return d, false
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, false
	}
	return d, true
}

// Credential is what the index knows of one credential object. It is immutable once published:
// an update publishes a new *Credential.
type Credential struct {
	Kind      string
	Namespace string
	Name      string
	// KeyID is the public identifier of the current key.
	KeyID string
	// Scopes are sorted and without duplicates.
	Scopes []string
	// ScopesHeader is Scopes joined with ",", computed once.
	ScopesHeader string
	// ExpiresAt is the earliest expiry known (status.expiresAt, spec.expiresAt or creation +
	// spec.duration); zero when the credential does not expire.
	ExpiresAt time.Time
	Disabled  bool
	// LastUsedAt is status.lastUsedAt as last observed (zero when never written).
	LastUsedAt time.Time

	// Agent is the agent ID of an AgentKey.
	Agent string
	// ParentName is the parent ApiKey's name of an AgentKey.
	ParentName string
	// Parent is the parent ApiKey's slot of an AgentKey: its Load is nil while the parent is
	// unknown or deleted.
	Parent *Slot

	// License holds what a request-time licence decision needs; nil for the other kinds.
	License *LicenseData

	// answer is whatever the data plane precomputed for this credential (its allowed answers):
	// it lives and dies with this immutable version of the credential.
	answer atomic.Pointer[any]
}

// Answer returns what SetAnswer stored, or nil.
func (c *Credential) Answer() any {
	if p := c.answer.Load(); p != nil {
		return *p
	}
	return nil
}

// SetAnswer stores a value the data plane derived from this credential, e.g. its precomputed
// allowed answers. Concurrent callers may race; the last store wins, so the value must be a pure
// function of the credential.
func (c *Credential) SetAnswer(v any) { c.answer.Store(&v) }

// Active reports whether c itself (not its parent) is usable at now.
func (c *Credential) Active(now time.Time) bool {
	return c != nil && !c.Disabled && (c.ExpiresAt.IsZero() || now.Before(c.ExpiresAt))
}

// HasScopes reports whether c's scopes contain every scope in required.
func (c *Credential) HasScopes(required []string) bool {
	for _, r := range required {
		if _, ok := slices.BinarySearch(c.Scopes, r); !ok {
			return false
		}
	}
	return true
}

// LicenseData is a License's request-time state.
type LicenseData struct {
	// Entitlements are sorted and without duplicates; EntitlementsHeader joins them with ",".
	Entitlements       []string
	EntitlementsHeader string
	// HeartbeatTimeout is how long an activation holds its seat without checking in.
	HeartbeatTimeout time.Duration
	// MaxInstances is the seat cap (at least 1).
	MaxInstances int
	// Activations are status.activations.
	Activations []Activation
}

// Activation is one activated instance of a licence.
type Activation struct {
	InstanceID              string
	ActivatedAt, LastSeenAt time.Time
}

// HasEntitlement reports whether l holds entitlement e.
func (l *LicenseData) HasEntitlement(e string) bool {
	_, ok := slices.BinarySearch(l.Entitlements, e)
	return ok
}

// InstanceSeat reports whether instanceID holds a live activation at now (the rule of
// activation.InstanceActive: seen within the heartbeat timeout) and, if so, whether it is within
// the seat cap: an instance whose live activation is younger than MaxInstances others (the cap
// was lowered after it activated) has no seat.
func (l *LicenseData) InstanceSeat(instanceID string, now time.Time) (active, seated bool) {
	var mine *Activation
	for i := range l.Activations {
		if l.Activations[i].InstanceID == instanceID {
			mine = &l.Activations[i]
			break
		}
	}
	if mine == nil || !now.Before(mine.LastSeenAt.Add(l.HeartbeatTimeout)) {
		return false, false
	}
	older := 0
	for i := range l.Activations {
		a := &l.Activations[i]
		if a != mine && now.Before(a.LastSeenAt.Add(l.HeartbeatTimeout)) &&
			(a.ActivatedAt.Before(mine.ActivatedAt) || a.ActivatedAt.Equal(mine.ActivatedAt) && a.InstanceID < mine.InstanceID) {
			older++
		}
	}
	return true, older < l.MaxInstances
}

// ObjectKey names a credential object.
type ObjectKey struct {
	Kind, Namespace, Name string
}

// Slot holds the current Credential of one object. Slots are stable: the same *Slot serves an
// object for the life of the index, so agent keys can point to their parent's.
type Slot struct {
	// current is the table entry of the object's current key(s), {Slot: itself}: kept in the
	// slot, so the table's entries cost no allocation of their own and a lookup reads the entry
	// and the credential pointer from the same memory.
	current Entry
	Key     ObjectKey
	cred    atomic.Pointer[Credential]
	// lastUsedMark is the unix-nano time this replica last queued a lastUsedAt write for the
	// object; the data plane throttles writes with it.
	lastUsedMark atomic.Int64
	// owned are the digests this object put into the table (the slice Upsert was given, shared
	// with the informer cache's Record, never modified); guarded by Index.mu.
	owned []KeyDigest
}

// Load returns the slot's current credential, or nil when the object does not exist (now).
func (s *Slot) Load() *Credential {
	if s == nil {
		return nil
	}
	return s.cred.Load()
}

// LastUsedMark is the throttle mark of the lastUsedAt writer.
func (s *Slot) LastUsedMark() *atomic.Int64 { return &s.lastUsedMark }

// Entry is the result of a lookup: the credential's slot and, for a previous key kept through a
// rotation's grace period, the instant it stops being valid.
type Entry struct {
	Slot *Slot
	// NotAfter is zero for the current key; for the previous key it is previousKeyValidUntil.
	NotAfter time.Time
	// Conflict is true when more than one object lists this digest (which the webhook forbids):
	// the data plane refuses it rather than guess which object it belongs to.
	Conflict bool
}

const shardCount = 256

type shard struct {
	mu sync.RWMutex
	m  map[Digest]*Entry
}

// Index is the credential index. The zero value is not usable; call New.
type Index struct {
	shards [shardCount]shard

	// Writer-side state, guarded by mu. Readers never take it. Writers also read the shard maps
	// without their locks: only writers change them, and writers hold mu.
	mu    sync.Mutex
	slots map[ObjectKey]*Slot
	// conflicts lists every object claiming a digest that more than one object lists (which the
	// webhook forbids); such digests are refused. Empty in a healthy cluster.
	conflicts map[Digest][]*Slot

	count [4]atomic.Int64 // credentials by kind: ApiKey, AgentKey, AppToken, License

	// byKeyID maps an AppToken's status.keyID to its *Slot. Loads are lock-free.
	byKeyID sync.Map
}

// New returns an empty index.
func New() *Index {
	ix := &Index{
		slots:     map[ObjectKey]*Slot{},
		conflicts: map[Digest][]*Slot{},
	}
	for i := range ix.shards {
		ix.shards[i].m = map[Digest]*Entry{}
	}
	return ix
}

// Lookup returns the entry of a digest. It takes one shard's read lock and allocates nothing.
func (ix *Index) Lookup(d *Digest) (*Entry, bool) {
	s := &ix.shards[d[0]]
	s.mu.RLock()
	e, ok := s.m[*d]
	s.mu.RUnlock()
	return e, ok
}

// Len returns how many credentials of a kind the index holds.
func (ix *Index) Len(kind string) int {
	return int(ix.count[kindIndex(kind)].Load())
}

// LookupKeyID returns the slot of the AppToken whose status.keyID is keyID, or nil. It takes no
// lock.
func (ix *Index) LookupKeyID(keyID string) *Slot {
	if v, ok := ix.byKeyID.Load(keyID); ok {
		return v.(*Slot)
	}
	return nil
}

// KeyDigest is one digest an object lists, with the instant it stops being valid (zero: while the
// object lists it).
type KeyDigest struct {
	Digest   Digest
	NotAfter time.Time
}

// Upsert publishes cred and makes exactly digests point to it. Digests the object listed before
// and lists no more are removed. The index keeps digests (a Record's, shared with the informer
// cache): the caller must not modify it afterwards.
func (ix *Index) Upsert(cred *Credential, digests []KeyDigest) {
	key := ObjectKey{Kind: cred.Kind, Namespace: cred.Namespace, Name: cred.Name}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	slot := ix.slotLocked(key)
	// A credential upserted again (an informer resync of a cached Record) keeps its parent link.
	if cred.Kind == KindAgentKey && cred.ParentName != "" && cred.Parent == nil {
		cred.Parent = ix.slotLocked(ObjectKey{Kind: KindApiKey, Namespace: cred.Namespace, Name: cred.ParentName})
	}
	prev := slot.cred.Swap(cred)
	if prev == nil {
		ix.counter(key.Kind).Add(1)
	}
	if key.Kind == KindAppToken {
		if prev != nil && prev.KeyID != "" && prev.KeyID != cred.KeyID {
			ix.byKeyID.CompareAndDelete(prev.KeyID, slot)
		}
		if cred.KeyID != "" {
			ix.byKeyID.Store(cred.KeyID, slot)
		}
	}

	old := slot.owned
	var next []KeyDigest
	if len(digests) > 0 {
		next = digests
	}
	// Remove the digests no longer listed first, so a rotation without grace revokes the old key
	// before anything else happens.
	for _, o := range old {
		if !containsDigest(next, o.Digest) {
			ix.unclaimLocked(o.Digest, slot)
		}
	}
	for _, n := range next {
		i := indexDigest(old, n.Digest)
		switch {
		case i < 0:
			ix.claimLocked(n.Digest, slot, n.NotAfter)
		case !old[i].NotAfter.Equal(n.NotAfter):
			if _, conflicted := ix.conflicts[n.Digest]; !conflicted {
				ix.setLocked(n.Digest, entryFor(slot, n.NotAfter))
			}
		}
	}
	slot.owned = next
}

// Delete removes an object and every digest it listed. Its slot stays (empty) so agent keys that
// point to it see the parent gone.
func (ix *Index) Delete(key ObjectKey) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	slot, ok := ix.slots[key]
	if !ok {
		return
	}
	for _, o := range slot.owned {
		ix.unclaimLocked(o.Digest, slot)
	}
	slot.owned = nil
	if prev := slot.cred.Swap(nil); prev != nil {
		ix.counter(key.Kind).Add(-1)
		if key.Kind == KindAppToken && prev.KeyID != "" {
			ix.byKeyID.CompareAndDelete(prev.KeyID, slot)
		}
	}
	// A slot nobody points to can go; an ApiKey's slot may be pointed to by agent keys, which
	// keep their pointer, so it stays. (An empty slot costs a few dozen bytes.)
	if key.Kind != KindApiKey {
		delete(ix.slots, key)
	}
}

// Slot returns the slot of an object, or nil when the index never saw it.
func (ix *Index) Slot(key ObjectKey) *Slot {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.slots[key]
}

func (ix *Index) counter(kind string) *atomic.Int64 {
	return &ix.count[kindIndex(kind)]
}

// FindLicense returns the License listing the licence key digest (lowercase hex) in
// status.digests; it implements activation.LicenseFinder.
func (ix *Index) FindLicense(hexDigest string) (types.NamespacedName, bool) {
	d, ok := ParseDigest(hexDigest)
	if !ok {
		return types.NamespacedName{}, false
	}
	e, ok := ix.Lookup(&d)
	if !ok || e.Conflict || e.Slot == nil || e.Slot.Key.Kind != KindLicense || e.Slot.Load() == nil {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: e.Slot.Key.Namespace, Name: e.Slot.Key.Name}, true
}

func (ix *Index) slotLocked(key ObjectKey) *Slot {
	s, ok := ix.slots[key]
	if !ok {
		s = &Slot{Key: key}
		s.current.Slot = s
		ix.slots[key] = s
	}
	return s
}

func (ix *Index) claimLocked(d Digest, slot *Slot, notAfter time.Time) {
	if owners, conflicted := ix.conflicts[d]; conflicted {
		ix.conflicts[d] = append(owners, slot)
		return
	}
	if e, ok := ix.shards[d[0]].m[d]; ok && e.Slot != slot {
		ix.conflicts[d] = []*Slot{e.Slot, slot}
		ix.setLocked(d, &Entry{Conflict: true})
		return
	}
	ix.setLocked(d, entryFor(slot, notAfter))
}

func (ix *Index) unclaimLocked(d Digest, slot *Slot) {
	if owners, conflicted := ix.conflicts[d]; conflicted {
		owners = slices.DeleteFunc(owners, func(s *Slot) bool { return s == slot })
		if len(owners) > 1 {
			ix.conflicts[d] = owners
			return
		}
		delete(ix.conflicts, d)
		if len(owners) == 1 {
			rest := owners[0]
			var notAfter time.Time
			if i := indexDigest(rest.owned, d); i >= 0 {
				notAfter = rest.owned[i].NotAfter
			}
			ix.setLocked(d, entryFor(rest, notAfter))
			return
		}
		ix.setLocked(d, nil)
		return
	}
	if e, ok := ix.shards[d[0]].m[d]; ok && e.Slot == slot {
		ix.setLocked(d, nil)
	}
}

// entryFor returns the table entry of a digest slot lists until notAfter (zero: while listed).
func entryFor(slot *Slot, notAfter time.Time) *Entry {
	if notAfter.IsZero() {
		return &slot.current
	}
	return &Entry{Slot: slot, NotAfter: notAfter}
}

// setLocked writes (or, with nil, deletes) the table entry of d.
func (ix *Index) setLocked(d Digest, e *Entry) {
	s := &ix.shards[d[0]]
	s.mu.Lock()
	if e == nil {
		delete(s.m, d)
	} else {
		s.m[d] = e
	}
	s.mu.Unlock()
}

func containsDigest(list []KeyDigest, d Digest) bool { return indexDigest(list, d) >= 0 }

func indexDigest(list []KeyDigest, d Digest) int {
	for i := range list {
		if list[i].Digest == d {
			return i
		}
	}
	return -1
}

// NormalizeScopes returns scopes sorted and without duplicates or empty strings, in a new slice.
func NormalizeScopes(scopes []string) []string {
	out := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if s != "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// IntersectScopes returns the scopes in both sorted lists a and b.
func IntersectScopes(a, b []string) []string {
	out := make([]string, 0, min(len(a), len(b)))
	for _, s := range a {
		if _, ok := slices.BinarySearch(b, s); ok {
			out = append(out, s)
		}
	}
	return out
}
