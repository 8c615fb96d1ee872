//go:build linux

package transport

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"
)

// TestWireGuardOnly sends WireGuard-shaped messages and garbage over
// loopback, each in a send of its own or as a GSO train of equal sizes, to a
// socket opened with WireGuardOnly: the messages arrive in order, the
// garbage never does. (A train is judged by its first message: the engine
// drops what else it carries.)
func TestWireGuardOnly(t *testing.T) {
	shaped := func(typ byte, n int, fill byte) []byte {
		b := bytes.Repeat([]byte{fill}, n)
		copy(b, []byte{typ, 0, 0, 0})
		return b
	}
	garbage := func(n int, fill byte) []byte { return bytes.Repeat([]byte{fill}, n) }
	sends := []struct {
		keep  bool
		train [][]byte // one Send
	}{
		{false, [][]byte{garbage(100, 0xa5)}},
		{true, [][]byte{shaped(1, 148, 1)}},
		{false, [][]byte{garbage(3, 4)}},
		{false, [][]byte{shaped(4, 31, 2)}},
		{false, [][]byte{shaped(1, 147, 3)}},
		{true, [][]byte{shaped(2, 92, 5)}},
		{true, [][]byte{shaped(3, 64, 6)}},
		{false, [][]byte{garbage(1200, 0x5a), garbage(1200, 0x5b), garbage(1200, 0x5c)}},
		{true, [][]byte{shaped(4, 1456, 7), shaped(4, 1456, 8), shaped(4, 1456, 9), shaped(4, 96, 10)}},
		{false, [][]byte{append([]byte{4, 0, 1, 0}, garbage(28, 11)...)}}, // reserved bits set
		{true, [][]byte{shaped(4, 32, 12)}},
	}
	var want [][]byte
	for _, s := range sends {
		if s.keep {
			want = append(want, s.train...)
		}
	}
	for _, family := range []string{"ipv4", "ipv6"} {
		t.Run(family, func(t *testing.T) {
			a, b := listenTB(t, Options{}), listenTB(t, Options{WireGuardOnly: true})
			for _, s := range sends {
				sendAll(t, a, s.train, loopback(t, b, family))
			}
			receiveAll(t, b, want, loopback(t, a, family), 64)
			b.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			bufs, sizes, eps, locals := receiveBufs(8)
			if n, err := b.Receive(bufs, sizes, eps, locals); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("after the messages: Receive = %d, %v; want nothing more (garbage got through)", n, err)
			}
			// The kernel counts what the filter refused: one per garbage
			// send, the GSO train once or per datagram.
			if n, err := b.SocketDrops(); err != nil || n < 6 || n > 8 {
				t.Errorf("SocketDrops = %d, %v; want the 6 garbage sends (8 datagrams)", n, err)
			}
			if n, err := a.SocketDrops(); err != nil || n != 0 {
				t.Errorf("the sender's SocketDrops = %d, %v; want 0", n, err)
			}
		})
	}
}
