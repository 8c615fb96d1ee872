package crypto

import (
	"bytes"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
)

// testKeypairs returns the two keypairs of a completed handshake
// (initiator's first).
func testKeypairs(tb testing.TB) (*Keypair, *Keypair) {
	tb.Helper()
	a, b := testPair(tb, 21, PresharedKey{})
	return handshake(tb, a, b, t0, newTestRand(22))
}

// TestPaddedSize is P12: padding rounds up to 16 but never past the MTU;
// MTU 0 (or negative) pads without a cap and divides by nothing.
func TestPaddedSize(t *testing.T) {
	tests := []struct{ n, mtu, want int }{
		{0, 1420, 0},
		{1, 1420, 16},
		{16, 1420, 16},
		{17, 1420, 32},
		{84, 1420, 96},
		{1410, 1420, 1420},
		{1419, 1420, 1420},
		{1420, 1420, 1420},
		{1421, 1420, 1421},
		{5000, 1420, 5000},
		{1, 0, 16},
		{1419, 0, 1424},
		{0, 0, 0},
		{7, -5, 16},
		{1, 1, 1},
		{3, 10, 10},
	}
	for _, tc := range tests {
		if got := PaddedSize(tc.n, tc.mtu); got != tc.want {
			t.Errorf("PaddedSize(%d, %d) = %d, want %d", tc.n, tc.mtu, got, tc.want)
		}
	}
}

// TestSealOpen seals and opens at several sizes and MTUs, checking the wire
// format: header, padding, total length (P12, M10's crypto half).
func TestSealOpen(t *testing.T) {
	ki, kr := testKeypairs(t)
	for i, tc := range []struct{ n, mtu int }{{0, 1420}, {1, 1420}, {84, 1420}, {1419, 1420}, {1420, 1420}, {100, 0}, {3000, 1420}} {
		buf := make([]byte, DataOverhead+PaddedSize(tc.n, tc.mtu))
		for j := range tc.n {
			buf[DataHeaderSize+j] = byte(j + 1)
		}
		want := bytes.Clone(buf[DataHeaderSize : DataHeaderSize+tc.n])
		total, err := ki.Seal(buf, tc.n, tc.mtu)
		if err != nil {
			t.Fatalf("Seal(%d, %d): %v", tc.n, tc.mtu, err)
		}
		if total != len(buf) {
			t.Errorf("Seal(%d, %d) = %d, want %d", tc.n, tc.mtu, total, len(buf))
		}
		if typ, err := Parse(buf); err != nil || typ != MessageData {
			t.Errorf("Parse(sealed) = %v, %v", typ, err)
		}
		if got := ReceiverIndex(buf); got != kr.LocalIndex {
			t.Errorf("receiver = %x, want %x", got, kr.LocalIndex)
		}
		if got := binary.LittleEndian.Uint64(buf[8:]); got != uint64(i) {
			t.Errorf("counter = %d, want %d", got, i)
		}
		pt, counter, err := kr.Open(buf)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if counter != uint64(i) || len(pt) != PaddedSize(tc.n, tc.mtu) || !bytes.Equal(pt[:tc.n], want) || !isZero(pt[tc.n:]) {
			t.Errorf("Open = %d bytes, counter %d; want %d bytes, counter %d, zero padding", len(pt), counter, PaddedSize(tc.n, tc.mtu), i)
		}
		if !kr.AcceptCounter(counter) || kr.AcceptCounter(counter) {
			t.Errorf("AcceptCounter(%d) not accepted exactly once", counter)
		}
	}
	// Errors that are the caller's fault.
	if _, err := ki.Seal(make([]byte, 40), 10, 1420); err != ErrBufferTooSmall {
		t.Errorf("Seal into short buffer = %v, want ErrBufferTooSmall", err)
	}
	if _, err := ki.Seal(make([]byte, 64), -1, 1420); err != ErrBufferTooSmall {
		t.Errorf("Seal(-1) = %v, want ErrBufferTooSmall", err)
	}
}

