//go:build linux

package main

// `warren demo` shows the tunnel working on this machine with no config:
//  1. two network namespaces joined by a veth pair (the underlay);
//  2. fresh keys, a config for each side, and a real `warren up` process in each;
//  3. ICMP pings over IPv4 and IPv6 through the tunnel, then a TCP transfer
//     whose SHA-256 is checked on arrival;
//  4. everything removed, also on Ctrl-C.
//
// With --mode tap the tunnel carries Ethernet (demo_tap_linux.go): each
// side's `warren up` bridges its TAP to a host namespace, and the hosts,
// in one subnet, find each other by ARP and neighbour discovery across it.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/netlab"
)

// Overlay addresses of the demo tunnel (RFC 2544 and ULA test ranges).
var demoOverlay = [2]struct{ v4, v6 netip.Prefix }{
	{netip.MustParsePrefix("198.19.0.1/24"), netip.MustParsePrefix("fd00:7761:1::1/64")},
	{netip.MustParsePrefix("198.19.0.2/24"), netip.MustParsePrefix("fd00:7761:1::2/64")},
}

const demoPort = 51820

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo")
	size := fs.Int("mb", 256, "size of the TCP transfer in MiB")
	pings := fs.Int("pings", 5, "pings per address family")
	mode := fs.String("mode", "tun", "tun (IP packets) or tap (Ethernet frames between bridged hosts)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *mode != "tun" && *mode != "tap":
		return fmt.Errorf("%w: demo: --mode %q: want tun or tap", errUsage, *mode)
	case fs.NArg() != 0:
		return fmt.Errorf("%w: demo: unexpected argument %q", errUsage, fs.Arg(0))
	case *size <= 0:
		return fmt.Errorf("%w: demo: --mb %d: want at least 1", errUsage, *size)
	case *pings <= 0:
		return fmt.Errorf("%w: demo: --pings %d: want at least 1", errUsage, *pings)
	}
	if os.Geteuid() != 0 {
		return errors.New("demo: needs root (it creates network namespaces and TUN devices)")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	d := &demo{out: stdout, exe: exe}
	defer d.close()
	if *mode == "tap" {
		return d.runTAP(ctx, *pings, int64(*size)<<20)
	}
	return d.run(ctx, *pings, int64(*size)<<20)
}

type demo struct {
	out   io.Writer
	exe   string
	lab   *netlab.Lab
	dir   string
	names [2]string // interface names
	procs []*demoProc
	hosts []*netlab.Namespace // --mode tap: the namespaces behind the bridges
}

type demoProc struct {
	ns   *netlab.Namespace
	cmd  interface{ Wait() error }
	pid  int
	log  *bytes.Buffer
	done chan error
}

func (d *demo) step(format string, a ...any) {
	fmt.Fprintf(d.out, "==> "+format+"\n", a...)
}

// newLab makes the two namespaces, the configuration directory and the
// keys of both sides.
func (d *demo) newLab() (keys [2]wgcrypto.PrivateKey, err error) {
	d.step("creating two network namespaces joined by a veth pair (198.18.0.1 <-> 198.18.0.2)")
	if d.lab, err = netlab.NewLab("wdemo", 0); err != nil {
		return keys, err
	}
	if d.dir, err = os.MkdirTemp("", "warren-demo-"); err != nil {
		return keys, err
	}
	for i := range keys {
		if keys[i], err = wgcrypto.NewPrivateKey(rand.Reader); err != nil {
			return keys, err
		}
	}
	d.step("generated keys: A %s, B %s", keys[0].PublicKey(), keys[1].PublicKey())
	return keys, nil
}

func (d *demo) run(ctx context.Context, pings int, size int64) error {
	keys, err := d.newLab()
	if err != nil {
		return err
	}
	underlay := [2]netip.Addr{d.lab.AddrA.Addr(), d.lab.AddrB.Addr()}
	nss := [2]*netlab.Namespace{d.lab.A, d.lab.B}
	d.pickNames()
	start := time.Now()
	if err := d.startBoth(ctx, func(i int) string {
		return demoConfig(keys[i], keys[1-i].PublicKey(), i, underlay[1-i])
	}); err != nil {
		return err
	}
	d.step("tunnel addresses: 198.19.0.1 <-> 198.19.0.2 and fd00:7761:1::1 <-> fd00:7761:1::2")
	for i, ns := range nss {
		if err := d.waitLink(ctx, ns, d.names[i], d.procs[i]); err != nil {
			return err
		}
	}

	if err := d.ping(ctx, d.lab.A, demoOverlay[1].v4.Addr(), demoOverlay[1].v6.Addr(), pings, start); err != nil {
		return err
	}
	return d.transfer(ctx, d.lab.A, d.lab.B, demoOverlay[1].v4.Addr(), size)
}

