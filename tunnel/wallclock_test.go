package tunnel

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestL12R10WallClockSteps covers L12 and R10: the wall clock stepped 5 h
// forward and then 10 h back panics nothing and leaves the timers alone
// (they run on boot time). TAI64N stamps still come from the wall clock:
// after the forward step the handshake completes and its time is the
// stepped one; after the backward step the initiator's stamps are older
// than the one the responder keeps, so its initiations are refused while
// the running session carries on, and the responder says why at most once
// per 10 s. Forgetting the peer (a restart of the responder) clears it.
func TestL12R10WallClockSteps(t *testing.T) {
	p := established(t, pairOptions{})
	var logs bytes.Buffer
	var mu sync.Mutex
	p.b.e.warn.log = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))

	// Forward 5 h: the next handshake completes and is dated by the wall.
	p.clock.stepWall(5 * time.Hour)
	p.clock.advance(RekeyAfterTime)
	p.a.ad.inject(ping(innerA, innerB, "later"))
	p.run()
	if got := payloads(p.b.ad.written()); got != "later" {
		t.Fatalf("after the forward step b got %q", got)
	}
	if got, want := p.b.peer().stats().LastHandshake, p.clock.Wall(); got.Sub(want).Abs() > time.Second {
		t.Errorf("b's last handshake %v, want the stepped wall clock %v", got, want)
	}

	// Back 10 h: a's new initiations are refused, the session goes on.
	p.clock.stepWall(-10 * time.Hour)
	before := p.b.e.Drops(DropHandshakeInvalid)
	p.clock.advance(RekeyAfterTime)
	for i := range 4 { // about 8 s of traffic: a's rekey and a retry
		p.a.ad.inject(ping(innerA, innerB, "x"))
		p.tick(2 * time.Second)
		if i == 0 && payloads(p.b.ad.written()) != "x" {
			t.Fatalf("the running session stopped after the backward step (drops %v)", p.b.e.DropCounts())
		}
	}
	refused := p.b.e.Drops(DropHandshakeInvalid) - before
	if refused < 2 {
		t.Errorf("%d initiations refused after the backward step, want at least 2", refused)
	}
	mu.Lock()
	lines := strings.Count(logs.String(), "timestamp not newer")
	mu.Unlock()
	if lines != 1 {
		t.Errorf("%d log lines for %d refusals within 10 s, want 1:\n%s", lines, refused, logs.String())
	}

	// b restarts (forgets a and is configured again): a gets through.
	cfg := p.b.e.Config()
	if err := p.b.e.SetConfig(Config{PrivateKey: p.b.key}); err != nil {
		t.Fatal(err)
	}
	if err := p.b.e.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	p.b.ad.written()
	p.ticks(RekeyTimeout+RekeyTimeoutJitter, 100*time.Millisecond)
	p.a.ad.inject(ping(innerA, innerB, "again"))
	p.ticks(RekeyTimeout+RekeyTimeoutJitter, 100*time.Millisecond)
	if got := payloads(p.b.ad.written()); !strings.Contains(got, "again") {
		t.Errorf("after b's restart b got %q, want again (drops %v)", got, p.b.e.DropCounts())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}
