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
// The collector marks the whole index in every cycle, so the index is laid out for it: the
// digest table maps a digest to a slot number (maps without pointers are never scanned), slots
// are found by number in a table of fixed-size chunks, a credential's name and key ID share one
// string, and credentials with the same scopes share one list. A slot number is reused once its
// object is gone, so a lookup believes the table only if the credential it finds lists the digest
// itself (Lookup), which is also where a previous key's end of validity is read.
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
	// firstDigest is the first digest this version lists, held here rather than in a slice of its
	// own (most credentials list one); hasDigest says whether there is one. A lookup by digest
	// checks it first, so it leads, with the scalars every decision reads.
	firstDigest KeyDigest
	// ExpiresAt is the credential's expiry by lifecycle.Expiry (the earliest of spec and status);
	// zero when the credential does not expire.
	ExpiresAt Instant
	// LastUsedAt is status.lastUsedAt as last observed (zero when never written).
	LastUsedAt Instant
	// CreatedAt is the object's creationTimestamp.
	CreatedAt Instant
	hasDigest bool
	Disabled  bool
	// FoundByKeyID makes the credential findable by KeyID (LookupKeyID) as well as by the
	// digests it lists: the tokens of an AppToken carry its key ID.
	FoundByKeyID bool
	// indexed is set by the first Upsert of this *Credential (writer-side, under Index.mu): a
	// credential is given its digests, slot and shared scopes once, before it is published.
	indexed bool

	Kind      string
	Namespace string
	Name      string
	// KeyID is the public identifier of the current key.
	KeyID string
	// Scopes are sorted and without duplicates. The index shares one list between the
	// credentials with the same scopes: never modify it.
	Scopes []string
	// ScopesHeader is Scopes joined with ",", computed once.
	ScopesHeader string

	// ParentKey names the object this credential is valid under (an AgentKey's ApiKey); nil when
	// it has none. Upsert resolves it to Parent.
	ParentKey *ObjectKey
	// Parent is ParentKey's slot: its Load is nil while the parent is unknown or deleted.
	Parent *Slot
	// slot is the credential's own slot, set by its first Upsert.
	slot *Slot

	// Data is what only this credential's kind has, set by the kind's projection.
	Data any
	// Derived is owned by the index's consumer (the data plane): whatever it derives from this
	// version of the credential, set once by the projection the consumer gives Feed, before the
	// credential is published. The index never reads or writes it.
	Derived any

	// moreDigests are the digests this version lists after firstDigest (Upsert's argument): a
	// lookup checks that the credential it reached lists the digest it was looking up.
	moreDigests []KeyDigest
}

// Key returns the name of c's object.
func (c *Credential) Key() ObjectKey {
	return ObjectKey{Kind: c.Kind, Namespace: c.Namespace, Name: c.Name}
}

// listed returns the entry of d in the digests c lists.
func (c *Credential) listed(d *Digest) (KeyDigest, bool) {
	switch {
	case c == nil || !c.hasDigest:
	case c.firstDigest.Digest == *d:
		return c.firstDigest, true
	default:
		for _, kd := range c.moreDigests {
			if kd.Digest == *d {
				return kd, true
			}
		}
	}
	return KeyDigest{}, false
}

// setDigests makes c list digests.
func (c *Credential) setDigests(digests []KeyDigest) {
	if len(digests) == 0 {
		return
	}
	c.firstDigest, c.hasDigest = digests[0], true
	if len(digests) > 1 {
		c.moreDigests = slices.Clone(digests[1:])
	}
}

