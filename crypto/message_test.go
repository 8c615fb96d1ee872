package crypto

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

// TestParse covers M1–M4: short payloads, wrong sizes per type, non-zero
// reserved bytes and unknown types are all dropped with a reason.
func TestParse(t *testing.T) {
	msg := func(header uint32, size int) []byte {
		b := make([]byte, size)
		if size >= 4 {
			binary.LittleEndian.PutUint32(b, header)
		} else {
			var h [4]byte
			binary.LittleEndian.PutUint32(h[:], header)
			copy(b, h[:])
		}
		return b
	}
	tests := []struct {
		name string
		msg  []byte
		want MessageType
		err  error
	}{
		{"empty", nil, 0, ErrShort},
		{"1 byte", msg(1, 1), 0, ErrShort},
		{"3 bytes", msg(4, 3), 0, ErrShort},
		{"initiation", msg(1, InitiationSize), MessageInitiation, nil},
		{"response", msg(2, ResponseSize), MessageResponse, nil},
		{"cookie reply", msg(3, CookieReplySize), MessageCookieReply, nil},
		{"keepalive", msg(4, KeepaliveSize), MessageData, nil},
		{"data 1500", msg(4, 1500), MessageData, nil},
		{"data 31", msg(4, 31), 0, ErrShort},                          // M1
		{"data 4", msg(4, 4), 0, ErrShort},                            // M1
		{"initiation 147", msg(1, 147), 0, ErrSize},                   // M2
		{"initiation 149", msg(1, 149), 0, ErrSize},                   // M2
		{"response 91", msg(2, 91), 0, ErrSize},                       // M2
		{"response 148", msg(2, 148), 0, ErrSize},                     // M2
		{"cookie 63", msg(3, 63), 0, ErrSize},                         // M2
		{"cookie 92", msg(3, 92), 0, ErrSize},                         // M2
		{"initiation 4", msg(1, 4), 0, ErrSize},                       // M2
		{"reserved 1", msg(1|1<<8, 148), 0, ErrReserved},              // M3
		{"reserved 2", msg(2|1<<16, 92), 0, ErrReserved},              // M3
		{"reserved 3", msg(3|1<<24, 64), 0, ErrReserved},              // M3
		{"reserved 4", msg(4|0x80<<24, 64), 0, ErrReserved},           // M3
		{"type 0", msg(0, 148), 0, ErrType},                           // M4
		{"type 5", msg(5, 148), 0, ErrType},                           // M4
		{"type 255", msg(255, 64), 0, ErrType},                        // M4
		{"type 0xffffffff", msg(math.MaxUint32, 148), 0, ErrReserved}, // M4
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.msg)
			if got != tc.want || err != tc.err {
				t.Errorf("Parse(%d bytes, %x) = %v, %v, want %v, %v", len(tc.msg), tc.msg[:min(4, len(tc.msg))], got, err, tc.want, tc.err)
			}
		})
	}
	// Every type from 5 to 255 is unknown.
	for typ := 5; typ <= 255; typ++ {
		if _, err := Parse(msg(uint32(typ), 148)); err != ErrType {
			t.Errorf("Parse(type %d) = %v, want ErrType", typ, err)
		}
	}
}

func TestIndices(t *testing.T) {
	b := make([]byte, InitiationSize)
	binary.LittleEndian.PutUint32(b[4:], 0x11111111)
	binary.LittleEndian.PutUint32(b[8:], 0x22222222)
	for _, tc := range []struct {
		typ              MessageType
		size             int
		sender, receiver uint32
	}{
		{MessageInitiation, InitiationSize, 0x11111111, 0},
		{MessageResponse, ResponseSize, 0x11111111, 0x22222222},
		{MessageCookieReply, CookieReplySize, 0, 0x11111111},
		{MessageData, 100, 0, 0x11111111},
		{9, 100, 0, 0},
	} {
		b[0] = byte(tc.typ)
		if s, r := SenderIndex(b[:tc.size]), ReceiverIndex(b[:tc.size]); s != tc.sender || r != tc.receiver {
			t.Errorf("%v: SenderIndex, ReceiverIndex = %x, %x, want %x, %x", tc.typ, s, r, tc.sender, tc.receiver)
		}
	}
	if ReceiverIndex(b[:5]) != 0 || SenderIndex(b[:5]) != 0 {
		t.Errorf("indices of a short message not 0")
	}
	if MessageData.String() != "data" || MessageType(9).String() != "type 9" {
		t.Errorf("MessageType.String wrong")
	}
}

// TestRandomIndex is P13 (crypto half): 10^5 sender indices are uniformly
// random 32-bit values with no fixed bits, and CreateInitiation and
// CreateResponse write exactly the index they are given.
func TestRandomIndex(t *testing.T) {
	const n = 100_000
	r := newTestRand(77)
	var ones [32]int
	seen := make(map[uint32]bool, n)
	dups := 0
	var buckets [256]int
	for range n {
		x, err := RandomIndex(r)
		if err != nil {
			t.Fatal(err)
		}
		if seen[x] {
			dups++
		}
		seen[x] = true
		for b := range 32 {
			ones[b] += int(x >> b & 1)
		}
		buckets[x>>24]++
	}
	// Expected duplicates among 10^5 draws from 2^32: about 1.2.
	if dups > 10 {
		t.Errorf("%d duplicate indices in %d draws", dups, n)
	}
	for b, c := range ones {
		// Mean n/2, sigma ~158; 6 sigma is far outside chance.
		if math.Abs(float64(c)-n/2) > 6*math.Sqrt(n/4) {
			t.Errorf("bit %d set %d times in %d draws", b, c, n)
		}
	}
	var chi2 float64
	for _, c := range buckets {
		d := float64(c) - n/256.0
		chi2 += d * d / (n / 256.0)
	}
	if chi2 > 400 { // 255 degrees of freedom; p < 1e-7 past 400
		t.Errorf("top-byte chi-square %.1f: not uniform", chi2)
	}
	if _, err := RandomIndex(newTestRandN(0)); err == nil {
		t.Errorf("RandomIndex on empty reader: no error")
	}

	a, bb := testPair(t, 5, PresharedKey{})
	var m1 [InitiationSize]byte
	var m2 [ResponseSize]byte
	for _, idx := range []uint32{0, 1, 0xdeadbeef, math.MaxUint32} {
		if err := a.hs.CreateInitiation(m1[:], t0.Add(time.Duration(idx%1000+1)*time.Second), r, idx); err != nil || SenderIndex(m1[:]) != idx {
			t.Fatalf("CreateInitiation(index %x) wrote %x, %v", idx, SenderIndex(m1[:]), err)
		}
		bb.hs.mu.Lock()
		bb.hs.hasLastInitiation = false
		bb.hs.lastTimestamp = Timestamp{}
		bb.hs.mu.Unlock()
		if _, err := bb.id.ConsumeInitiation(m1[:], t0, lookup(bb.hs)); err != nil {
			t.Fatal(err)
		}
		if err := bb.hs.CreateResponse(m2[:], t0, r, ^idx); err != nil || SenderIndex(m2[:]) != ^idx || ReceiverIndex(m2[:]) != idx {
			t.Fatalf("CreateResponse(index %x) wrote %x/%x, %v", ^idx, SenderIndex(m2[:]), ReceiverIndex(m2[:]), err)
		}
	}
}
