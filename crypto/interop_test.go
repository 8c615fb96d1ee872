package crypto

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/warrenvpn/warren/internal/leakcheck"
)

// Interop (RELIABILITY P4, in-process half): our handshake and data path
// against a real wireguard-go device with an in-memory TUN, over loopback
// UDP. No root needed.

var (
	wgInner  = netip.MustParseAddr("198.18.0.1") // the wireguard-go side's tunnel address
	ourInner = netip.MustParseAddr("198.18.0.2") // ours
)

// interopSide is our end of the interop test: identity, handshake and a UDP
// socket, driven step by step by the test.
type interopSide struct {
	t      *testing.T
	id     *Identity
	hs     *Handshake
	udp    *net.UDPConn
	wgAddr *net.UDPAddr
	tun    *tuntest.ChannelTUN
	dev    *device.Device
	buf    []byte
}

func newInteropSide(t *testing.T, psk PresharedKey) *interopSide {
	t.Helper()
	ourKey, err := NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wgKey, err := NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })

	tun := tuntest.NewChannelTUN()
	dev := device.NewDevice(tun.TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "wireguard-go: "))
	t.Cleanup(dev.Close)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "private_key=%s\nlisten_port=0\nreplace_peers=true\n", wgKey.Hex())
	fmt.Fprintf(&cfg, "public_key=%s\n", ourKey.PublicKey().Hex())
	if !psk.IsZero() {
		fmt.Fprintf(&cfg, "preshared_key=%s\n", psk.Hex())
	}
	fmt.Fprintf(&cfg, "endpoint=%s\nallowed_ip=%s/32\n", udp.LocalAddr(), ourInner)
	if err := dev.IpcSet(cfg.String()); err != nil {
		t.Fatalf("wireguard-go IpcSet: %v", err)
	}
	if err := dev.Up(); err != nil {
		t.Fatalf("wireguard-go Up: %v", err)
	}
	get, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	var port int
	for _, line := range strings.Split(get, "\n") {
		if p, ok := strings.CutPrefix(line, "listen_port="); ok {
			fmt.Sscan(p, &port)
		}
	}
	if port == 0 {
		t.Fatalf("wireguard-go listen port not found in %q", get)
	}
	s := &interopSide{
		t:      t,
		id:     NewIdentity(ourKey),
		udp:    udp,
		wgAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port},
		tun:    tun,
		dev:    dev,
		buf:    make([]byte, 2048),
	}
	s.hs = NewHandshake(s.id, wgKey.PublicKey(), psk)
	return s
}

// checkLastHandshake fails unless wireguard-go reports a completed
// handshake with us.
func (s *interopSide) checkLastHandshake() {
	s.t.Helper()
	get, err := s.dev.IpcGet()
	if err != nil {
		s.t.Fatal(err)
	}
	if !strings.Contains(get, "last_handshake_time_sec=") || strings.Contains(get, "last_handshake_time_sec=0\n") {
		s.t.Errorf("wireguard-go reports no handshake:\n%s", get)
	}
}

// send writes one datagram to the wireguard-go peer.
func (s *interopSide) send(msg []byte) {
	s.t.Helper()
	if _, err := s.udp.WriteToUDP(msg, s.wgAddr); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

// receive returns the next datagram of type typ from the peer, skipping
// others (keepalives, retransmissions). The deadline only bounds a failing
// test.
func (s *interopSide) receive(typ MessageType, skip func([]byte) bool) []byte {
	s.t.Helper()
	s.udp.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, _, err := s.udp.ReadFromUDP(s.buf)
		if err != nil {
			s.t.Fatalf("waiting for %v: %v", typ, err)
		}
		msg := s.buf[:n]
		got, err := Parse(msg)
		if err != nil {
			s.t.Fatalf("wireguard-go sent a message we cannot parse: %v", err)
		}
		if got == typ && (skip == nil || !skip(msg)) {
			return msg
		}
	}
}

// tunRead returns the next packet wireguard-go delivered to its TUN.
func (s *interopSide) tunRead() []byte {
	s.t.Helper()
	select {
	case p := <-s.tun.Inbound:
		return p
	case <-time.After(10 * time.Second):
		s.t.Fatal("wireguard-go delivered nothing to its TUN")
		return nil
	}
}

