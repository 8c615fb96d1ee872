// Package allowedips owns the allowed-IPs table: a longest-prefix-match map
// from IPv4 and IPv6 prefixes to a value (the engine stores its peers).
//
// The table is a path-compressed binary trie per address family, as in
// WireGuard, made persistent: an update copies only the nodes on the path it
// changes and then publishes the new roots with one atomic store. Lookups
// therefore take no lock, never block, allocate nothing and always see either
// all or none of an update. Updates are serialised by a mutex. Several changes
// can be published at once with Update, so that a reader never sees a
// half-applied peer configuration.
package allowedips

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Table is a longest-prefix-match table from IP prefixes to values of type V.
//
// Lookup, LookupPacketSrc and LookupPacketDst are safe to call concurrently
// with each other and with updates; they take no lock and do not allocate.
// The update methods (Insert, Remove, RemoveFrom, RemoveValue, Update) and
// the inspection methods (Entries, Len, Get) may be called from any
// goroutine; they serialise on an internal mutex.
//
// The zero Table is empty and ready to use. A Table must not be copied after
// first use.
type Table[V comparable] struct {
	// root holds the published tries. Readers load it once per lookup.
	root atomic.Pointer[roots[V]]

	// mu serialises writers and guards the fields below.
	mu  sync.Mutex
	gen uint64 // generation of the batch being built; nodes with this gen are unpublished
	seq uint64 // insertion counter, orders Entries
	// owner maps every stored prefix to its value and insertion number.
	owner map[netip.Prefix]entry[V]
	// byValue maps every value to the set of its prefixes.
	byValue map[V]map[netip.Prefix]struct{}
}

type roots[V comparable] struct {
	v4, v6 *node[V]
}

type entry[V comparable] struct {
	value V
	seq   uint64
}

// Batch collects changes to a Table inside Update. Its methods have the
// meaning of the Table methods of the same name; none of their effects is
// visible to lookups before Update returns. A Batch is valid only inside the
// function passed to Update.
type Batch[V comparable] struct {
	t    *Table[V]
	work roots[V]
}

// Update runs f with a Batch and then publishes all of its changes to
// lookups at once. Updates of other goroutines wait until it returns; f must
// not call the Table's own update or inspection methods (it would deadlock),
// only lookups and the Batch's methods.
func (t *Table[V]) Update(f func(b *Batch[V])) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.beginLocked()
	defer t.publishLocked(b)
	f(b)
}

// beginLocked starts a batch; t.mu must be held.
func (t *Table[V]) beginLocked() *Batch[V] {
	if t.owner == nil {
		t.owner = make(map[netip.Prefix]entry[V])
		t.byValue = make(map[V]map[netip.Prefix]struct{})
	}
	t.gen++
	b := &Batch[V]{t: t}
	if r := t.root.Load(); r != nil {
		b.work = *r
	}
	return b
}

// publishLocked makes the batch's tries visible to lookups; t.mu must be held.
func (t *Table[V]) publishLocked(b *Batch[V]) {
	r := b.work
	t.root.Store(&r)
	b.t = nil
}

// Insert maps p to v. Host bits of p are cleared (192.95.5.93/27 is stored
// as 192.95.5.64/27). If the prefix already belongs to another value it moves
// to v. An invalid prefix is ignored.
func (t *Table[V]) Insert(p netip.Prefix, v V) {
	t.Update(func(b *Batch[V]) { b.Insert(p, v) })
}

// Remove deletes p, whatever value it maps to, and reports whether it was
// present. Host bits of p are ignored.
func (t *Table[V]) Remove(p netip.Prefix) bool {
	var ok bool
	t.Update(func(b *Batch[V]) { ok = b.Remove(p) })
	return ok
}

// RemoveFrom deletes p only if it maps to v, and reports whether it did. This
// is the UAPI's "allowed_ip=-prefix" on a peer.
func (t *Table[V]) RemoveFrom(p netip.Prefix, v V) bool {
	var ok bool
	t.Update(func(b *Batch[V]) { ok = b.RemoveFrom(p, v) })
	return ok
}

// RemoveValue deletes every prefix that maps to v and reports how many there
// were.
func (t *Table[V]) RemoveValue(v V) int {
	var n int
	t.Update(func(b *Batch[V]) { n = b.RemoveValue(v) })
	return n
}

// Insert maps p to v; see Table.Insert.
func (b *Batch[V]) Insert(p netip.Prefix, v V) {
	if !p.IsValid() {
		return
	}
	p = p.Masked()
	t := b.t
	if old, ok := t.owner[p]; ok {
		t.dropIndexLocked(p, old.value)
	}
	t.seq++
	t.owner[p] = entry[V]{value: v, seq: t.seq}
	set := t.byValue[v]
	if set == nil {
		set = make(map[netip.Prefix]struct{})
		t.byValue[v] = set
	}
	set[p] = struct{}{}

	k, bits := keyOf(p.Addr())
	n := &node[V]{key: k.masked(p.Bits()), bits: uint8(p.Bits()), has: true, value: v, gen: t.gen}
	if bits == 32 {
		b.work.v4 = insertNode(b.work.v4, n, t.gen)
	} else {
		b.work.v6 = insertNode(b.work.v6, n, t.gen)
	}
}

