package tun

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// ethtoolFeatures returns the names of name's active features, as
// `ethtool -k` shows them, from the ETHTOOL_GFEATURES ioctl (the names from
// ETHTOOL_GSTRINGS of the ETH_SS_FEATURES string set).
func ethtoolFeatures(t *testing.T, name string) map[string]bool {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ioctl := func(data unsafe.Pointer) {
		t.Helper()
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data unsafe.Pointer
			_    [16]byte
		}
		copy(ifr.name[:], name)
		ifr.data = data
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); e != 0 {
			t.Fatalf("SIOCETHTOOL %s: %v", name, e)
		}
	}
	const ethSSFeatures, gstringLen = 4, 32 // ETH_SS_FEATURES, ETH_GSTRING_LEN
	info := struct {
		cmd, _ uint32
		mask   uint64
		count  uint32
	}{cmd: unix.ETHTOOL_GSSET_INFO, mask: 1 << ethSSFeatures}
	ioctl(unsafe.Pointer(&info))
	count := int(info.count)
	strs := make([]uint32, 3+count*gstringLen/4)
	strs[0], strs[1], strs[2] = unix.ETHTOOL_GSTRINGS, ethSSFeatures, uint32(count)
	ioctl(unsafe.Pointer(&strs[0]))
	blocks := (count + 31) / 32
	feats := make([]uint32, 2+4*blocks)
	feats[0], feats[1] = unix.ETHTOOL_GFEATURES, uint32(blocks)
	ioctl(unsafe.Pointer(&feats[0]))
	names := unsafe.Slice((*byte)(unsafe.Pointer(&strs[3])), count*gstringLen)
	active := map[string]bool{}
	for k := range count {
		if feats[2+4*(k/32)+2]&(1<<(k%32)) != 0 { // the block's active word
			n := names[k*gstringLen : (k+1)*gstringLen]
			if z := bytes.IndexByte(n, 0); z >= 0 {
				n = n[:z]
			}
			active[string(n)] = true
		}
	}
	return active
}

// tapFlags returns the TUNGETIFF flags of tap's file.
func tapFlags(t *testing.T, tap *TAP) uint16 {
	t.Helper()
	var flags uint16
	var ierr error
	if err := tap.rc.Control(func(fd uintptr) {
		ifr, err := unix.NewIfreq("")
		if err == nil {
			err = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr)
		}
		flags, ierr = ifr.Uint16(), err
	}); err != nil || ierr != nil {
		t.Fatalf("TUNGETIFF: %v %v", err, ierr)
	}
	return flags
}

