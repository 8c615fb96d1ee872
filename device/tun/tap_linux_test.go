package tun_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/device/tun"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

var (
	tapLocal   = netip.MustParsePrefix("198.18.11.1/24")
	tapPeer    = netip.MustParseAddr("198.18.11.2")
	tapPeerMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// ethernet prepends an Ethernet header carrying IPv4 to pkt.
func ethernet(dst, src net.HardwareAddr, pkt []byte) []byte {
	f := make([]byte, 14, 14+len(pkt))
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	return append(f, pkt...)
}

func TestTAP(t *testing.T) {
	netlabtest.RequireRoot(t)
	ns := netlabtest.NewNamespace(t)
	var tap *tun.TAP
	if err := ns.Do(func() (err error) { tap, err = tun.OpenTAP("wtap0", 1400, true); return err }); err != nil {
		t.Fatalf("OpenTAP: %v", err)
	}
	t.Cleanup(func() { tap.Close() })
	h := ns.Handle()
	link, err := h.LinkByName("wtap0")
	if err != nil {
		t.Fatal(err)
	}
	if link.Attrs().MTU != 1400 || tap.MTU() != 1400 {
		t.Errorf("MTU = %d (kernel), %d (adapter), want 1400", link.Attrs().MTU, tap.MTU())
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: tapLocal.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	// A static neighbour, so that the kernel sends IP at once instead of ARP.
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT, IP: tapPeer.AsSlice(), HardwareAddr: tapPeerMAC}); err != nil {
		t.Fatal(err)
	}
	mac := link.Attrs().HardwareAddr

	// Write: frames addressed to the TAP's MAC reach a socket in ns.
	var conn *net.UDPConn
	if err := ns.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tapLocal.Addr(), 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	const frames = 5
	bufs := make([][]byte, frames)
	for i := range bufs {
		pkt := tuntest.UDPPacket(netip.AddrPortFrom(tapPeer, 7000), dst, fmt.Appendf(nil, "frame %d", i))
		bufs[i] = append(make([]byte, testOffset), ethernet(mac, tapPeerMAC, pkt)...)
	}
	if n, err := tap.Write(bufs, testOffset); n != frames || err != nil {
		t.Fatalf("Write() = %d, %v; want %d, nil", n, err, frames)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	for i := range frames {
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("frame %d", i) {
			t.Fatalf("receive frame %d = %q, %v", i, buf[:n], err)
		}
	}

	// A frame shorter than an Ethernet header is refused (EINVAL); Write
	// counts the others, which arrive.
	mixed := [][]byte{
		append(make([]byte, testOffset), ethernet(mac, tapPeerMAC, tuntest.UDPPacket(netip.AddrPortFrom(tapPeer, 7000), dst, []byte("good 0")))...),
		append(make([]byte, testOffset), 1, 2, 3, 4, 5),
		append(make([]byte, testOffset), ethernet(mac, tapPeerMAC, tuntest.UDPPacket(netip.AddrPortFrom(tapPeer, 7000), dst, []byte("good 1")))...),
	}
	if n, err := tap.Write(mixed, testOffset); n != 2 || !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Write() = %d, %v; want 2, EINVAL", n, err)
	}
	for i := range 2 {
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != fmt.Sprintf("good %d", i) {
			t.Fatalf("receive good frame %d = %q, %v", i, buf[:n], err)
		}
	}

	// Read: a datagram sent in ns to the peer leaves as a frame to its MAC.
	peer := netip.AddrPortFrom(tapPeer, 7001)
	if err := ns.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(peer))
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range frames {
			if _, err := c.Write(fmt.Appendf(nil, "out %d", i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	rbufs := make([][]byte, tap.BatchSize())
	for i := range rbufs {
		rbufs[i] = make([]byte, testOffset+1400+tun.EthernetOverhead)
	}
	sizes := make([]int, len(rbufs))
	got := 0
	for reads := 0; got < frames && reads < 100; reads++ {
		n, err := tap.Read(rbufs, sizes, testOffset)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		for i := range n {
			f := rbufs[i][testOffset : testOffset+sizes[i]]
			if len(f) < 14 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
				continue // ARP, IPv6 chatter
			}
			if _, d, p, ok := tuntest.ParseUDP(f[14:]); ok && d == peer {
				if want := fmt.Sprintf("out %d", got); string(p) != want {
					t.Errorf("frame payload %q, want %q", p, want)
				}
				if net.HardwareAddr(f[:6]).String() != tapPeerMAC.String() {
					t.Errorf("frame to %v, want %v", net.HardwareAddr(f[:6]), tapPeerMAC)
				}
				got++
			}
		}
	}
	if got != frames {
		t.Errorf("read %d frames to %v, want %d", got, peer, frames)
	}

	// Close wakes a blocked Read; later calls return net.ErrClosed.
	errc := make(chan error, 1)
	go func() {
		for {
			if _, err := tap.Read(rbufs, sizes, testOffset); err != nil {
				errc <- err
				return
			}
		}
	}()
	if err := tap.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked after Close")
	}
	if _, err := tap.Write(bufs, testOffset); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
	if err := tap.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
