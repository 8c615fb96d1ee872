package lifecycle_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/warrenvpn/warren/lifecycle"
)

// TestFirstPacketStartsHandshake: a packet the host sends the moment the
// link comes up (a ping, a TCP SYN) starts a handshake. An engine brought up
// after the host state dropped that packet as read while down, and no timer
// retried it, so the first ping after `warren up` waited for its own retry
// (TestP4KernelPeer in internal/vmlab met it: 12 s without an answer).
func TestFirstPacketStartsHandshake(t *testing.T) {
	f := newFakes(-1)
	f.linkUp = func() {
		if err := f.adapter.Load().Inject(echoRequest4()); err != nil {
			t.Errorf("inject: %v", err)
		}
	}
	tun, err := lifecycle.Up(t.Context(), testConfig(t), f.options(t.TempDir()))
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	defer tun.Close()
	deadline := time.Now().Add(5 * time.Second)
	for f.net.Stats().Sent == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no handshake initiation sent within 5 s of a packet read as the link came up; network %+v", f.net.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// echoRequest4 is an ICMP echo request from 198.19.0.1 to 198.19.0.2, which
// testConfig's peer (AllowedIPs 0.0.0.0/0) takes.
func echoRequest4() []byte {
	p := make([]byte, 28)
	p[0], p[8], p[9] = 0x45, 64, 1 // version and header length, TTL, ICMP
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	copy(p[12:], []byte{198, 19, 0, 1, 198, 19, 0, 2})
	binary.BigEndian.PutUint16(p[10:], ^sum16(p[:20]))
	p[20] = 8 // echo request
	binary.BigEndian.PutUint16(p[22:], ^sum16(p[20:]))
	return p
}

// sum16 is the ones' complement sum of b (RFC 1071), folded.
func sum16(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