// ping pings v4 and then v6 from ns, pings times each, and prints the
// round-trip times. The first ping needs a handshake (and in TAP mode ARP
// across the tunnel): its time since start is printed.
func (d *demo) ping(ctx context.Context, ns *netlab.Namespace, v4, v6 netip.Addr, pings int, start time.Time) error {
	for _, fam := range []struct {
		name string
		dst  netip.Addr
	}{{"IPv4", v4}, {"IPv6", v6}} {
		rtts, err := demoPing(ctx, ns, fam.dst, pings)
		if err != nil {
			return fmt.Errorf("ping %s over the tunnel: %w\n%s", fam.dst, err, d.logs())
		}
		if fam.name == "IPv4" {
			d.step("handshake done and first ping answered %v after start", time.Since(start).Round(time.Millisecond))
		}
		sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
		d.step("ping %s %s: %d/%d answered, rtt min %v median %v max %v", fam.name, fam.dst, len(rtts), pings,
			rtts[0].Round(time.Microsecond), rtts[len(rtts)/2].Round(time.Microsecond), rtts[len(rtts)-1].Round(time.Microsecond))
	}
	return nil
}

// transfer moves size bytes over TCP from a to dst in b and prints the
// rate.
func (d *demo) transfer(ctx context.Context, a, b *netlab.Namespace, dst netip.Addr, size int64) error {
	gbps, took, err := demoTransfer(ctx, a, b, dst, size)
	if err != nil {
		return fmt.Errorf("TCP transfer: %w\n%s", err, d.logs())
	}
	d.step("TCP: %d MiB from A to B in %v, SHA-256 matches: %.2f Gbit/s", size>>20, took.Round(time.Millisecond), gbps)
	return nil
}

// pickNames chooses the interface names. The control sockets live in
// /var/run/wireguard, shared by every namespace: each side needs its own
// name.
func (d *demo) pickNames() {
	var tag [2]byte
	rand.Read(tag[:])
	for i := range d.names {
		d.names[i] = fmt.Sprintf("wd%x%c", tag, 'a'+i)
	}
}

// startBoth writes side i's configuration conf(i) and starts `warren up`
// with it in the lab's namespace A or B.
func (d *demo) startBoth(ctx context.Context, conf func(i int) string) error {
	for i, ns := range [2]*netlab.Namespace{d.lab.A, d.lab.B} {
		path := filepath.Join(d.dir, d.names[i]+".conf")
		if err := os.WriteFile(path, []byte(conf(i)), 0o600); err != nil {
			return err
		}
		p, err := d.start(ctx, ns, path)
		if err != nil {
			return err
		}
		d.procs = append(d.procs, p)
	}
	d.step("started `warren up %s.conf` and `warren up %s.conf` in the namespaces", d.names[0], d.names[1])
	return nil
}

func demoConfig(key wgcrypto.PrivateKey, peer wgcrypto.PublicKey, i int, peerUnderlay netip.Addr) string {
	me, them := demoOverlay[i], demoOverlay[1-i]
	return fmt.Sprintf(`[Interface]
PrivateKey = %s
ListenPort = %d
Address = %s, %s

[Peer]
PublicKey = %s
AllowedIPs = %s, %s
Endpoint = %s
`, key, demoPort, me.v4, me.v6, peer,
		netip.PrefixFrom(them.v4.Addr(), 32), netip.PrefixFrom(them.v6.Addr(), 128),
		netip.AddrPortFrom(peerUnderlay, demoPort))
}

func (d *demo) start(ctx context.Context, ns *netlab.Namespace, path string) (*demoProc, error) {
	cmd := ns.Command(context.WithoutCancel(ctx), d.exe, "up", path)
	p := &demoProc{ns: ns, log: new(bytes.Buffer), done: make(chan error, 1)}
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start warren up in %s: %w", ns.Name(), err)
	}
	p.cmd, p.pid = cmd, cmd.Process.Pid
	go func() { p.done <- cmd.Wait() }()
	return p, nil
}