// TestOpenBad covers M1, M5 and M6: short data, an unknown receiver index,
// and a corrupted byte at every position are all refused, and the replay
// window is untouched (the next real counter is still accepted).
func TestOpenBad(t *testing.T) {
	ki, kr := testKeypairs(t)
	buf := make([]byte, 128)
	n, err := ki.Seal(buf, 40, 1420)
	if err != nil {
		t.Fatal(err)
	}
	good := bytes.Clone(buf[:n])
	// M1: data under 32 bytes.
	for l := range DataOverhead {
		if _, _, err := kr.Open(bytes.Clone(good[:l])); err != ErrShort {
			t.Errorf("Open(%d bytes) = %v, want ErrShort", l, err)
		}
	}
	// M5: unknown receiver index, and a handshake message's type.
	m := bytes.Clone(good)
	binary.LittleEndian.PutUint32(m[4:], kr.LocalIndex+1)
	if _, _, err := kr.Open(m); err != ErrIndex {
		t.Errorf("Open(wrong index) = %v, want ErrIndex", err)
	}
	m = bytes.Clone(good)
	m[0] = byte(MessageResponse)
	if _, _, err := kr.Open(m); err != ErrType {
		t.Errorf("Open(type 2) = %v, want ErrType", err)
	}
	// M6: every byte after the header flipped in turn (header bytes 8..15
	// are the counter and the nonce, so they must fail too).
	for i := 8; i < len(good); i++ {
		m := bytes.Clone(good)
		m[i] ^= 0x40
		if _, _, err := kr.Open(m); err != ErrDecrypt && err != ErrCounter {
			t.Fatalf("Open with byte %d corrupted = %v, want ErrDecrypt", i, err)
		}
	}
	// R3: a forged counter far ahead with a bad tag does not move the
	// window.
	m = bytes.Clone(good)
	binary.LittleEndian.PutUint64(m[8:], 1_000_000)
	if _, _, err := kr.Open(m); err != ErrDecrypt {
		t.Fatalf("Open(forged counter) = %v, want ErrDecrypt", err)
	}
	m = bytes.Clone(good)
	binary.LittleEndian.PutUint64(m[8:], RejectAfterMessages)
	if _, _, err := kr.Open(m); err != ErrCounter {
		t.Errorf("Open(counter at limit) = %v, want ErrCounter", err)
	}
	_, c, err := kr.Open(bytes.Clone(good))
	if err != nil || c != 0 || !kr.AcceptCounter(c) {
		t.Fatalf("real packet after forgeries: counter %d, %v", c, err)
	}
	// A replay of the real packet authenticates but the window refuses it.
	if _, c, err := kr.Open(bytes.Clone(good)); err != nil || kr.AcceptCounter(c) {
		t.Errorf("replayed packet: Open err %v, AcceptCounter true", err)
	}
	// The keypair's own direction does not open its own messages.
	if _, _, err := ki.Open(bytes.Clone(good)); err == nil {
		t.Errorf("initiator opened its own message")
	}
}

// TestSendCounterLimits is R6: with the counter preset near 2^60 and near
// RejectAfterMessages and many concurrent senders, no nonce repeats, a
// rekey is asked for past 2^60 and sending stops at the limit. It must
// pass with GOARCH=386 too.
func TestSendCounterLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start uint64
		n     int // messages offered
	}{
		{"rekey", RekeyAfterMessages - 100, 800},
		{"reject", RejectAfterMessages - 300, 800},
		{"exhausted", RejectAfterMessages, 56},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ki, _ := testKeypairs(t)
			ki.PresetSendCounter(tc.start)
			const workers = 8
			var mu sync.Mutex
			seen := map[uint64]bool{}
			var rejected int
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					buf := make([]byte, 64)
					for range tc.n / workers {
						_, err := ki.Seal(buf, 0, 1420)
						mu.Lock()
						if err == ErrRejectAfterMessages {
							rejected++
						} else if err != nil {
							t.Errorf("Seal: %v", err)
						} else {
							c := binary.LittleEndian.Uint64(buf[8:])
							if seen[c] {
								t.Errorf("nonce %d used twice", c)
							}
							if c >= RejectAfterMessages {
								t.Errorf("nonce %d at or past the limit", c)
							}
							seen[c] = true
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			wantSent := min(uint64(tc.n), RejectAfterMessages-tc.start)
			if uint64(len(seen)) != wantSent || rejected != tc.n-int(wantSent) {
				t.Errorf("sent %d, rejected %d; want %d, %d", len(seen), rejected, wantSent, uint64(tc.n)-wantSent)
			}
			if !ki.NeedsRekey() {
				t.Errorf("NeedsRekey() = false at counter %d", ki.sendCounter.Load())
			}
		})
	}
	ki, _ := testKeypairs(t)
	ki.PresetSendCounter(RekeyAfterMessages)
	if ki.NeedsRekey() {
		t.Errorf("NeedsRekey() at exactly RekeyAfterMessages")
	}
}

