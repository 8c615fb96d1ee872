package tunnel

import (
	"sync"
	"sync/atomic"

	"github.com/warrenvpn/warren/crypto"
)

// packetBuffer is one pooled packet with headroom: the packet lives at
// b[Offset:Offset+n] before sealing and at b[:n] as a sealed message. b
// has one of two sizes, so that a staged packet holds about what it needs:
// smallBufferSize for packets up to a common MTU, bufferSize for the rest.
type packetBuffer struct {
	b []byte
	n int
}

// smallBufferSize holds a packet of up to smallPacketSize bytes with its
// header, padding and tag; a staged 1420-byte packet costs 1.5 KB instead
// of the 65.6 KB of the largest one.
const (
	smallPacketSize = 1500 // bytes
	smallBufferSize = Offset + smallPacketSize + crypto.TagSize + crypto.PaddingMultiple - 1
)

// bufferPool hands out packetBuffers and counts the ones out, so that tests
// can check every buffer came back (RELIABILITY "Leak checks").
type bufferPool struct {
	small, large sync.Pool
	out          atomic.Int64
}

// get returns a buffer with room for a packet of size bytes.
func (bp *bufferPool) get(size int) *packetBuffer {
	bp.out.Add(1)
	pool, n := &bp.small, smallBufferSize
	if size > smallPacketSize {
		pool, n = &bp.large, bufferSize
	}
	if b, ok := pool.Get().(*packetBuffer); ok {
		return b
	}
	return &packetBuffer{b: make([]byte, n)}
}

func (bp *bufferPool) put(b *packetBuffer) {
	b.n = 0
	bp.out.Add(-1)
	if len(b.b) == smallBufferSize {
		bp.small.Put(b)
	} else {
		bp.large.Put(b)
	}
}

// stagedQueue holds a peer's outbound packets while it has no session: at
// most maxStagedPackets, the oldest dropped first (D9). Its ring grows as
// packets arrive, so that an idle peer holds none. The owner's lock guards
// it.
type stagedQueue struct {
	ring []*packetBuffer // len 0 or a power of two up to maxStagedPackets
	head int             // index of the oldest packet
	n    int
}

// push appends b; when full it returns the oldest packet, which the caller
// must put back and count.
func (q *stagedQueue) push(b *packetBuffer) (dropped *packetBuffer) {
	if q.n == len(q.ring) && len(q.ring) < maxStagedPackets {
		ring := make([]*packetBuffer, max(4, 2*len(q.ring)))
		for i := range q.n {
			ring[i] = q.ring[(q.head+i)%len(q.ring)]
		}
		q.ring, q.head = ring, 0
	}
	if q.n == len(q.ring) {
		dropped = q.ring[q.head]
		q.ring[q.head] = b
		q.head = (q.head + 1) % len(q.ring)
		return dropped
	}
	q.ring[(q.head+q.n)%len(q.ring)] = b
	q.n++
	return nil
}

// pop removes and returns the oldest packet, or nil. The emptied ring is
// released.
func (q *stagedQueue) pop() *packetBuffer {
	if q.n == 0 {
		return nil
	}
	b := q.ring[q.head]
	q.ring[q.head] = nil
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	if q.n == 0 {
		q.ring, q.head = nil, 0
	}
	return b
}

func (q *stagedQueue) len() int { return q.n }
