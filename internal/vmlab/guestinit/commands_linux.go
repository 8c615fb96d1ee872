package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// commands are the guest's built-in commands, by name. Each gets its
// arguments after the name and returns its output.
var commands = map[string]func(ctx context.Context, args []string) (string, error){
	"addr":     cmdAddr,
	"link":     cmdLink,
	"route":    cmdRoute,
	"wg":       cmdWG,
	"wg-show":  cmdWGShow,
	"ping":     cmdPing,
	"tcp-send": cmdTCPSend,
	"tcp-recv": cmdTCPRecv,
	"netem":    cmdNetem,
	"netns":    cmdNetns,
	"exec":     cmdExec,
	"read":     cmdRead,
	"write":    cmdWrite,
}

// run runs one request. "in NS CMD..." runs CMD inside the named network
// namespace NS, on a thread of its own.
func run(ctx context.Context, args []string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("empty command")
	}
	if args[0] == "in" {
		if len(args) < 3 {
			return "", usage("in NS CMD...")
		}
		return runIn(ctx, args[1], args[2:])
	}
	f := commands[args[0]]
	if f == nil {
		return "", fmt.Errorf("unknown command %q", args[0])
	}
	return f(ctx, args[1:])
}

func usage(s string) error { return fmt.Errorf("usage: %s", s) }

// cmdAddr: addr add|del DEV PREFIX
func cmdAddr(_ context.Context, args []string) (string, error) {
	if len(args) != 3 || (args[0] != "add" && args[0] != "del") {
		return "", usage("addr add|del DEV PREFIX")
	}
	return "", addrChange(args[0] == "add", args[1], args[2])
}

func addrChange(add bool, dev, prefix string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return err
	}
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("find %s: %w", dev, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if add {
		err = netlink.AddrAdd(l, a)
	} else {
		err = netlink.AddrDel(l, a)
	}
	if err != nil {
		return fmt.Errorf("addr %s on %s: %w", p, dev, err)
	}
	return nil
}

func linkUp(dev string) error {
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("find %s: %w", dev, err)
	}
	return netlink.LinkSetUp(l)
}

// cmdLink: link up|down|del DEV, link add-wireguard DEV, link mtu DEV N,
// link show (JSON list of names, kinds and flags).
func cmdLink(_ context.Context, args []string) (string, error) {
	if len(args) == 1 && args[0] == "show" {
		links, err := netlink.LinkList()
		if err != nil {
			return "", err
		}
		type info struct {
			Name, Type, Flags string
			MTU               int
			Mode              string `json:",omitempty"`
		}
		var out []info
		for _, l := range links {
			i := info{Name: l.Attrs().Name, Type: l.Type(), Flags: l.Attrs().Flags.String(), MTU: l.Attrs().MTU}
			if iv, ok := l.(*netlink.IPVlan); ok {
				i.Mode = fmt.Sprint(iv.Mode)
			}
			out = append(out, i)
		}
		b, err := json.Marshal(out)
		return string(b), err
	}
	if len(args) < 2 {
		return "", usage("link up|down|del|add-wireguard DEV | link mtu DEV N | link show")
	}
	dev := args[1]
	if args[0] == "add-wireguard" {
		return "", netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: dev}})
	}
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return "", fmt.Errorf("find %s: %w", dev, err)
	}
	switch {
	case args[0] == "up":
		return "", netlink.LinkSetUp(l)
	case args[0] == "down":
		return "", netlink.LinkSetDown(l)
	case args[0] == "del":
		return "", netlink.LinkDel(l)
	case args[0] == "mtu" && len(args) == 3:
		n, err := strconv.Atoi(args[2])
		if err != nil {
			return "", err
		}
		return "", netlink.LinkSetMTU(l, n)
	}
	return "", usage("link up|down|del|add-wireguard DEV | link mtu DEV N | link show")
}

