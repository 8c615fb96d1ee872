package transport

import (
	"testing"

	"golang.org/x/net/bpf"
)

// TestWireGuardFilter runs the socket filter in x/net/bpf's interpreter on
// datagrams as the kernel shows them to it (an 8-byte UDP header first):
// what begins like a WireGuard message and is long enough for its type is
// kept, GRO trains of them too, anything else dropped.
func TestWireGuardFilter(t *testing.T) {
	vm, err := bpf.NewVM(wireGuardFilter())
	if err != nil {
		t.Fatal(err)
	}
	msg := func(typ byte, n int) []byte {
		b := make([]byte, 8+n)
		if n > 0 {
			b[8] = typ
		}
		for i := 12; i < len(b); i++ {
			b[i] = byte(i * 7) // payload bytes may be anything
		}
		return b
	}
	withReserved := func(b []byte, i int) []byte { b[8+i] = 1; return b }
	for _, tc := range []struct {
		name  string
		dgram []byte
		keep  bool
	}{
		{"keepalive", msg(4, 32), true},
		{"data 48", msg(4, 48), true},
		{"data 1456", msg(4, 1456), true},
		{"data GRO train of 1456s and a 96", msg(4, 40*1456+96), true},
		{"data and a response, merged", msg(4, 1456+92), true},
		{"data 31", msg(4, 31), false},
		{"data 16", msg(4, 16), false},
		{"initiation", msg(1, 148), true},
		{"initiation and a keepalive, merged", msg(1, 148+32), true},
		{"initiation 147", msg(1, 147), false},
		{"response", msg(2, 92), true},
		{"response and a keepalive, merged", msg(2, 92+32), true},
		{"response 91", msg(2, 91), false},
		{"cookie reply", msg(3, 64), true},
		{"cookie reply 63", msg(3, 63), false},
		{"type 0", msg(0, 148), false},
		{"type 5", msg(5, 64), false},
		{"type 255", msg(255, 32), false},
		{"reserved byte 1", withReserved(msg(4, 32), 1), false},
		{"reserved byte 2", withReserved(msg(2, 92), 2), false},
		{"reserved byte 3", withReserved(msg(1, 148), 3), false},
		{"empty", msg(0, 0), false},
		{"3 bytes", msg(4, 3)[:11], false},
		{"4 bytes", msg(4, 4), false},
	} {
		n, err := vm.Run(tc.dgram)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if kept := n != 0; kept != tc.keep {
			t.Errorf("%s (%d bytes): kept %v, want %v", tc.name, len(tc.dgram)-8, kept, tc.keep)
		}
		if tc.keep && n < len(tc.dgram) {
			t.Errorf("%s: keeps %d of %d bytes, want all", tc.name, n, len(tc.dgram))
		}
	}
}