// Remove deletes p; see Table.Remove.
func (b *Batch[V]) Remove(p netip.Prefix) bool {
	if !p.IsValid() {
		return false
	}
	p = p.Masked()
	old, ok := b.t.owner[p]
	if !ok {
		return false
	}
	b.removeLocked(p, old.value)
	return true
}

// RemoveFrom deletes p if it maps to v; see Table.RemoveFrom.
func (b *Batch[V]) RemoveFrom(p netip.Prefix, v V) bool {
	if !p.IsValid() {
		return false
	}
	p = p.Masked()
	old, ok := b.t.owner[p]
	if !ok || old.value != v {
		return false
	}
	b.removeLocked(p, v)
	return true
}

// RemoveValue deletes every prefix of v; see Table.RemoveValue.
func (b *Batch[V]) RemoveValue(v V) int {
	set := b.t.byValue[v]
	n := len(set)
	for p := range set {
		b.removeLocked(p, v)
	}
	return n
}

// removeLocked deletes the stored (masked) prefix p owned by v.
func (b *Batch[V]) removeLocked(p netip.Prefix, v V) {
	t := b.t
	t.dropIndexLocked(p, v)
	delete(t.owner, p)
	k, bits := keyOf(p.Addr())
	if bits == 32 {
		b.work.v4 = removeNode(b.work.v4, k, uint8(p.Bits()), t.gen)
	} else {
		b.work.v6 = removeNode(b.work.v6, k, uint8(p.Bits()), t.gen)
	}
}

func (t *Table[V]) dropIndexLocked(p netip.Prefix, v V) {
	set := t.byValue[v]
	delete(set, p)
	if len(set) == 0 {
		delete(t.byValue, v)
	}
}

// Entries returns the prefixes that map to v, in the order they were
// inserted (re-inserting a prefix moves it to the end), as wireguard-go lists
// a peer's allowed IPs. The slice is the caller's.
func (t *Table[V]) Entries(v V) []netip.Prefix {
	t.mu.Lock()
	defer t.mu.Unlock()
	set := t.byValue[v]
	type ordered struct {
		seq uint64
		p   netip.Prefix
	}
	tmp := make([]ordered, 0, len(set))
	for p := range set {
		tmp = append(tmp, ordered{t.owner[p].seq, p})
	}
	slices.SortFunc(tmp, func(a, b ordered) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]netip.Prefix, len(tmp))
	for i, o := range tmp {
		out[i] = o.p
	}
	return out
}

// Len returns the number of prefixes in the table.
func (t *Table[V]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.owner)
}

// Get returns the value of exactly prefix p (host bits ignored), if the
// table holds it.
func (t *Table[V]) Get(p netip.Prefix) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.owner[p.Masked()]
	return e.value, ok
}

// Lookup returns the value of the longest prefix containing addr. An IPv4
// address mapped into IPv6 (::ffff:a.b.c.d) is looked up as IPv6, as
// wireguard-go does.
func (t *Table[V]) Lookup(addr netip.Addr) (V, bool) {
	r := t.root.Load()
	if r == nil || !addr.IsValid() {
		var zero V
		return zero, false
	}
	k, bits := keyOf(addr)
	if bits == 32 {
		return lookup(r.v4, k)
	}
	return lookup(r.v6, k)
}

// lookupBytes looks up a raw address: 4 bytes for IPv4, 16 for IPv6. Any
// other length finds nothing. ip is only read during the call.
func (t *Table[V]) lookupBytes(ip []byte) (V, bool) {
	r := t.root.Load()
	if r != nil {
		switch len(ip) {
		case 4:
			return lookup(r.v4, key4(ip))
		case 16:
			return lookup(r.v6, key16(ip))
		}
	}
	var zero V
	return zero, false
}

// LookupPacketSrc looks up the source address of the raw IPv4 or IPv6 packet
// pkt (the inbound source check). A packet too short for its version's header
// or of another version finds nothing.
func (t *Table[V]) LookupPacketSrc(pkt []byte) (V, bool) {
	return t.lookupBytes(packetAddr(pkt, 12, 8))
}

// LookupPacketDst looks up the destination address of the raw IPv4 or IPv6
// packet pkt (outbound routing). A packet too short for its version's header
// or of another version finds nothing.
func (t *Table[V]) LookupPacketDst(pkt []byte) (V, bool) {
	return t.lookupBytes(packetAddr(pkt, 16, 24))
}

// packetAddr returns the address at offset off4 of an IPv4 header or off6 of
// an IPv6 header, or nil.
func packetAddr(pkt []byte, off4, off6 int) []byte {
	if len(pkt) == 0 {
		return nil
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) >= 20 {
			return pkt[off4 : off4+4]
		}
	case 6:
		if len(pkt) >= 40 {
			return pkt[off6 : off6+16]
		}
	}
	return nil
}