// digests returns the digests c lists, in a new slice (writer side only).
func (c *Credential) digests() []KeyDigest {
	if c == nil || !c.hasDigest {
		return nil
	}
	return append([]KeyDigest{c.firstDigest}, c.moreDigests...)
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
// object for as long as the index has it, so agent keys can point to their parent's, and a slot
// is never reused for another object (its number in the digest table may be).
type Slot struct {
	cred atomic.Pointer[Credential]
	// lastUsedMark is the unix-nano time this replica last queued a lastUsedAt write for the
	// object; the data plane throttles writes with it.
	lastUsedMark atomic.Int64
	// ref is the slot's number in the digest table; guarded by Index.mu.
	ref slotRef
	// pinned is set once another object's credential names this slot as its parent, so the slot
	// outlives its object's deletion (the dependants keep their pointer). Guarded by Index.mu.
	pinned bool
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

// Entry is the result of a lookup: the credential's slot, the credential the slot held when
// looked up, and, for a previous key kept through a rotation's grace period, the instant it stops
// being valid.
type Entry struct {
	Slot       *Slot
	Credential *Credential
	// NotAfter is zero for the current key; for the previous key it is previousKeyValidUntil.
	NotAfter Instant
	// Conflict is true when more than one object lists this digest (which the webhook forbids):
	// the data plane refuses it rather than guess which object it belongs to. Slot and
	// Credential are nil then.
	Conflict bool
}

// slotRef is a slot's number: what the digest table maps a digest to, so the table holds no
// pointer for the collector to follow. conflictRef marks a digest more than one object lists.
type slotRef uint32

const conflictRef = ^slotRef(0)

// The slot numbers' table: a fixed directory of chunks, each allocated when first needed, so a
// reader finds a number's credential with two atomic loads and the table never moves.
const (
	slotChunkBits = 12
	slotChunkSize = 1 << slotChunkBits
	// slotChunks bounds the index at 2^26 (67 million) objects, beyond what etcd stores.
	slotChunks = 1 << 14
)

// numbered is one slot number's entry: the slot (writer side, under Index.mu) and its current
// credential, the same pointer as the slot's own, kept here too so that a lookup by digest reads
// the credential without a detour through the slot.
type numbered struct {
	slot *Slot
	cred atomic.Pointer[Credential]
}

type slotChunk [slotChunkSize]numbered

type slotRefs struct {
	chunks [slotChunks]atomic.Pointer[slotChunk]
	// next and free are writer-side, guarded by Index.mu.
	next slotRef
	free []slotRef
}

// at returns the entry of r, nil when r was never given out.
func (t *slotRefs) at(r slotRef) *numbered {
	c := t.chunks[r>>slotChunkBits].Load()
	if c == nil {
		return nil
	}
	return &c[r&(slotChunkSize-1)]
}

// assignLocked gives s a number, a freed one first.
func (t *slotRefs) assignLocked(s *Slot) {
	var r slotRef
	if n := len(t.free); n > 0 {
		r, t.free = t.free[n-1], t.free[:n-1]
	} else {
		r = t.next
		if r>>slotChunkBits >= slotChunks {
			panic("index: more than 2^26 credential objects")
		}
		t.next++
		if t.chunks[r>>slotChunkBits].Load() == nil {
			t.chunks[r>>slotChunkBits].Store(new(slotChunk))
		}
	}
	t.at(r).slot = s
	s.ref = r
}

// releaseLocked frees s's number for another slot.
func (t *slotRefs) releaseLocked(s *Slot) {
	n := t.at(s.ref)
	n.slot = nil
	n.cred.Store(nil)
	t.free = append(t.free, s.ref)
}

// publishLocked makes cred (nil: none) the current credential of slot s.
func (t *slotRefs) publishLocked(s *Slot, cred *Credential) *Credential {
	t.at(s.ref).cred.Store(cred)
	return s.cred.Swap(cred)
}

const shardCount = 256

type shard struct {
	mu sync.RWMutex
	m  map[Digest]slotRef
}

// Index is the credential index. The zero value is not usable; call New.
type Index struct {
	shards [shardCount]shard
	refs   slotRefs

	// Writer-side state, guarded by mu. Readers never take it. Writers also read the shard maps
	// without their locks: only writers change them, and writers hold mu.
	mu    sync.Mutex
	slots slotTable
	// conflicts lists every object claiming a digest that more than one object lists (which the
	// webhook forbids); such digests are refused. Empty in a healthy cluster.
	conflicts map[Digest][]*Slot
	// scopeLists are the scope lists the index's credentials share, by ScopesHeader.
	scopeLists map[string]*sharedList

	// count is the number of credentials by kind; guarded by mu.
	count map[string]int

	// byKeyID maps the KeyID of a credential FoundByKeyID to its *Slot. Loads are lock-free.
	byKeyID sync.Map
}

// sharedList is one scope list and how many of the index's credentials use it.
type sharedList struct {
	list []string
	refs int
}

// New returns an empty index.
func New() *Index {
	ix := &Index{
		slots:      slotTable{},
		conflicts:  map[Digest][]*Slot{},
		scopeLists: map[string]*sharedList{},
		count:      map[string]int{},
	}
	for i := range ix.shards {
		ix.shards[i].m = map[Digest]slotRef{}
	}
	return ix
}

// Lookup returns the entry of a digest. It takes one shard's read lock and allocates nothing.
// The entry's Credential is the one its slot held, and it lists d: a digest whose object went
// away (its slot's number since given to another object) is not found.
func (ix *Index) Lookup(d *Digest) (Entry, bool) {
	s := &ix.shards[d[0]]
	s.mu.RLock()
	r, ok := s.m[*d]
	s.mu.RUnlock()
	switch {
	case !ok:
		return Entry{}, false
	case r == conflictRef:
		return Entry{Conflict: true}, true
	}
	n := ix.refs.at(r)
	if n == nil {
		return Entry{}, false
	}
	cred := n.cred.Load()
	kd, listed := cred.listed(d)
	if !listed {
		return Entry{}, false
	}
	return Entry{Slot: cred.slot, Credential: cred, NotAfter: kd.NotAfter}, true
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
// and lists no more are removed. cred must be new to the index (a projection's result) and
// belongs to the index afterwards (its scopes may be replaced by an equal shared list).
func (ix *Index) Upsert(cred *Credential, digests []KeyDigest) {
	key := cred.Key()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	slot := ix.slotLocked(key)
	if !cred.indexed {
		cred.indexed = true
		cred.slot = slot
		cred.setDigests(digests)
		cred.Scopes = ix.shareScopesLocked(cred.ScopesHeader, cred.Scopes)
		if cred.ParentKey != nil {
			parent := ix.slotLocked(*cred.ParentKey)
			parent.pinned = true
			cred.Parent = parent
		}
	}
	prev := ix.refs.publishLocked(slot, cred)
	if prev == cred {
		return
	}
	if prev == nil {
		ix.count[key.Kind]++
	} else {
		ix.releaseScopesLocked(prev.ScopesHeader)
	}
	if prev != nil && prev.FoundByKeyID && prev.KeyID != "" && (!cred.FoundByKeyID || prev.KeyID != cred.KeyID) {
		ix.byKeyID.CompareAndDelete(prev.KeyID, slot)
	}
	if cred.FoundByKeyID && cred.KeyID != "" {
		ix.byKeyID.Store(cred.KeyID, slot)
	}

	old, next := prev.digests(), cred.digests()
	// Remove the digests no longer listed first, so a rotation without grace revokes the old key
	// before anything else happens. (Lookups already refuse them: the published credential does
	// not list them.)
	for _, o := range old {
		if !containsDigest(next, o.Digest) {
			ix.unclaimLocked(o.Digest, slot)
		}
	}
	for _, n := range next {
		if !containsDigest(old, n.Digest) {
			ix.claimLocked(n.Digest, slot)
		}
	}
}

// Delete removes an object and every digest it listed. Its slot stays (empty) so agent keys that
// point to it see the parent gone.
func (ix *Index) Delete(key ObjectKey) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	slot := ix.slotOfLocked(key)
	if slot == nil {
		return
	}
	if prev := ix.refs.publishLocked(slot, nil); prev != nil {
		for _, o := range prev.digests() {
			ix.unclaimLocked(o.Digest, slot)
		}
		ix.count[key.Kind]--
		ix.releaseScopesLocked(prev.ScopesHeader)
		if prev.FoundByKeyID && prev.KeyID != "" {
			ix.byKeyID.CompareAndDelete(prev.KeyID, slot)
		}
	}
	// A slot nobody points to can go; a parent's slot is pointed to by its dependants, which keep
	// their pointer, so it stays. (An empty slot costs a few dozen bytes.)
	if !slot.pinned {
		ix.slots.remove(key)
		ix.refs.releaseLocked(slot)
	}
}

// Slot returns the slot of an object, or nil when the index never saw it.
func (ix *Index) Slot(key ObjectKey) *Slot {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.slotOfLocked(key)
}

// FindLicense returns the License listing the licence key digest (lowercase hex) in
// status.digests; it implements activation.LicenseFinder.
func (ix *Index) FindLicense(hexDigest string) (types.NamespacedName, bool) {
	d, ok := ParseDigest(hexDigest)
	if !ok {
		return types.NamespacedName{}, false
	}
	e, ok := ix.Lookup(&d)
	if !ok || e.Conflict {
		return types.NamespacedName{}, false
	}
	if _, isLicense := e.Credential.LicenseData(); !isLicense {
		return types.NamespacedName{}, false
	}
	return types.NamespacedName{Namespace: e.Credential.Namespace, Name: e.Credential.Name}, true
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

// slotOfLocked returns the slot of key, or nil.
func (ix *Index) slotOfLocked(key ObjectKey) *Slot {
	if r, ok := ix.slots.get(key); ok {
		return ix.refs.at(r).slot
	}
	return nil
}

// slotLocked returns the slot of key, made when there is none.
func (ix *Index) slotLocked(key ObjectKey) *Slot {
	s := ix.slotOfLocked(key)
	if s == nil {
		s = &Slot{}
		ix.refs.assignLocked(s)
		ix.slots.put(key, s.ref)
	}
	return s
}

func (ix *Index) claimLocked(d Digest, slot *Slot) {
	if owners, conflicted := ix.conflicts[d]; conflicted {
		ix.conflicts[d] = append(owners, slot)
		return
	}
	if r, ok := ix.shards[d[0]].m[d]; ok && r != slot.ref {
		ix.conflicts[d] = []*Slot{ix.refs.at(r).slot, slot}
		ix.setLocked(d, conflictRef, true)
		return
	}
	ix.setLocked(d, slot.ref, true)
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
			ix.setLocked(d, owners[0].ref, true)
			return
		}
		ix.setLocked(d, 0, false)
		return
	}
	if r, ok := ix.shards[d[0]].m[d]; ok && r == slot.ref {
		ix.setLocked(d, 0, false)
	}
}

// setLocked writes (or, with !present, deletes) the table entry of d.
func (ix *Index) setLocked(d Digest, r slotRef, present bool) {
	s := &ix.shards[d[0]]
	s.mu.Lock()
	if present {
		s.m[d] = r
	} else {
		delete(s.m, d)
	}
	s.mu.Unlock()
}

// shareScopesLocked returns the index's shared scope list equal to list (header is its joined
// form), counting one more user of it.
func (ix *Index) shareScopesLocked(header string, list []string) []string {
	if header == "" {
		return list
	}
	l := ix.scopeLists[header]
	if l == nil {
		l = &sharedList{list: list}
		ix.scopeLists[header] = l
	}
	l.refs++
	return l.list
}

// releaseScopesLocked counts one user less of the shared list of header.
func (ix *Index) releaseScopesLocked(header string) {
	if l := ix.scopeLists[header]; l != nil {
		if l.refs--; l.refs == 0 {
			delete(ix.scopeLists, header)
		}
	}
}

func containsDigest(list []KeyDigest, d Digest) bool {
	return slices.ContainsFunc(list, func(k KeyDigest) bool { return k.Digest == d })
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
		for name, r := range names {
			if ix.refs.at(r).cred.Load() != nil {
				out = append(out, ObjectKey{Kind: kn.kind, Namespace: kn.namespace, Name: name})
			}
		}
	}
	return out
}

// slotTable finds slot numbers by kind and namespace, then by name: a credential's map entry
// then holds its name (16 bytes) rather than its whole ObjectKey (48), at 100 000 credentials
// about 5 MB, and a number rather than a pointer the collector would follow once more.
type slotTable map[kindNamespace]map[string]slotRef

type kindNamespace struct{ kind, namespace string }

func (t slotTable) get(key ObjectKey) (slotRef, bool) {
	r, ok := t[kindNamespace{key.Kind, key.Namespace}][key.Name]
	return r, ok
}

func (t slotTable) put(key ObjectKey, r slotRef) {
	kn := kindNamespace{key.Kind, key.Namespace}
	names := t[kn]
	if names == nil {
		names = map[string]slotRef{}
		t[kn] = names
	}
	names[key.Name] = r
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
