package tunnel

import (
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// failingTransport refuses every send with err and counts what it was
// given by message type.
type failingTransport struct {
	*stepTransport
	err   error
	mu    sync.Mutex
	calls int
	types map[crypto.MessageType]int
}

func (t *failingTransport) Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	for _, b := range bufs {
		t.types[crypto.MessageType(b[0])]++
	}
	return 0, t.err
}

// TestL9LastingSendErrors (L9): with every send failing for 90 s (a
// network that stays unreachable), the handshake goes on being retried from
// the timer, once per RekeyTimeout as without errors, the errors are
// counted, and "send failed" is logged at most once per logEvery; nothing
// loops (p.run fails a test whose network does not settle).
func TestL9LastingSendErrors(t *testing.T) {
	p := newPair(t, pairOptions{})
	ra := p.a.record()
	ft := &failingTransport{stepTransport: p.a.tr, err: syscall.ENETUNREACH, types: make(map[crypto.MessageType]int)}
	box := newTransportBox(ft)
	p.a.e.tr.Store(box)
	for _, pl := range p.a.e.extra {
		pl.tr.Store(box)
	}
	p.a.ad.inject(ping(innerA, innerB, "unreachable"))
	p.run()
	const lasting = 90 * time.Second
	for range int(lasting / (100 * time.Millisecond)) {
		p.tick(100 * time.Millisecond)
	}
	ft.mu.Lock()
	initiations, calls := ft.types[crypto.MessageInitiation], ft.calls
	ft.mu.Unlock()
	// The first at once, then one per RekeyTimeout plus up to 333 ms of
	// jitter: 17 to 19 in 90 s.
	if lo, hi := int(lasting/(RekeyTimeout+RekeyTimeoutJitter)), int(lasting/RekeyTimeout)+1; initiations < lo || initiations > hi {
		t.Errorf("%d initiations tried in %v of failing sends, want %d to %d", initiations, lasting, lo, hi)
	}
	if calls != initiations {
		t.Errorf("%d sends for %d initiations: something else was sent, or retried at once", calls, initiations)
	}
	if got := p.a.e.Drops(DropSendError); got != uint64(initiations) {
		t.Errorf("send_error drops = %d, want one per initiation (%d)", got, initiations)
	}
	warned := 0
	for _, l := range ra.take() {
		if strings.HasPrefix(l, "WARN send failed") {
			warned++
		}
	}
	if max := int(lasting/logEvery) + 1; warned < 1 || warned > max {
		t.Errorf("%d \"send failed\" warnings in %v, want 1 to %d (one per %v)", warned, lasting, max, logEvery)
	}
	t.Logf("%d initiations, %d warnings in %v of failing sends", initiations, warned, lasting)
}
