package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/netlab"
)

// Process tuning.
const (
	stopTimeout = 3 * time.Second // SIGTERM to SIGKILL
	linkTimeout = 10 * time.Second
	linkPoll    = 20 * time.Millisecond
)

// tunnelPlan is the addressing of one tunnel scenario: interface names,
// inner addresses and UDP ports of the two sides.
type tunnelPlan struct {
	ifA, ifB     string
	addrA, addrB netip.Prefix
	port         uint16
}

// planFor returns the addressing of scenario. Each scenario has its own
// subnet of 198.19.0.0/16 and interface names that carry the process ID,
// because the UAPI sockets (/var/run/wireguard/NAME.sock) of both sides
// share one file system.
func planFor(scenario string) tunnelPlan {
	var n int
	var tag string
	switch scenario {
	case ScenarioWireGuardGo:
		n, tag = 1, "g"
	case ScenarioWarrenTAP:
		n, tag = 3, "t"
	default:
		n, tag = 2, "w"
	}
	id := os.Getpid() % 10_000_000
	return tunnelPlan{
		ifA:   fmt.Sprintf("wb%s%da", tag, id),
		ifB:   fmt.Sprintf("wb%s%db", tag, id),
		addrA: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(n), 1}), 24),
		addrB: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(n), 2}), 24),
		port:  uint16(51820 + n),
	}
}

// nsLab is the namespace lab on Linux.
type nsLab struct {
	o   *Options
	lab *netlab.Lab
	dir string // private files: keys, configurations
}

// newLab builds the namespaces and the veth pair.
func newLab(ctx context.Context, o *Options) (lab, error) {
	dir, err := os.MkdirTemp("", "warren-bench-")
	if err != nil {
		return nil, err
	}
	l, err := netlab.NewLab(o.Prefix, o.MTU)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &nsLab{o: o, lab: l, dir: dir}, nil
}

// Close removes the namespaces, everything in them and the private files.
func (l *nsLab) Close() error {
	return errors.Join(l.lab.Close(), os.RemoveAll(l.dir))
}

// start brings up scenario and probes it.
func (l *nsLab) start(ctx context.Context, scenario string) (*endpoints, error) {
	var ep *endpoints
	var err error
	switch scenario {
	case ScenarioVeth:
		ep = l.endpoints(l.lab.AddrB.Addr(), selfCPU, nil)
	case ScenarioWireGuardGo:
		ep, err = l.startWireGuardGo(ctx)
	case ScenarioWarren, ScenarioWarrenTAP:
		ep, err = l.startWarren(ctx, scenario)
	default:
		err = fmt.Errorf("unknown scenario %q", scenario)
	}
	if err != nil {
		return nil, err
	}
	if err := Probe(ctx, ep.path, probeTimeout); err != nil {
		if ep.close != nil {
			err = errors.Join(err, ep.close())
		}
		return nil, err
	}
	return ep, nil
}

// endpoints returns the endpoints of traffic from A to serverAddr in B.
func (l *nsLab) endpoints(serverAddr netip.Addr, meter Meter, procs []*proc) *endpoints {
	ep := &endpoints{
		path:      Path{Client: l.lab.A, Server: l.lab.B, ServerAddr: serverAddr},
		meter:     meter,
		clientCmd: l.lab.A.Command,
		serverCmd: l.lab.B.Command,
	}
	if len(procs) > 0 {
		ep.meter = func() (time.Duration, error) {
			var sum time.Duration
			for _, p := range procs {
				c, err := p.cpu()
				if err != nil {
					return 0, err
				}
				sum += c
			}
			return sum, nil
		}
		ep.close = func() error {
			var errs []error
			for _, p := range procs {
				errs = append(errs, p.stop())
			}
			return errors.Join(errs...)
		}
	}
	return ep
}

