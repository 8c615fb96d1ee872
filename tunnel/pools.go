package tunnel

import (
	"sync"
	"sync/atomic"
)

// packetBuffer is one pooled packet with headroom: the packet lives at
// b[Offset:Offset+n] before sealing and at b[:n] as a sealed message.
type packetBuffer struct {
	b [bufferSize]byte
	n int
}

// bufferPool hands out packetBuffers and counts the ones out, so that tests
// can check every buffer came back (RELIABILITY "Leak checks").
type bufferPool struct {
	p   sync.Pool
	out atomic.Int64
}

func (bp *bufferPool) get() *packetBuffer {
	bp.out.Add(1)
	if b, ok := bp.p.Get().(*packetBuffer); ok {
		return b
	}
	return new(packetBuffer)
}

func (bp *bufferPool) put(b *packetBuffer) {
	b.n = 0
	bp.out.Add(-1)
	bp.p.Put(b)
}

// stagedQueue holds a peer's outbound packets while it has no session: at
// most maxStagedPackets, the oldest dropped first (D9). The owner's lock
// guards it.
type stagedQueue struct {
	ring [maxStagedPackets]*packetBuffer
	head int // index of the oldest packet
	n    int
}

// push appends b; when full it returns the oldest packet, which the caller
// must put back and count.
func (q *stagedQueue) push(b *packetBuffer) (dropped *packetBuffer) {
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

// pop removes and returns the oldest packet, or nil.
func (q *stagedQueue) pop() *packetBuffer {
	if q.n == 0 {
		return nil
	}
	b := q.ring[q.head]
	q.ring[q.head] = nil
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	return b
}

func (q *stagedQueue) len() int { return q.n }
