package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// recorder is a slog.Handler that keeps the records it is given, each as
// one line "LEVEL msg key=value ...".
type recorder struct {
	mu    sync.Mutex // guards lines
	lines []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

// take returns the lines at Info or above recorded since the last call.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		if !strings.HasPrefix(l, "DEBUG") {
			out = append(out, l)
		}
	}
	r.lines = nil
	return out
}

// record makes n's engine log into a new recorder.
func (n *node) record() *recorder {
	r := &recorder{}
	n.e.log = slog.New(r)
	n.e.warn.log = n.e.log
	return r
}

func TestLogHandshakes(t *testing.T) {
	p := newPair(t, pairOptions{})
	ra, rb := p.a.record(), p.b.record()
	ka, kb := shortKey(p.a.pub), shortKey(p.b.pub)

	p.a.ad.inject(ping(innerA, innerB, "hello"))
	p.run()
	p.tick(0) // b logs its confirmed responder handshake at its next Tick
	want := []string{fmt.Sprintf("INFO handshake complete peer=%s endpoint=%s role=initiator", kb, outerB)}
	if got := ra.take(); !equalLines(got, want) {
		t.Errorf("a logged %q, want %q", got, want)
	}
	want = []string{fmt.Sprintf("INFO handshake complete peer=%s endpoint=%s role=responder", ka, outerA)}
	if got := rb.take(); !equalLines(got, want) {
		t.Errorf("b logged %q, want %q", got, want)
	}

	// Data logs nothing, and a later handshake is logged again.
	for i := range 50 {
		p.a.ad.inject(ping(innerA, innerB, fmt.Sprint(i)))
		p.b.ad.inject(ping(innerB, innerA, fmt.Sprint(i)))
		p.run()
	}
	p.tick(time.Second)
	if got := append(ra.take(), rb.take()...); len(got) != 0 {
		t.Errorf("data logged %q, want nothing", got)
	}
	if a, b := p.a.e.PeerCounters(), p.b.e.PeerCounters(); a[0].Handshakes != 1 || b[0].Handshakes != 1 {
		t.Errorf("handshakes counted %+v / %+v, want 1 each", a, b)
	}
}

func TestLogRoaming(t *testing.T) {
	p := established(t, pairOptions{})
	p.tick(0) // b's responder handshake is logged at its first Tick
	rb := p.b.record()
	ka := shortKey(p.a.pub)
	roamTo := func(src netip.AddrPort) {
		p.net.setHook(func(d *datagram) bool {
			if d.src == outerA || d.src.Addr() == outerA.Addr() {
				d.src = src
			}
			return true
		})
		p.a.ad.inject(ping(innerA, innerB, "roam"))
		p.run()
		p.tick(0)
	}
	x := netip.MustParseAddrPort("198.18.0.9:4000")
	y := netip.MustParseAddrPort("198.18.0.9:4001")

	roamTo(x)
	want := []string{fmt.Sprintf("INFO peer endpoint changed peer=%s from=%s endpoint=%s", ka, outerA, x)}
	if got := rb.take(); !equalLines(got, want) {
		t.Errorf("first roam logged %q, want %q", got, want)
	}
	roamTo(y) // within logEvery: not logged
	if got := rb.take(); len(got) != 0 {
		t.Errorf("second roam within %v logged %q, want nothing", logEvery, got)
	}
	p.clock.advance(logEvery)
	roamTo(x)
	want = []string{fmt.Sprintf("INFO peer endpoint changed peer=%s from=%s endpoint=%s", ka, y, x)}
	if got := rb.take(); !equalLines(got, want) {
		t.Errorf("roam after %v logged %q, want %q", logEvery, got, want)
	}
	roamTo(x) // same endpoint: nothing
	if got := rb.take(); len(got) != 0 {
		t.Errorf("unchanged endpoint logged %q, want nothing", got)
	}
	// A configured endpoint is no roam.
	if err := p.b.e.AddPeer(PeerConfig{PublicKey: p.a.pub, Endpoint: outerA, AllowedIPs: []netip.Prefix{netip.PrefixFrom(innerA, 32)}}); err != nil {
		t.Fatal(err)
	}
	p.clock.advance(logEvery)
	p.tick(0)
	if got := rb.take(); len(got) != 0 {
		t.Errorf("configured endpoint logged %q, want nothing", got)
	}
}

func TestLogHandshakeFailed(t *testing.T) {
	p := newPair(t, pairOptions{})
	ra := p.a.record()
	p.net.setHook(func(*datagram) bool { return false })
	kb := shortKey(p.b.pub)
	want := fmt.Sprintf("INFO handshake failed: no response, giving up until there is traffic peer=%s endpoint=%s attempts=%d", kb, outerB, maxRetransmits+2)
	for round := range 3 {
		p.a.ad.inject(ping(innerA, innerB, "lost"))
		p.run()
		for range 200 {
			p.tick(time.Second)
		}
		got := ra.take()
		if !equalLines(got, []string{want}) {
			t.Errorf("round %d: a logged %q, want %q", round, got, want)
		}
	}
	if c := p.a.e.PeerCounters(); c[0].Handshakes != 0 {
		t.Errorf("handshakes counted %d, want 0", c[0].Handshakes)
	}
}

func TestLogFailedRateLimited(t *testing.T) {
	var l logLimit
	now := time.Hour
	if !l.allow(now) || l.allow(now) || l.allow(now+logEvery-1) || !l.allow(now+logEvery) {
		t.Errorf("logLimit lets through other than once per %v", logEvery)
	}
	var zero logLimit
	if !zero.allow(0) {
		t.Errorf("zero logLimit refuses at time 0")
	}
}

func TestShortKey(t *testing.T) {
	var pk crypto.PublicKey
	for i := range pk {
		pk[i] = byte(i)
	}
	full := pk.String()
	if got, want := shortKey(pk), full[:4]+"…"+full[39:43]; got != want {
		t.Errorf("shortKey = %q, want %q (of %s)", got, want, full)
	}
}

func TestPeerCountersKeepalives(t *testing.T) {
	p := established(t, pairOptions{keepalive: 5 * time.Second})
	before := p.a.e.PeerCounters()[0].Keepalives
	for range 4 {
		p.tick(5 * time.Second)
	}
	if got := p.a.e.PeerCounters()[0].Keepalives - before; got < 4 {
		t.Errorf("keepalives counted %d in 20 s with a 5 s persistent keepalive, want at least 4", got)
	}
}

func equalLines(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}
