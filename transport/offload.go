package transport

// Planning for UDP segmentation offload, kept free of system calls so that
// plain tests reach it on any OS.
//
// Sending (GSO): consecutive datagrams of equal size to one endpoint form a
// group that leaves as one super-datagram with a UDP_SEGMENT control message.
// A group ends after a shorter datagram (the kernel allows only the last
// segment to be short), at maxSegments segments, or before the payload would
// exceed the IP limit. Groups are gathered with one iovec per datagram, so the
// caller's buffers are never copied or written.
//
// Receiving (GRO): recvmmsg reads message j into bufs[j]; a coalesced message
// carries the segment size in a UDP_GRO control message. splitMessages spreads
// the segments over the following buffers, working from the last message to
// the first so that no message is overwritten before it has moved. Segments
// that do not fit the caller's buffers are copied to the spill queue and
// returned first by the next Receive (from any goroutine), so nothing that the
// kernel handed us is dropped.

import (
	"net/netip"
	"sync"
	"sync/atomic"
)

// segmentGroup is one message of a send: count datagrams starting at
// bufs[start], sent as one super-datagram of size-byte segments when count > 1.
type segmentGroup struct {
	start int
	count int
	size  int // segment size, bytes
	total int // payload, bytes
	open  bool
}

// planGroups appends to groups[:0] the messages that send bufs. With gso off
// every datagram is its own message.
func planGroups(groups []segmentGroup, bufs [][]byte, maxPayload int, gso bool) []segmentGroup {
	groups = groups[:0]
	for i, b := range bufs {
		if n := len(groups); n > 0 {
			g := &groups[n-1]
			if g.open && len(b) <= g.size && g.count < maxSegments && g.total+len(b) <= maxPayload {
				g.count++
				g.total += len(b)
				if len(b) < g.size {
					g.open = false
				}
				continue
			}
		}
		groups = append(groups, segmentGroup{
			start: i,
			count: 1,
			size:  len(b),
			total: len(b),
			open:  gso && len(b) > 0,
		})
	}
	return groups
}

// rxMessage is one message returned by recvmmsg before splitting.
type rxMessage struct {
	n       int // bytes read
	segment int // GRO segment size, bytes; 0 when not coalesced
	ep      netip.AddrPort
	local   netip.Addr // our address it was sent to; zero if unknown
}

// segmentCount reports how many datagrams an n-byte message of segment-byte
// segments holds.
func segmentCount(n, segment int) int {
	if segment <= 0 || n <= segment {
		return 1
	}
	return (n + segment - 1) / segment
}

// splitMessages turns msgs, read into bufs[j][:msgs[j].n], into datagrams in
// bufs, sizes, eps and locals, and returns how many it wrote. What does not
// fit goes to sp. It also returns the largest segment count of any message.
func splitMessages(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr, msgs []rxMessage, sp *spill) (n, maxCount int) {
	// 1. Lay out: message j's segments go to bufs[n_j:n_j+count_j]. Message
	// cut is the first that does not fit in full; partial of its segments do.
	cut, partial := len(msgs), 0
	for j, m := range msgs {
		c := segmentCount(m.n, m.segment)
		maxCount = max(maxCount, c)
		switch {
		case cut < len(msgs):
		case n+c > len(bufs):
			cut, partial, n = j, len(bufs)-n, len(bufs)
		default:
			n += c
		}
	}
	// 2. Spill what does not fit before step 3 overwrites it.
	if cut < len(msgs) {
		m := msgs[cut]
		sp.push(bufs[cut][partial*m.segment:m.n], m.segment, m.ep, m.local)
		for j := cut + 1; j < len(msgs); j++ {
			sp.push(bufs[j][:msgs[j].n], msgs[j].segment, msgs[j].ep, msgs[j].local)
		}
	}
	// 3. Expand, last message first: message j only moves to bufs[k] with
	// k >= j, and every message after j has already moved out of the way.
	end := n
	for j := min(cut, len(msgs)-1); j >= 0; j-- {
		m := msgs[j]
		c := segmentCount(m.n, m.segment)
		if j == cut {
			c = partial
		}
		first := end - c
		for s := c - 1; s >= 0; s-- {
			lo, hi := 0, m.n
			if m.segment > 0 {
				lo, hi = s*m.segment, min((s+1)*m.segment, m.n)
			}
			dst := first + s
			if dst != j || lo != 0 {
				copy(bufs[dst], bufs[j][lo:hi])
			}
			sizes[dst] = hi - lo
			eps[dst], locals[dst] = m.ep, m.local
		}
		end = first
	}
	return n, maxCount
}

// spilled is a super-datagram, or the rest of one, waiting in the spill queue.
type spilled struct {
	buf     *[BufferSize]byte
	n       int // bytes in buf
	off     int // bytes already delivered
	segment int // 0 = one datagram
	ep      netip.AddrPort
	local   netip.Addr
}

// spill holds received datagrams that did not fit the caller's buffers.
type spill struct {
	pending atomic.Int32 // len(queue) - head, read without mu as a fast check

	mu    sync.Mutex // guards queue, head and free
	queue []spilled
	head  int
	free  []*[BufferSize]byte
}

// push queues a copy of data, a super-datagram of segment-byte segments.
func (sp *spill) push(data []byte, segment int, ep netip.AddrPort, local netip.Addr) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var b *[BufferSize]byte
	if k := len(sp.free); k > 0 {
		b, sp.free = sp.free[k-1], sp.free[:k-1]
	} else {
		b = new([BufferSize]byte)
	}
	sp.queue = append(sp.queue, spilled{buf: b, n: copy(b[:], data), segment: segment, ep: ep, local: local})
	sp.pending.Add(1)
}

// deliver moves queued datagrams into bufs, oldest first, and returns how
// many it wrote.
func (sp *spill) deliver(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) int {
	if sp.pending.Load() == 0 {
		return 0
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	n := 0
	for n < len(bufs) && sp.head < len(sp.queue) {
		e := &sp.queue[sp.head]
		size := e.n - e.off
		if e.segment > 0 {
			size = min(size, e.segment)
		}
		sizes[n] = copy(bufs[n], e.buf[e.off:e.off+size])
		eps[n], locals[n] = e.ep, e.local
		n++
		e.off += size
		if e.off >= e.n {
			if len(sp.free) < spillFreeMax {
				sp.free = append(sp.free, e.buf)
			}
			*e = spilled{}
			sp.head++
			sp.pending.Add(-1)
		}
	}
	if sp.head == len(sp.queue) {
		sp.queue, sp.head = sp.queue[:0], 0
	}
	return n
}