// cmdRoute: route add|del PREFIX DEV [via GW] [src ADDR]
func cmdRoute(_ context.Context, args []string) (string, error) {
	if len(args) < 3 || (args[0] != "add" && args[0] != "del") {
		return "", usage("route add|del PREFIX DEV [via GW] [src ADDR]")
	}
	p, err := netip.ParsePrefix(args[1])
	if err != nil {
		return "", err
	}
	l, err := netlink.LinkByName(args[2])
	if err != nil {
		return "", err
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	for i := 3; i+1 < len(args); i += 2 {
		a, err := netip.ParseAddr(args[i+1])
		if err != nil {
			return "", err
		}
		switch args[i] {
		case "via":
			r.Gw = a.AsSlice()
		case "src":
			r.Src = a.AsSlice()
		}
	}
	if args[0] == "add" {
		return "", netlink.RouteReplace(r)
	}
	return "", netlink.RouteDel(r)
}

// cmdWG configures a kernel WireGuard device, replacing its peers:
//
//	wg DEV private-key KEY [listen-port N] [peer PUB [preshared-key KEY]
//	   [endpoint HOST:PORT] [allowed-ips A,B] [persistent-keepalive SECS]]...
//
// A peer given again later is updated (endpoint roaming), not replaced:
// repeat "peer PUB" after "update" to change only that peer.
func cmdWG(_ context.Context, args []string) (string, error) {
	if len(args) < 1 {
		return "", usage("wg DEV [update] [private-key KEY] [listen-port N] [peer PUB ...]...")
	}
	dev, args := args[0], args[1:]
	cfg := wgtypes.Config{ReplacePeers: true}
	var peer *wgtypes.PeerConfig
	for len(args) > 0 {
		if args[0] == "update" {
			cfg.ReplacePeers = false
			args = args[1:]
			continue
		}
		if len(args) < 2 {
			return "", fmt.Errorf("wg: %s needs a value", args[0])
		}
		k, v := args[0], args[1]
		args = args[2:]
		var err error
		switch k {
		case "private-key":
			var key wgtypes.Key
			key, err = wgtypes.ParseKey(v)
			cfg.PrivateKey = &key
		case "listen-port":
			var n int
			n, err = strconv.Atoi(v)
			cfg.ListenPort = &n
		case "peer":
			var key wgtypes.Key
			key, err = wgtypes.ParseKey(v)
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: key, ReplaceAllowedIPs: true})
			peer = &cfg.Peers[len(cfg.Peers)-1]
		case "preshared-key", "endpoint", "allowed-ips", "persistent-keepalive":
			if peer == nil {
				return "", fmt.Errorf("wg: %s before peer", k)
			}
			err = setPeer(peer, k, v)
		default:
			return "", fmt.Errorf("wg: unknown key %q", k)
		}
		if err != nil {
			return "", fmt.Errorf("wg: %s %q: %w", k, v, err)
		}
	}
	c, err := wgctrl.New()
	if err != nil {
		return "", err
	}
	defer c.Close()
	return "", c.ConfigureDevice(dev, cfg)
}

func setPeer(p *wgtypes.PeerConfig, k, v string) error {
	switch k {
	case "preshared-key":
		key, err := wgtypes.ParseKey(v)
		p.PresharedKey = &key
		return err
	case "endpoint":
		ap, err := netip.ParseAddrPort(v)
		p.Endpoint = net.UDPAddrFromAddrPort(ap)
		return err
	case "allowed-ips":
		for _, s := range strings.Split(v, ",") {
			pf, err := netip.ParsePrefix(s)
			if err != nil {
				return err
			}
			p.AllowedIPs = append(p.AllowedIPs, net.IPNet{IP: pf.Addr().AsSlice(), Mask: net.CIDRMask(pf.Bits(), pf.Addr().BitLen())})
		}
		p.ReplaceAllowedIPs = true
	case "persistent-keepalive":
		n, err := strconv.Atoi(v)
		d := time.Duration(n) * time.Second
		p.PersistentKeepaliveInterval = &d
		return err
	}
	return nil
}

// WGPeer is what wg-show reports about one peer.
type WGPeer struct {
	PublicKey     string
	Endpoint      string
	LastHandshake time.Time
	RxBytes       int64
	TxBytes       int64
}

// cmdWGShow: wg-show DEV, the device's peers as JSON.
func cmdWGShow(_ context.Context, args []string) (string, error) {
	if len(args) != 1 {
		return "", usage("wg-show DEV")
	}
	c, err := wgctrl.New()
	if err != nil {
		return "", err
	}
	defer c.Close()
	d, err := c.Device(args[0])
	if err != nil {
		return "", err
	}
	var peers []WGPeer
	for _, p := range d.Peers {
		w := WGPeer{PublicKey: p.PublicKey.String(), LastHandshake: p.LastHandshakeTime, RxBytes: p.ReceiveBytes, TxBytes: p.TransmitBytes}
		if p.Endpoint != nil {
			w.Endpoint = p.Endpoint.String()
		}
		peers = append(peers, w)
	}
	b, err := json.Marshal(peers)
	return string(b), err
}