// side is one end of a tunnel scenario.
type side struct {
	ns       *netlab.Namespace
	iface    string
	addr     netip.Prefix
	key      wgcrypto.PrivateKey
	peerAddr netip.Prefix   // tunnel address of the other side
	endpoint netip.AddrPort // veth address and port of the other side
}

// startTunnel starts both ends of scenario's tunnel, with fresh keys: up
// starts the endpoint process of side s, whose peer is peer, and returns it
// (also with an error, if it started). If any step fails, every process
// started so far is stopped.
func (l *nsLab) startTunnel(scenario string, up func(s, peer side, port uint16) (*proc, error)) (_ *endpoints, err error) {
	plan := planFor(scenario)
	var keys [2]wgcrypto.PrivateKey
	for i := range keys {
		if keys[i], err = wgcrypto.NewPrivateKey(rand.Reader); err != nil {
			return nil, err
		}
	}
	sides := [2]side{
		{l.lab.A, plan.ifA, plan.addrA, keys[0], plan.addrB, netip.AddrPortFrom(l.lab.AddrB.Addr(), plan.port)},
		{l.lab.B, plan.ifB, plan.addrB, keys[1], plan.addrA, netip.AddrPortFrom(l.lab.AddrA.Addr(), plan.port)},
	}
	var procs []*proc
	defer func() {
		if err != nil {
			for _, p := range procs {
				p.stop()
			}
		}
	}()
	for i, s := range sides {
		p, err := up(s, sides[1-i], plan.port)
		if p != nil {
			procs = append(procs, p)
		}
		if err != nil {
			return nil, err
		}
	}
	return l.endpoints(plan.addrB.Addr(), nil, procs), nil
}

// startWireGuardGo runs one wireguard-go process per namespace, configures
// it with wg and its interface with netlink.
func (l *nsLab) startWireGuardGo(ctx context.Context) (*endpoints, error) {
	bin := l.o.WireGuardGoPath
	if bin == "" {
		bin = "wireguard-go"
	}
	bin, lerr := exec.LookPath(bin)
	if lerr != nil {
		return nil, fmt.Errorf("%w: wireguard-go not found (install it or pass --wireguard-go PATH): %v", ErrUnavailable, lerr)
	}
	wg, lerr := exec.LookPath("wg")
	if lerr != nil {
		return nil, fmt.Errorf("%w: wg (wireguard-tools) not found: %v", ErrUnavailable, lerr)
	}
	return l.startTunnel(ScenarioWireGuardGo, func(s, peer side, port uint16) (*proc, error) {
		p, err := startProc(ctx, s.ns, "wireguard-go "+s.iface, l.o.tunnelEnv("WG_PROCESS_FOREGROUND=1"), bin, "-f", s.iface)
		if err != nil {
			return nil, err
		}
		link, err := waitLink(ctx, s.ns, s.iface, p)
		if err != nil {
			return p, err
		}
		keyFile := filepath.Join(l.dir, s.iface+".key")
		if err := os.WriteFile(keyFile, []byte(s.key.String()+"\n"), 0o600); err != nil {
			return p, err
		}
		out, err := s.ns.Command(ctx, wg, "set", s.iface,
			"listen-port", strconv.Itoa(int(port)),
			"private-key", keyFile,
			"peer", peer.key.PublicKey().String(),
			"allowed-ips", netip.PrefixFrom(s.peerAddr.Addr(), 32).String(),
			"endpoint", s.endpoint.String(),
		).CombinedOutput()
		if err != nil {
			return p, fmt.Errorf("wg set %s: %v: %s", s.iface, err, bytes.TrimSpace(out))
		}
		return p, configureLink(s.ns.Handle(), link, s.addr, l.o.tunnelMTU())
	})
}

