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
// The index knows no kind: each kind's projection into a Credential (internal/registry) says
// what it lists (digests, a key ID to be found by, a parent) and hangs its own typed data off
// Credential.Data. A credential with a parent (an AgentKey's ApiKey) points to the parent's
// Slot, which exists (empty) even before the parent is seen or after it is deleted, so the
// decision reads the parent's current state at request time in O(1).
package index

import (
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/keycap-dev/keycap/internal/lifecycle"
)

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

// Instant is a point in time as Unix nanoseconds, zero for none. The index keeps its times so: 8
// bytes where a time.Time takes 24, and no location pointer for the garbage collector to follow
// in every credential.
type Instant int64

// InstantOf returns t as an Instant (zero for the zero time).
func InstantOf(t time.Time) Instant {
	if t.IsZero() {
		return 0
	}
	return Instant(t.UnixNano())
}

// IsZero reports whether i is no time.
func (i Instant) IsZero() bool { return i == 0 }

// Time returns i as a time.Time (the zero time for zero).
func (i Instant) Time() time.Time {
	if i == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(i))
}

// Credential is what the index knows of one credential object, whatever its kind. It is
// immutable once published: an update publishes a new *Credential. What only one kind has hangs
// off Data, typed (*AgentData, *LicenseData, *AppTokenData); the index itself never looks at it.
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
	// ExpiresAt is the credential's expiry by lifecycle.Expiry (the earliest of spec and status);
	// zero when the credential does not expire.
	ExpiresAt Instant
	Disabled  bool
	// FoundByKeyID makes the credential findable by KeyID (LookupKeyID) as well as by the
	// digests it lists: the tokens of an AppToken carry its key ID.
	FoundByKeyID bool
	// LastUsedAt is status.lastUsedAt as last observed (zero when never written).
	LastUsedAt Instant
	// CreatedAt is the object's creationTimestamp.
	CreatedAt Instant

	// ParentKey names the object this credential is valid under (an AgentKey's ApiKey); nil when
	// it has none. Upsert resolves it to Parent.
	ParentKey *ObjectKey
	// Parent is ParentKey's slot: its Load is nil while the parent is unknown or deleted.
	Parent *Slot

	// Data is what only this credential's kind has, set by the kind's projection.
	Data any
	// Derived is owned by the index's consumer (the data plane): whatever it derives from this
	// version of the credential, set once by the projection the consumer gives Feed, before the
	// credential is published. The index never reads or writes it.
	Derived any
}