// cmdPing: ping DST COUNT [INTERVAL_MS], prints how many answered; fails if
// none did. The first request waits up to 12 s (room for a handshake retry),
// the others 2 s.
func cmdPing(ctx context.Context, args []string) (string, error) {
	if len(args) < 2 {
		return "", usage("ping DST COUNT [INTERVAL_MS]")
	}
	dst, err := netip.ParseAddr(args[0])
	if err != nil {
		return "", err
	}
	count, err := strconv.Atoi(args[1])
	if err != nil {
		return "", err
	}
	interval := time.Duration(0)
	if len(args) > 2 {
		ms, err := strconv.Atoi(args[2])
		if err != nil {
			return "", err
		}
		interval = time.Duration(ms) * time.Millisecond
	}
	network, proto := "ip4:icmp", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, proto = "ip6:ipv6-icmp", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	c, err := icmp.ListenPacket(network, "")
	if err != nil {
		return "", err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	// Raw sockets see every echo reply: a random ID and the source tell
	// ours from those of a ping running at the same time.
	var idb [2]byte
	rand.Read(idb[:])
	id := int(idb[0])<<8 | int(idb[1])
	echo := func(seq int) error {
		msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("vmlab")}}
		b, _ := msg.Marshal(nil)
		_, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()})
		return err
	}
	// reply reads until the deadline and reports the sequence number of
	// each of our echo replies.
	reply := func(deadline time.Time, got func(seq int) bool) {
		buf := make([]byte, 1500)
		c.SetReadDeadline(deadline)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != replyType {
				continue
			}
			if ip, ok := from.(*net.IPAddr); !ok || !ip.IP.Equal(dst.AsSlice()) {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && got(e.Seq) {
				return
			}
		}
	}
	// The first request waits for its answer: it may start a handshake.
	if err := echo(1); err != nil {
		return "", err
	}
	answered := 0
	reply(time.Now().Add(12*time.Second), func(seq int) bool { answered = 1; return seq == 1 })
	if interval == 0 {
		// One at a time, each waiting up to 2 s.
		for seq := 2; seq <= count && ctx.Err() == nil; seq++ {
			if err := echo(seq); err != nil {
				return "", err
			}
			reply(time.Now().Add(2*time.Second), func(s int) bool {
				if s == seq {
					answered++
				}
				return s == seq
			})
		}
	} else if count > 1 {
		// A request every interval, answers counted as they come, until
		// 2 s after the last request.
		seen := make([]bool, count+1)
		seen[1] = answered == 1
		done := make(chan struct{})
		var last atomic.Int64
		last.Store(time.Now().Add(time.Hour).UnixNano())
		go func() {
			defer close(done)
			for {
				dl := time.Unix(0, last.Load()).Add(2 * time.Second)
				if time.Now().After(dl) {
					return
				}
				reply(dl, func(s int) bool {
					if s > 1 && s <= count {
						seen[s] = true
					}
					return false
				})
			}
		}()
		for seq := 2; seq <= count && ctx.Err() == nil; seq++ {
			if err := echo(seq); err != nil {
				return "", err
			}
			time.Sleep(interval)
		}
		last.Store(time.Now().UnixNano())
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		<-done
		answered = 0
		for _, ok := range seen {
			if ok {
				answered++
			}
		}
	}
	out := fmt.Sprintf("%d/%d", answered, count)
	if answered == 0 {
		return out, errors.New("no answer")
	}
	return out, nil
}

// cmdTCPSend: tcp-send HOST:PORT BYTES, sends random data and prints
// "SHA256HEX BYTES". It retries the connection for 10 s, so the receiver
// may start a little later.
func cmdTCPSend(ctx context.Context, args []string) (string, error) {
	if len(args) != 2 {
		return "", usage("tcp-send HOST:PORT BYTES")
	}
	size, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return "", err
	}
	var c net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", args[0])
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	h := sha256.New()
	chunk := make([]byte, 64<<10)
	for sent := int64(0); sent < size; {
		n := min(int64(len(chunk)), size-sent)
		rand.Read(chunk[:n])
		h.Write(chunk[:n])
		if _, err := c.Write(chunk[:n]); err != nil {
			return "", err
		}
		sent += n
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return "", err
	}
	// Wait for the receiver to close, so the data has arrived when we answer.
	io.Copy(io.Discard, c)
	return fmt.Sprintf("%s %d", hex.EncodeToString(h.Sum(nil)), size), nil
}