// startWarren runs `warren up FILE.conf` in each namespace: warren sets up
// its interface, addresses and routes itself. ScenarioWarrenTAP runs it in
// Mode = tap with the addresses on the TAPs, whose subnet is on the link:
// the first packet waits for ARP across the tunnel.
func (l *nsLab) startWarren(ctx context.Context, scenario string) (*endpoints, error) {
	bin := l.o.WarrenPath
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("%w: warren binary: %v", ErrUnavailable, err)
		}
		bin = exe
	}
	if _, serr := os.Stat(bin); serr != nil {
		return nil, fmt.Errorf("%w: warren binary: %v", ErrUnavailable, serr)
	}
	return l.startTunnel(scenario, func(s, peer side, port uint16) (*proc, error) {
		text := warrenConfig(s, peer, port, l.o.tunnelMTU())
		if scenario == ScenarioWarrenTAP {
			text = warrenTAPConfig(s, peer, port, l.o.tapMTU())
		}
		conf := filepath.Join(l.dir, s.iface+".conf")
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		p, err := startProc(ctx, s.ns, "warren up "+s.iface, l.o.tunnelEnv(), bin, "up", conf)
		if err != nil {
			return nil, err
		}
		if _, err := waitLink(ctx, s.ns, s.iface, p); err != nil {
			return p, err
		}
		return p, waitAddr(ctx, s.ns, s.iface, s.addr.Addr(), p)
	})
}

// warrenConfig is the wg-quick style configuration of s, whose peer is peer.
func warrenConfig(s, peer side, port uint16, mtu int) string {
	return fmt.Sprintf(`[Interface]
PrivateKey = %s
ListenPort = %d
Address = %s
MTU = %d

[Peer]
PublicKey = %s
AllowedIPs = %s
Endpoint = %s
`, s.key, port, s.addr, mtu, peer.key.PublicKey(), netip.PrefixFrom(s.peerAddr.Addr(), 32), s.endpoint)
}

// warrenTAPConfig is warrenConfig in Mode = tap: the peer's allowed IPs
// check the senders inside frames; no route is installed.
func warrenTAPConfig(s, peer side, port uint16, mtu int) string {
	return fmt.Sprintf(`[Interface]
PrivateKey = %s
ListenPort = %d
Mode = tap
Address = %s
MTU = %d

[Peer]
PublicKey = %s
AllowedIPs = %s
Endpoint = %s
`, s.key, port, s.addr, mtu, peer.key.PublicKey(), netip.PrefixFrom(s.peerAddr.Addr(), 32), s.endpoint)
}

// configureLink gives link its address and MTU and brings it up.
func configureLink(h *netlink.Handle, link netlink.Link, addr netip.Prefix, mtu int) error {
	name := link.Attrs().Name
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", addr, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// waitLink waits until interface name exists in ns, or p exits.
func waitLink(ctx context.Context, ns *netlab.Namespace, name string, p *proc) (netlink.Link, error) {
	var link netlink.Link
	err := poll(ctx, p, "interface "+name, func() bool {
		var err error
		link, err = ns.Handle().LinkByName(name)
		return err == nil
	})
	return link, err
}

// waitAddr waits until interface name in ns carries addr and is up, or p exits.
func waitAddr(ctx context.Context, ns *netlab.Namespace, name string, addr netip.Addr, p *proc) error {
	return poll(ctx, p, fmt.Sprintf("address %s on %s", addr, name), func() bool {
		link, err := ns.Handle().LinkByName(name)
		if err != nil || link.Attrs().Flags&net.FlagUp == 0 {
			return false
		}
		addrs, err := ns.Handle().AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return false
		}
		for _, a := range addrs {
			if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == addr {
				return true
			}
		}
		return false
	})
}

// poll calls ready until it reports true, p exits, ctx ends or linkTimeout passes.
func poll(ctx context.Context, p *proc, what string, ready func() bool) error {
	deadline := time.Now().Add(linkTimeout)
	for !ready() {
		if p.exited() {
			return fmt.Errorf("%s exited before %s appeared: %w", p.name, what, p.failure())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %s after %v; output: %s", p.name, what, linkTimeout, p.tail())
		}
		if err := sleep(ctx, linkPoll); err != nil {
			return err
		}
	}
	return nil
}
