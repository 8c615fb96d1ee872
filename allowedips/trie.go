package allowedips

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// key is an address as a 128-bit big-endian number. IPv4 addresses sit in
// the top 32 bits of hi, so that bit i of an address is bit i of the key for
// both families.
type key struct {
	hi, lo uint64
}

func key4(b []byte) key {
	return key{hi: uint64(binary.BigEndian.Uint32(b)) << 32}
}

func key16(b []byte) key {
	return key{hi: binary.BigEndian.Uint64(b), lo: binary.BigEndian.Uint64(b[8:])}
}

// keyOf returns addr as a key and its family's width in bits (32 or 128).
func keyOf(addr netip.Addr) (key, int) {
	if addr.Is4() {
		b := addr.As4()
		return key4(b[:]), 32
	}
	b := addr.As16()
	return key16(b[:]), 128
}

// maskOf returns the key with the top n bits set.
func maskOf(n int) key {
	var m key
	switch {
	case n >= 128:
		m = key{^uint64(0), ^uint64(0)}
	case n > 64:
		m = key{^uint64(0), ^(^uint64(0) >> (n - 64))}
	default:
		m.hi = ^(^uint64(0) >> n) // n == 64 gives all ones, n == 0 zero
	}
	return m
}

func (k key) masked(n int) key {
	m := maskOf(n)
	return key{k.hi & m.hi, k.lo & m.lo}
}

// bit returns bit i of k, counting from the most significant; 0 for i >= 128.
func (k key) bit(i uint8) int {
	if i < 64 {
		return int(k.hi>>(63-i)) & 1
	}
	return int(k.lo>>(127-uint(i))) & 1
}

// commonBits returns the length of the longest common prefix of a and b.
func commonBits(a, b key) int {
	if x := a.hi ^ b.hi; x != 0 {
		return bits.LeadingZeros64(x)
	}
	return 64 + bits.LeadingZeros64(a.lo^b.lo)
}

// node is a node of a path-compressed binary trie. It stands for the prefix
// key/bits; children extend it by one or more bits, child[i] having bit
// `bits` equal to i. A node without a value (has false) only joins two
// subtries and always has two children.
//
// Nodes are immutable once published. A node whose gen equals the table's
// current batch generation was created by that batch, is not yet reachable by
// readers, and may be changed in place.
type node[V comparable] struct {
	child [2]*node[V]
	key   key    // masked to bits
	gen   uint64 // batch that created it
	bits  uint8
	has   bool
	value V
}

// matches reports whether k lies inside n's prefix.
func (n *node[V]) matches(k key) bool {
	// Shifts by 64 or more give 0 in Go, which makes /0 match everything.
	if n.bits <= 64 {
		return (k.hi^n.key.hi)>>(64-n.bits) == 0
	}
	return k.hi == n.key.hi && (k.lo^n.key.lo)>>(128-uint(n.bits)) == 0
}

// lookup returns the value of the longest prefix in the trie n containing k.
func lookup[V comparable](n *node[V], k key) (v V, ok bool) {
	for n != nil && n.matches(k) {
		if n.has {
			v, ok = n.value, true
		}
		n = n.child[k.bit(n.bits)]
	}
	return v, ok
}

// own returns n if the current batch created it, else a copy of n that the
// batch may change.
func own[V comparable](n *node[V], gen uint64) *node[V] {
	if n.gen == gen {
		return n
	}
	c := *n
	c.gen = gen
	return &c
}

// insertNode adds the fresh node nn (created in batch gen, no children) to
// the trie n and returns the new root of that trie.
func insertNode[V comparable](n, nn *node[V], gen uint64) *node[V] {
	if n == nil {
		return nn
	}
	common := min(commonBits(n.key, nn.key), int(n.bits), int(nn.bits))
	switch {
	case common == int(n.bits) && n.bits == nn.bits:
		m := own(n, gen)
		m.has, m.value = true, nn.value
		return m
	case common == int(n.bits):
		m := own(n, gen)
		i := nn.key.bit(n.bits)
		m.child[i] = insertNode(n.child[i], nn, gen)
		return m
	case common == int(nn.bits):
		nn.child[n.key.bit(nn.bits)] = n
		return nn
	default:
		mid := &node[V]{key: nn.key.masked(common), bits: uint8(common), gen: gen}
		mid.child[nn.key.bit(mid.bits)] = nn
		mid.child[n.key.bit(mid.bits)] = n
		return mid
	}
}

// removeNode deletes the value of prefix k/bits from the trie n, collapsing
// nodes that no longer join two subtries, and returns the new root.
func removeNode[V comparable](n *node[V], k key, bits uint8, gen uint64) *node[V] {
	if n == nil || n.bits > bits || !n.matches(k) {
		return n
	}
	if n.bits == bits {
		if !n.has {
			return n
		}
		switch {
		case n.child[0] != nil && n.child[1] != nil:
			m := own(n, gen)
			var zero V
			m.has, m.value = false, zero
			return m
		case n.child[0] != nil:
			return n.child[0]
		default:
			return n.child[1]
		}
	}
	i := k.bit(n.bits)
	c := removeNode(n.child[i], k, bits, gen)
	if c == n.child[i] {
		return n
	}
	if !n.has && c == nil {
		return n.child[1-i]
	}
	m := own(n, gen)
	m.child[i] = c
	return m
}