// Active reports whether c itself (not its parent) is usable at now: the one disabled/expired
// rule (lifecycle.Expired) every decision applies.
func (c *Credential) Active(now time.Time) bool {
	return c != nil && !c.Disabled && (c.ExpiresAt.IsZero() || now.Before(c.ExpiresAt.Time()))
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

// AgentData is what an AgentKey adds: its agent ID (its parent is Credential.ParentKey).
type AgentData struct {
	Agent string
}

// AppTokenData is what an AppToken adds: tokens issued before TokensNotBefore are revoked.
type AppTokenData struct {
	TokensNotBefore time.Time
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
	Activations []lifecycle.Activation
}

// HasEntitlement reports whether l holds entitlement e.
func (l *LicenseData) HasEntitlement(e string) bool {
	_, ok := slices.BinarySearch(l.Entitlements, e)
	return ok
}

// InstanceSeat is lifecycle.Seat for this licence's activations.
func (l *LicenseData) InstanceSeat(instanceID string, now time.Time) (active, seated bool) {
	return lifecycle.Seat(l.Activations, instanceID, l.HeartbeatTimeout, l.MaxInstances, now)
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
	// pinned is set once another object's credential names this slot as its parent, so the slot
	// outlives its object's deletion (the dependants keep their pointer). Guarded by Index.mu.
	pinned bool
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
	NotAfter Instant
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
	slots slotTable
	// conflicts lists every object claiming a digest that more than one object lists (which the
	// webhook forbids); such digests are refused. Empty in a healthy cluster.
	conflicts map[Digest][]*Slot

	// count is the number of credentials by kind; guarded by mu.
	count map[string]int

	// byKeyID maps the KeyID of a credential FoundByKeyID to its *Slot. Loads are lock-free.
	byKeyID sync.Map
}

// New returns an empty index.
func New() *Index {
	ix := &Index{
		slots:     slotTable{},
		conflicts: map[Digest][]*Slot{},
		count:     map[string]int{},
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
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.count[kind]
}

// LookupKeyID returns the slot of the credential FoundByKeyID whose key ID is keyID, or nil. It
// takes no lock.
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
	NotAfter Instant
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
	if cred.ParentKey != nil && cred.Parent == nil {
		parent := ix.slotLocked(*cred.ParentKey)
		parent.pinned = true
		cred.Parent = parent
	}
	prev := slot.cred.Swap(cred)
	if prev == nil {
		ix.count[key.Kind]++
	}
	if prev != nil && prev.FoundByKeyID && prev.KeyID != "" && (!cred.FoundByKeyID || prev.KeyID != cred.KeyID) {
		ix.byKeyID.CompareAndDelete(prev.KeyID, slot)
	}
	if cred.FoundByKeyID && cred.KeyID != "" {
		ix.byKeyID.Store(cred.KeyID, slot)
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
		case old[i].NotAfter != n.NotAfter:
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
	slot := ix.slots.get(key)
	if slot == nil {
		return
	}
	for _, o := range slot.owned {
		ix.unclaimLocked(o.Digest, slot)
	}
	slot.owned = nil
	if prev := slot.cred.Swap(nil); prev != nil {
		ix.count[key.Kind]--
		if prev.FoundByKeyID && prev.KeyID != "" {
			ix.byKeyID.CompareAndDelete(prev.KeyID, slot)
		}
	}
	// A slot nobody points to can go; a parent's slot is pointed to by its dependants, which keep
	// their pointer, so it stays. (An empty slot costs a few dozen bytes.)
	if !slot.pinned {
		ix.slots.remove(key)
	}
}

// Slot returns the slot of an object, or nil when the index never saw it.
func (ix *Index) Slot(key ObjectKey) *Slot {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.slots.get(key)
}

// FindLicense returns the License listing the licence key digest (lowercase hex) in
// status.digests; it implements activation.LicenseFinder.
func (ix *Index) FindLicense(hexDigest string) (types.NamespacedName, bool) {
	d, ok := ParseDigest(hexDigest)
	if !ok {
		return types.NamespacedName{}, false
	}
	e, ok := ix.Lookup(&d)
	if !ok || e.Conflict || e.Slot == nil {
		return types.NamespacedName{}, false
	}
	if _, isLicense := e.Slot.Load().LicenseData(); !isLicense {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: e.Slot.Key.Namespace, Name: e.Slot.Key.Name}, true
}

// LicenseData returns c's licence data, if c is a licence.
func (c *Credential) LicenseData() (*LicenseData, bool) {
	if c == nil {
		return nil, false
	}
	l, ok := c.Data.(*LicenseData)
	return l, ok
}

// AgentData returns c's agent data, if c is an agent key.
func (c *Credential) AgentData() (*AgentData, bool) {
	if c == nil {
		return nil, false
	}
	a, ok := c.Data.(*AgentData)
	return a, ok
}

func (ix *Index) slotLocked(key ObjectKey) *Slot {
	s := ix.slots.get(key)
	if s == nil {
		s = &Slot{Key: key}
		s.current.Slot = s
		ix.slots.put(s)
	}
	return s
}

func (ix *Index) claimLocked(d Digest, slot *Slot, notAfter Instant) {
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
			var notAfter Instant
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
func entryFor(slot *Slot, notAfter Instant) *Entry {
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

// keys returns the keys of the objects of kind the index holds, in namespace ("" for all).
func (ix *Index) keys(kind, namespace string) []ObjectKey {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var out []ObjectKey
	for kn, names := range ix.slots {
		if kn.kind != kind || (namespace != "" && kn.namespace != namespace) {
			continue
		}
		for _, slot := range names {
			if slot.cred.Load() != nil {
				out = append(out, slot.Key)
			}
		}
	}
	return out
}

// slotTable finds slots by kind and namespace, then by name: a credential's map entry then holds
// its name (16 bytes) rather than its whole ObjectKey (48), at 100 000 credentials about 5 MB.
type slotTable map[kindNamespace]map[string]*Slot

type kindNamespace struct{ kind, namespace string }

func (t slotTable) get(key ObjectKey) *Slot {
	return t[kindNamespace{key.Kind, key.Namespace}][key.Name]
}

func (t slotTable) put(s *Slot) {
	kn := kindNamespace{s.Key.Kind, s.Key.Namespace}
	names := t[kn]
	if names == nil {
		names = map[string]*Slot{}
		t[kn] = names
	}
	names[s.Key.Name] = s
}

func (t slotTable) remove(key ObjectKey) {
	kn := kindNamespace{key.Kind, key.Namespace}
	if names := t[kn]; names != nil {
		delete(names, key.Name)
		if len(names) == 0 {
			delete(t, kn)
		}
	}
}