// waitLink waits until link name is up in ns, or the process fails.
func (d *demo) waitLink(ctx context.Context, ns *netlab.Namespace, name string, p *demoProc) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if l, err := ns.Handle().LinkByName(name); err == nil && l.Attrs().OperState != 2 /* down */ && l.Attrs().Flags&net.FlagUp != 0 {
			return nil
		}
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("warren up in %s exited: %v\n%s", ns.Name(), err, p.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not come up in %s within 10 s\n%s", name, ns.Name(), p.log)
}

func (d *demo) logs() string {
	var b bytes.Buffer
	for _, p := range d.procs {
		fmt.Fprintf(&b, "--- warren up in %s:\n%s", p.ns.Name(), p.log)
	}
	return b.String()
}

// stopTunnels sends SIGTERM to every tunnel, so that they undo their host
// changes, and kills those that have not ended 3 s later.
func (d *demo) stopTunnels() {
	for _, p := range d.procs {
		syscall.Kill(p.pid, syscall.SIGTERM)
	}
	for _, p := range d.procs {
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	}
}

// close stops the tunnels and removes the namespaces.
func (d *demo) close() {
	d.stopTunnels()
	var errs []error
	for _, h := range d.hosts {
		errs = append(errs, h.Close())
	}
	if d.lab != nil {
		if err := errors.Join(append(errs, d.lab.Close())...); err != nil {
			fmt.Fprintf(d.out, "warning: removing the lab: %v\n", err)
		} else {
			d.step("removed the namespaces, links and tunnels")
		}
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
}

// demoPing sends count ICMP echo requests from ns to dst and returns the
// round-trip times of the answers. The first request may wait for a
// handshake.
func demoPing(ctx context.Context, ns *netlab.Namespace, dst netip.Addr, count int) ([]time.Duration, error) {
	network, proto := "ip4:icmp", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, proto = "ip6:ipv6-icmp", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var c *icmp.PacketConn
	if err := ns.Do(func() (err error) {
		c, err = icmp.ListenPacket(network, "")
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	var rtts []time.Duration
	buf := make([]byte, 1500)
	for seq := 1; seq <= count && ctx.Err() == nil; seq++ {
		msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: seq, Data: []byte("warren demo")}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return nil, err
		}
		sent := time.Now()
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return nil, err
		}
		wait := time.Second
		if seq == 1 {
			wait = 6 * time.Second // room for a handshake retry
		}
		c.SetReadDeadline(sent.Add(wait))
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				break // lost: counted by its absence
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != replyType {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.Seq == seq {
				rtts = append(rtts, time.Since(sent))
				break
			}
		}
	}
	if len(rtts) == 0 {
		return nil, errors.New("no answer")
	}
	return rtts, nil
}

// demoTransfer sends size random bytes over TCP from a to b's dst and checks
// their SHA-256 on arrival.
func demoTransfer(ctx context.Context, a, b *netlab.Namespace, dst netip.Addr, size int64) (gbps float64, took time.Duration, err error) {
	var ln net.Listener
	if err := b.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	var got [sha256.Size]byte
	var recvErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			recvErr = err
			return
		}
		defer c.Close()
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err == nil && n != size {
			err = fmt.Errorf("received %d bytes, want %d", n, size)
		}
		recvErr = err
		copy(got[:], h.Sum(nil))
	})
	var c net.Conn
	if err := a.Do(func() (err error) {
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", ln.Addr().String())
		return err
	}); err != nil {
		ln.Close()
		wg.Wait()
		return 0, 0, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	h := sha256.New()
	start := time.Now()
	for sent := int64(0); sent < size; sent += int64(len(chunk)) {
		h.Write(chunk)
		if _, err := c.Write(chunk); err != nil {
			c.Close()
			wg.Wait()
			return 0, 0, err
		}
	}
	c.Close()
	wg.Wait()
	took = time.Since(start)
	if recvErr != nil {
		return 0, 0, recvErr
	}
	if !bytes.Equal(got[:], h.Sum(nil)) {
		return 0, 0, errors.New("SHA-256 of the received data does not match")
	}
	return float64(size*8) / took.Seconds() / 1e9, took, nil
}