// TestTAPOffloads: the TAP is open with a virtio-net header and, with
// offloads, has checksum offload, TSO and USO on in the kernel's view
// (ETHTOOL_GFEATURES, what `ethtool -k` shows); with offload
// false it has the header but TSO off. A UDP datagram train sent with
// UDP_SEGMENT in the TAP's namespace comes out of one Read as separate
// frames, each with a good checksum, and a Write of a coalescing run of
// frames allocates nothing.
func TestTAPOffloads(t *testing.T) {
	netlabtest.RequireRoot(t)
	for _, offload := range []bool{true, false} {
		ns := netlabtest.NewNamespace(t)
		var tap *TAP
		if err := ns.Do(func() (err error) { tap, err = OpenTAP("wtap1", 1400, offload); return err }); err != nil {
			t.Fatalf("OpenTAP: %v", err)
		}
		t.Cleanup(func() { tap.Close() })
		if f := tapFlags(t, tap); f&unix.IFF_VNET_HDR == 0 || f&unix.IFF_TAP == 0 {
			t.Errorf("offload %v: TUNGETIFF flags %#x lack IFF_TAP|IFF_VNET_HDR", offload, f)
		}
		var feats map[string]bool
		ns.Do(func() error { feats = ethtoolFeatures(t, "wtap1"); return nil })
		tso := feats["tx-tcp-segmentation"] && feats["tx-tcp6-segmentation"]
		on, refused := tap.Offloads()
		t.Logf("offload %v: offloads %q (%v), TSO %v, USO %v, checksum %v", offload, on, refused, tso, feats["tx-udp-segmentation"], feats["tx-checksum-ip-generic"])
		if offload && (!tso || !feats["tx-checksum-ip-generic"] || refused != nil && on == "off") {
			t.Errorf("offloads on: active features %v, offloads %q, %v", feats, on, refused)
		}
		if offload && on == "checksum, TSO, USO" && !feats["tx-udp-segmentation"] {
			t.Errorf("offloads %q, but the kernel shows no tx-udp-segmentation", on)
		}
		if !offload && (tso || feats["tx-udp-segmentation"] || on != "off" || tap.coalesce) {
			t.Errorf("Offload = off: active features %v, offloads %q, coalesce %v", feats, on, tap.coalesce)
		}
		if !offload {
			continue
		}

		// Read: ten 1000-byte datagrams sent as one UDP GSO packet.
		h := ns.Handle()
		link, err := h.LinkByName("wtap1")
		if err != nil {
			t.Fatal(err)
		}
		local, peer := netip.MustParseAddr("198.18.12.1"), netip.MustParseAddr("198.18.12.2")
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: local.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
		if err := h.NeighAdd(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT, IP: peer.AsSlice(), HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 2}}); err != nil {
			t.Fatal(err)
		}
		const seg, count, port = 1000, 10, 7002
		if err := ns.Do(func() error {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, port)))
			if err != nil {
				return err
			}
			defer c.Close()
			rc, err := c.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, seg) })
			if serr != nil {
				return serr
			}
			_, err = c.Write(make([]byte, seg*count))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		const offset = 20 // the engine's layer 2 offset
		bufs := make([][]byte, TAPBatchSize)
		for i := range bufs {
			bufs[i] = make([]byte, offset+maxGSOFrame+16)
		}
		sizes := make([]int, len(bufs))
		got := 0
		for reads := 0; got < count && reads < 50; reads++ {
			n, err := tap.Read(bufs, sizes, offset)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			for i := range n {
				f := bufs[i][offset : offset+sizes[i]]
				if len(f) < 14+28 || f[12] != 0x08 || f[13] != 0 || f[14+9] != ipProtoUDP || int(f[14+22])<<8|int(f[14+23]) != port {
					continue // ARP, IPv6 chatter
				}
				if err := checkIP(f[14:], 20, ipProtoUDP); err != nil || len(f) != 14+28+seg {
					t.Errorf("frame %d of %d bytes: %v", got, len(f), err)
				}
				got++
			}
		}
		if got != count {
			t.Errorf("read %d datagrams, want %d", got, count)
		}

		// Write: a run of TCP frames is coalesced and written without
		// an allocation.
		frames := withEthernet(tcpFlow(false, tcpFlagACK, offset, 1000, 1000, 1000, 1000), offset, 0)
		copy(frames[0][offset:], link.Attrs().HardwareAddr)
		head := bytes.Clone(frames[0])
		allocs := testing.AllocsPerRun(50, func() {
			copy(frames[0], head) // coalescing rewrote it
			if n, err := tap.Write(frames, offset); n != len(frames) || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
		})
		if allocs != 0 {
			t.Errorf("%v allocations per Write of %d frames", allocs, len(frames))
		}
	}
}

// TestTAPOffloadsRefused: where the kernel refuses UDP segmentation the TAP
// keeps checksum offload and TSO, and where it refuses those too it runs
// with none and does not coalesce; Offloads says which in both cases, for
// the one log line.
func TestTAPOffloadsRefused(t *testing.T) {
	netlabtest.RequireRoot(t)
	real := tapSetOffload
	t.Cleanup(func() { tapSetOffload = real })
	for _, c := range []struct {
		name    string
		refuse  int // flags the fake kernel refuses
		on      string
		tso     bool
		mention string
	}{
		{"no USO", tapUDPOffloads, "checksum, TSO", true, "USO"},
		{"none", tapTCPOffloads | tapUDPOffloads, "off", false, "TCP segmentation"},
	} {
		tapSetOffload = func(fd, flags int) error {
			if flags&c.refuse != 0 {
				return unix.EINVAL
			}
			return real(fd, flags)
		}
		ns := netlabtest.NewNamespace(t)
		var tap *TAP
		if err := ns.Do(func() (err error) { tap, err = OpenTAP("wtap2", 1400, true); return err }); err != nil {
			t.Fatalf("%s: OpenTAP: %v", c.name, err)
		}
		t.Cleanup(func() { tap.Close() })
		on, refused := tap.Offloads()
		var tso bool
		ns.Do(func() error { tso = ethtoolFeatures(t, "wtap2")["tx-tcp-segmentation"]; return nil })
		if on != c.on || refused == nil || !strings.Contains(refused.Error(), c.mention) || tso != c.tso || tap.coalesce != c.tso || tap.tio.udpGSO {
			t.Errorf("%s: offloads %q, %v, TSO %v, coalesce %v, UDP GSO %v; want %q, an error naming %s, TSO %v", c.name, on, refused, tso, tap.coalesce, tap.tio.udpGSO, c.on, c.mention, c.tso)
		}
	}
}