// cmdTCPRecv: tcp-recv ADDR:PORT, accepts one connection and prints
// "SHA256HEX BYTES" of what it received.
func cmdTCPRecv(ctx context.Context, args []string) (string, error) {
	if len(args) != 1 {
		return "", usage("tcp-recv ADDR:PORT")
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return "", err
	}
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	c, err := ln.Accept()
	if err != nil {
		return "", err
	}
	defer c.Close()
	stop2 := context.AfterFunc(ctx, func() { c.Close() })
	defer stop2()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %d", hex.EncodeToString(h.Sum(nil)), n), nil
}

// cmdNetem: netem DEV [loss PCT] [delay MS] [jitter MS] [reorder PCT]
// [duplicate PCT] replaces DEV's root qdisc with netem; "netem DEV off"
// removes it.
func cmdNetem(_ context.Context, args []string) (string, error) {
	if len(args) < 2 {
		return "", usage("netem DEV off | netem DEV [loss PCT] [delay MS] [jitter MS] [reorder PCT] [duplicate PCT]")
	}
	l, err := netlink.LinkByName(args[0])
	if err != nil {
		return "", err
	}
	attrs := netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
	if args[1] == "off" {
		return "", netlink.QdiscDel(&netlink.GenericQdisc{QdiscAttrs: attrs, QdiscType: "netem"})
	}
	var na netlink.NetemQdiscAttrs
	for i := 1; i+1 < len(args); i += 2 {
		v, err := strconv.ParseFloat(args[i+1], 32)
		if err != nil {
			return "", err
		}
		switch args[i] {
		case "loss":
			na.Loss = float32(v)
		case "delay":
			na.Latency = uint32(v * 1000) // µs
		case "jitter":
			na.Jitter = uint32(v * 1000) // µs
		case "reorder":
			na.ReorderProb = float32(v)
		case "duplicate":
			na.Duplicate = float32(v)
		default:
			return "", fmt.Errorf("netem: unknown key %q", args[i])
		}
	}
	return "", netlink.QdiscReplace(netlink.NewNetem(attrs, na))
}

// cmdExec: exec PATH ARGS..., runs a program and returns its combined
// output.
func cmdExec(ctx context.Context, args []string) (string, error) {
	if len(args) < 1 {
		return "", usage("exec PATH ARGS...")
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = []string{"PATH=/bin", "HOME=/tmp"}
	err := cmd.Run()
	return out.String(), err
}

// cmdRead: read FILE
func cmdRead(_ context.Context, args []string) (string, error) {
	if len(args) != 1 {
		return "", usage("read FILE")
	}
	path := args[0]
	if rest, ok := strings.CutPrefix(path, "/proc/net/"); ok {
		// /proc/net is the thread group leader's namespace, which may
		// not be this thread's (see runIn): read this thread's.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		path = "/proc/thread-self/net/" + rest
	}
	b, err := os.ReadFile(path)
	return string(b), err
}

// cmdWrite: write FILE CONTENT (sysctls)
func cmdWrite(_ context.Context, args []string) (string, error) {
	if len(args) != 2 {
		return "", usage("write FILE CONTENT")
	}
	return "", os.WriteFile(args[0], []byte(args[1]), 0o644)
}

// runIn runs a command on a thread inside the named namespace ns. The thread
// is never unlocked: it ends with its goroutine instead of going back to the
// scheduler in the wrong namespace. Sockets the command opens stay in ns.
func runIn(ctx context.Context, ns string, args []string) (string, error) {
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			done <- result{"", fmt.Errorf("namespace %s: %w", ns, err)}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			done <- result{"", fmt.Errorf("enter namespace %s: %w", ns, err)}
			return
		}
		out, err := run(ctx, args)
		done <- result{out, err}
	}()
	r := <-done
	return r.out, r.err
}

// cmdNetns: netns add|del NAME, a namespace named under /run/netns with
// its loopback up.
func cmdNetns(_ context.Context, args []string) (string, error) {
	if len(args) != 2 || (args[0] != "add" && args[0] != "del") {
		return "", usage("netns add|del NAME")
	}
	if args[0] == "del" {
		return "", netns.DeleteNamed(args[1])
	}
	errc := make(chan error, 1)
	go func() {
		// Left locked: the thread ends up in the new namespace and dies
		// with the goroutine.
		runtime.LockOSThread()
		h, err := netns.NewNamed(args[1])
		if err != nil {
			errc <- err
			return
		}
		h.Close()
		errc <- linkUp("lo")
	}()
	return "", <-errc
}