// sealPacket returns a data message carrying pkt under kp.
func sealPacket(t *testing.T, kp *Keypair, pkt []byte) []byte {
	t.Helper()
	buf := make([]byte, DataOverhead+PaddedSize(len(pkt), 1420))
	copy(buf[DataHeaderSize:], pkt)
	n, err := kp.Seal(buf, len(pkt), 1420)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// openData opens a data message from wireguard-go and checks its window.
func openData(t *testing.T, kp *Keypair, msg []byte) []byte {
	t.Helper()
	pt, counter, err := kp.Open(bytes.Clone(msg))
	if err != nil {
		t.Fatalf("Open data from wireguard-go: %v", err)
	}
	if !kp.AcceptCounter(counter) {
		t.Fatalf("counter %d from wireguard-go refused by the window", counter)
	}
	return pt
}

// ping returns an ICMP echo from src to dst, distinguishable by seq.
func ping(dst, src netip.Addr, seq byte) []byte {
	p := tuntest.Ping(dst, src)
	p[len(p)-1] = seq // last payload byte; wireguard-go does not check ICMP checksums
	return p
}

// TestInteropWireGuardGo: each side initiates once, with and without a PSK;
// data flows both ways; a replayed data packet is not delivered twice.
func TestInteropWireGuardGo(t *testing.T) {
	leakcheck.Check(t)
	for _, withPSK := range []bool{false, true} {
		var psk PresharedKey
		if withPSK {
			psk, _ = NewPresharedKey(rand.Reader)
		}
		t.Run(fmt.Sprintf("we initiate/psk=%v", withPSK), func(t *testing.T) {
			s := newInteropSide(t, psk)
			init := make([]byte, InitiationSize)
			idx, _ := RandomIndex(rand.Reader)
			if err := s.hs.CreateInitiation(init, time.Now(), rand.Reader, idx); err != nil {
				t.Fatal(err)
			}
			s.send(init)
			resp := s.receive(MessageResponse, nil)
			if !s.id.CheckMAC1(resp) || ReceiverIndex(resp) != idx {
				t.Fatalf("response: mac1 %v, receiver %x want %x", s.id.CheckMAC1(resp), ReceiverIndex(resp), idx)
			}
			if err := s.hs.ConsumeResponse(resp); err != nil {
				t.Fatalf("ConsumeResponse from wireguard-go: %v", err)
			}
			kp, err := s.hs.BeginSession(time.Now())
			if err != nil {
				t.Fatal(err)
			}
			// Us → wireguard-go.
			p1 := ping(wgInner, ourInner, 1)
			d1 := sealPacket(t, kp, p1)
			s.send(d1)
			if got := s.tunRead(); !bytes.Equal(got, p1) {
				t.Fatalf("wireguard-go delivered %x, want %x", got, p1)
			}
			// wireguard-go → us.
			p2 := ping(ourInner, wgInner, 2)
			s.tun.Outbound <- p2
			data := s.receive(MessageData, func(m []byte) bool { return len(m) == KeepaliveSize })
			if got := openData(t, kp, data); !bytes.Equal(got[:len(p2)], p2) {
				t.Fatalf("we received %x, want %x", got, p2)
			}
			// Replay d1, then send a fresh packet: the fresh one must be
			// the next thing delivered.
			s.send(d1)
			p3 := ping(wgInner, ourInner, 3)
			s.send(sealPacket(t, kp, p3))
			if got := s.tunRead(); !bytes.Equal(got, p3) {
				t.Fatalf("after a replay wireguard-go delivered %x, want the fresh %x", got, p3)
			}
			s.checkLastHandshake()
		})
		t.Run(fmt.Sprintf("wireguard-go initiates/psk=%v", withPSK), func(t *testing.T) {
			s := newInteropSide(t, psk)
			p1 := ping(ourInner, wgInner, 1)
			s.tun.Outbound <- p1 // no session yet: wireguard-go starts a handshake
			init := s.receive(MessageInitiation, nil)
			if !s.id.CheckMAC1(init) {
				t.Fatal("initiation from wireguard-go: bad mac1")
			}
			hs, err := s.id.ConsumeInitiation(init, time.Now(), lookup(s.hs))
			if err != nil {
				t.Fatalf("ConsumeInitiation from wireguard-go: %v", err)
			}
			resp := make([]byte, ResponseSize)
			idx, _ := RandomIndex(rand.Reader)
			if err := hs.CreateResponse(resp, time.Now(), rand.Reader, idx); err != nil {
				t.Fatal(err)
			}
			kp, err := hs.BeginSession(time.Now())
			if err != nil {
				t.Fatal(err)
			}
			s.send(resp)
			// wireguard-go sends its queued packet first (key confirmation).
			data := s.receive(MessageData, func(m []byte) bool { return len(m) == KeepaliveSize })
			if ReceiverIndex(data) != idx {
				t.Fatalf("data receiver %x, want %x", ReceiverIndex(data), idx)
			}
			if got := openData(t, kp, data); !bytes.Equal(got[:len(p1)], p1) {
				t.Fatalf("we received %x, want %x", got, p1)
			}
			p2 := ping(wgInner, ourInner, 2)
			d2 := sealPacket(t, kp, p2)
			s.send(d2)
			if got := s.tunRead(); !bytes.Equal(got, p2) {
				t.Fatalf("wireguard-go delivered %x, want %x", got, p2)
			}
			s.send(d2) // replay
			p3 := ping(wgInner, ourInner, 3)
			s.send(sealPacket(t, kp, p3))
			if got := s.tunRead(); !bytes.Equal(got, p3) {
				t.Fatalf("after a replay wireguard-go delivered %x, want the fresh %x", got, p3)
			}
			s.checkLastHandshake()
		})
	}
}