// TestReserveCounters is R6 for batches: a reservation that reaches
// RejectAfterMessages gets only the counters below it and
// ErrRejectAfterMessages, later ones get none, Seal then fails as before,
// and a reservation ending exactly at the limit succeeds in full.
func TestReserveCounters(t *testing.T) {
	ki, kr := testKeypairs(t)
	ki.PresetSendCounter(RejectAfterMessages - 5)
	first, got, err := ki.ReserveCounters(5)
	if first != RejectAfterMessages-5 || got != 5 || err != nil {
		t.Fatalf("ReserveCounters(5) at limit-5 = %d, %d, %v; want %d, 5, nil", first, got, err, uint64(RejectAfterMessages-5))
	}
	if _, got, err := ki.ReserveCounters(1); got != 0 || err != ErrRejectAfterMessages {
		t.Fatalf("ReserveCounters(1) at the limit = %d, %v", got, err)
	}

	ki.PresetSendCounter(RejectAfterMessages - 3)
	first, got, err = ki.ReserveCounters(64)
	if first != RejectAfterMessages-3 || got != 3 || err != ErrRejectAfterMessages {
		t.Fatalf("ReserveCounters(64) at limit-3 = %d, %d, %v; want %d, 3, ErrRejectAfterMessages", first, got, err, uint64(RejectAfterMessages-3))
	}
	buf := make([]byte, 64)
	for i := range got {
		m, err := ki.SealCounter(buf, 0, 1420, first+uint64(i))
		if err != nil {
			t.Fatalf("SealCounter(limit-%d): %v", got-i, err)
		}
		if _, c, err := kr.Open(buf[:m]); err != nil || c != first+uint64(i) {
			t.Fatalf("Open of counter %d = %d, %v", first+uint64(i), c, err)
		}
	}
	if _, err := ki.Seal(buf, 0, 1420); err != ErrRejectAfterMessages {
		t.Errorf("Seal after the limit: %v", err)
	}
	if _, got, err := ki.ReserveCounters(64); got != 0 || err != ErrRejectAfterMessages {
		t.Errorf("ReserveCounters after the limit = %d, %v", got, err)
	}
	if _, err := ki.SealCounter(buf, 0, 1420, RejectAfterMessages); err != ErrRejectAfterMessages {
		t.Errorf("SealCounter(RejectAfterMessages): %v", err)
	}
	if _, _, err := ki.ReserveCounters(0); err != nil {
		t.Errorf("ReserveCounters(0): %v", err)
	}
}

// TestReserveCountersConcurrent: workers reserving batches of several sizes
// near the limit get disjoint counters that cover exactly the counters
// left, none at or past the limit.
func TestReserveCountersConcurrent(t *testing.T) {
	ki, _ := testKeypairs(t)
	const left = 5000
	ki.PresetSendCounter(RejectAfterMessages - left)
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for {
				first, got, err := ki.ReserveCounters(1 + w*9)
				mu.Lock()
				for i := range uint64(got) {
					c := first + i
					if seen[c] || c >= RejectAfterMessages {
						t.Errorf("counter %d reserved twice or past the limit", c)
					}
					seen[c] = true
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != left {
		t.Errorf("%d counters reserved, want %d", len(seen), left)
	}
}

// TestSealOpenAllocs pins the hot path at zero allocations.
func TestSealOpenAllocs(t *testing.T) {
	ki, kr := testKeypairs(t)
	buf := make([]byte, 1500)
	allocs := testing.AllocsPerRun(100, func() {
		n, err := ki.Seal(buf, 1400, 1420)
		if err != nil {
			t.Fatal(err)
		}
		_, c, err := kr.Open(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		kr.AcceptCounter(c)
	})
	if allocs != 0 {
		t.Errorf("Seal+Open: %v allocs per run, want 0", allocs)
	}
	var scratch [InitiationSize]byte
	_, b := testPair(t, 3, PresharedKey{})
	allocs = testing.AllocsPerRun(100, func() {
		Parse(scratch[:])
		b.id.CheckMAC1(scratch[:])
		ReceiverIndex(buf)
	})
	if allocs != 0 {
		t.Errorf("Parse+CheckMAC1: %v allocs per run, want 0", allocs)
	}
}

// TestKeypairConcurrentDecrypt is R5 on a keypair: several decrypt workers
// open copies of the same packets (every packet arrives several times);
// each counter is accepted exactly once, with no race under -race.
func TestKeypairConcurrentDecrypt(t *testing.T) {
	ki, kr := testKeypairs(t)
	const packets, workers = 300, 4
	sealed := make([][]byte, packets)
	for i := range sealed {
		buf := make([]byte, 64)
		n, err := ki.Seal(buf, 10, 1420)
		if err != nil {
			t.Fatal(err)
		}
		sealed[i] = buf[:n]
	}
	var accepted [packets]atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, 64)
			for i := range packets {
				j := (i*7 + w*13) % packets // a different order per worker
				n := copy(buf, sealed[j])
				_, c, err := kr.Open(buf[:n])
				if err != nil {
					t.Errorf("Open: %v", err)
					return
				}
				if kr.AcceptCounter(c) {
					accepted[c].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for c := range accepted {
		if n := accepted[c].Load(); n != 1 {
			t.Errorf("counter %d accepted %d times", c, n)
		}
	}
}
