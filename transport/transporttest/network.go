// Package transporttest provides an in-memory network of transports with
// the methods of transport.UDP, for tests of the engine without sockets or
// root.
//
// A packet's way through a Network, all in the sending goroutine under the
// network's lock, so that a test sees the same result on every run:
//  1. Transport.Send copies each datagram into a Packet from the source
//     address asked for (one of the transport's addresses, AddAddr) or else
//     the transport's first address, to the destination (IPv4 addresses
//     unmapped).
//  2. A NAT mapping for the source (AddNAT) rewrites the source.
//  3. The Hook, if any, may rewrite the packet and decides its fate: deliver,
//     drop, duplicate, or hold it until Step or Flush (delay, reordering).
//  4. Delivery maps a NAT outside address back to the inside one and puts the
//     packet on the receiving transport's bounded queue; with no transport
//     at the address or a full queue the packet is dropped and counted.
//  5. Transport.Receive takes packets off its queue, reporting as the local
//     address the one the packet reached (after NAT).
//
// A transport may have several addresses on its port, like a host with two
// uplinks (AddAddr, RemoveAddr); a send from an address it does not have
// fails with an error wrapping syscall.EINVAL, as the kernel's does.
package transporttest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
)

// Defaults for Config.
const (
	DefaultBatchSize = 64   // packets per Receive
	DefaultQueueLen  = 1024 // packets waiting per transport
)

// Config sets up a Network; the zero value uses the defaults.
type Config struct {
	BatchSize int // packets one Receive returns at most; 0 = DefaultBatchSize
	QueueLen  int // packets queued per transport before drops; 0 = DefaultQueueLen
}

// Packet is one datagram in flight.
type Packet struct {
	Src, Dst netip.AddrPort
	Data     []byte // owned by the network; a Hook may change or replace it
}

// Action is a Hook's decision about one packet.
type Action int

// Actions.
const (
	Deliver   Action = iota // deliver now
	Drop                    // lose the packet
	Duplicate               // deliver it twice
	Hold                    // keep it until Step, Flush or Reorder releases it
	Refuse                  // fail the send: Send counts it as not sent and returns ErrRefused (a local send error such as ENETUNREACH)
)

// ErrRefused is wrapped by the error Send returns for packets a Hook
// refused.
var ErrRefused = errors.New("send refused")

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case Deliver:
		return "deliver"
	case Drop:
		return "drop"
	case Duplicate:
		return "duplicate"
	case Hold:
		return "hold"
	case Refuse:
		return "refuse"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Hook sees every sent packet after NAT, in send order, may rewrite it, and
// decides its fate. It runs with the network's lock held and must not call
// the Network or its transports.
type Hook func(p *Packet) Action

// Stats counts what happened to packets.
type Stats struct {
	Sent       uint64 // datagrams handed to Send
	Delivered  uint64 // packets put on a receiver's queue
	Dropped    uint64 // dropped by the hook
	Duplicated uint64 // extra copies made by the hook
	Held       uint64 // held by the hook (also counted when released)
	Refused    uint64 // refused by the hook: Send reported them as not sent
	NoRoute    uint64 // no transport at the destination
	QueueFull  uint64 // receiver's queue full
}

// Network connects transports in memory. It is safe for concurrent use.
type Network struct {
	batch    int
	queueLen int

	mu         sync.Mutex // guards everything below and Transport.addr
	transports map[netip.AddrPort]*Transport
	natOut     map[netip.AddrPort]netip.AddrPort // inside -> outside
	natIn      map[netip.AddrPort]netip.AddrPort // outside -> inside
	hook       Hook
	held       []Packet
	stats      Stats
	nextPort   uint16
}

// NewNetwork returns an empty network.
func NewNetwork(cfg Config) *Network {
	n := &Network{
		batch:      cfg.BatchSize,
		queueLen:   cfg.QueueLen,
		transports: make(map[netip.AddrPort]*Transport),
		natOut:     make(map[netip.AddrPort]netip.AddrPort),
		natIn:      make(map[netip.AddrPort]netip.AddrPort),
		nextPort:   49152,
	}
	if n.batch <= 0 {
		n.batch = DefaultBatchSize
	}
	if n.queueLen <= 0 {
		n.queueLen = DefaultQueueLen
	}
	return n
}

// NewTransport attaches a transport at addr; port 0 picks a free port. An
// address already taken is an error.
func (n *Network) NewTransport(addr netip.AddrPort) (*Transport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	addr, err := n.freeAddrLocked(addr)
	if err != nil {
		return nil, err
	}
	t := &Transport{
		net:   n,
		addr:  addr,
		queue: make(chan Packet, n.queueLen),
		done:  make(chan struct{}),
	}
	n.transports[addr] = t
	return t, nil
}

// freeAddrLocked unmaps addr and picks a port when it has none; n.mu must
// be held.
func (n *Network) freeAddrLocked(addr netip.AddrPort) (netip.AddrPort, error) {
	a := addr.Addr().Unmap()
	if !a.IsValid() {
		return netip.AddrPort{}, fmt.Errorf("transport address %v: invalid", addr)
	}
	if addr.Port() == 0 {
		for range 1 << 16 {
			p := n.nextPort
			n.nextPort++
			if n.nextPort == 0 {
				n.nextPort = 1024
			}
			if _, used := n.transports[netip.AddrPortFrom(a, p)]; !used && p != 0 {
				return netip.AddrPortFrom(a, p), nil
			}
		}
		return netip.AddrPort{}, fmt.Errorf("transport address %v: no free port", a)
	}
	addr = netip.AddrPortFrom(a, addr.Port())
	if _, used := n.transports[addr]; used {
		return netip.AddrPort{}, fmt.Errorf("transport address %v: already in use", addr)
	}
	return addr, nil
}

// SetHook installs h for packets sent from now on; nil delivers everything.
func (n *Network) SetHook(h Hook) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.hook = h
}

// AddNAT makes packets from inside appear from outside, and delivers packets
// sent to outside to inside, like a NAT mapping.
func (n *Network) AddNAT(inside, outside netip.AddrPort) {
	inside, outside = unmap(inside), unmap(outside)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.natOut[inside] = outside
	n.natIn[outside] = inside
}

// RemoveNAT removes the mapping of inside: replies to its old outside
// address find no route.
func (n *Network) RemoveNAT(inside netip.AddrPort) {
	inside = unmap(inside)
	n.mu.Lock()
	defer n.mu.Unlock()
	if outside, ok := n.natOut[inside]; ok {
		delete(n.natOut, inside)
		delete(n.natIn, outside)
	}
}

// Inject delivers p as if it had been sent, without NAT or hook (spoofed or
// crafted packets).
func (n *Network) Inject(p Packet) {
	p.Src, p.Dst = unmap(p.Src), unmap(p.Dst)
	p.Data = slices.Clone(p.Data)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deliverLocked(p)
}

// Held returns how many packets the hook is holding.
func (n *Network) Held() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.held)
}

// Step delivers the oldest held packet and reports whether there was one.
func (n *Network) Step() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.held) == 0 {
		return false
	}
	p := n.held[0]
	n.held = slices.Delete(n.held, 0, 1)
	n.deliverLocked(p)
	return true
}

// Flush delivers every held packet in the order held and returns how many.
func (n *Network) Flush() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	held := n.held
	n.held = nil
	for _, p := range held {
		n.deliverLocked(p)
	}
	return len(held)
}

// Reorder lets f permute (or rewrite) the held packets in place, for
// example with rand.Shuffle or slices.Reverse; Step and Flush then follow
// the new order. f runs with the network's lock held.
func (n *Network) Reorder(f func(held []Packet)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(n.held)
}

// Stats returns the counters so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// sendLocked runs one datagram through NAT and the hook and reports whether
// the sender may count it as sent; n.mu must be held.
func (n *Network) sendLocked(src, dst netip.AddrPort, data []byte) bool {
	n.stats.Sent++
	if outside, ok := n.natOut[src]; ok {
		src = outside
	}
	p := Packet{Src: src, Dst: dst, Data: slices.Clone(data)}
	action := Deliver
	if n.hook != nil {
		action = n.hook(&p)
	}
	switch action {
	case Refuse:
		n.stats.Refused++
		return false
	case Drop:
		n.stats.Dropped++
	case Hold:
		n.stats.Held++
		n.held = append(n.held, p)
	case Duplicate:
		n.stats.Duplicated++
		n.deliverLocked(Packet{Src: p.Src, Dst: p.Dst, Data: slices.Clone(p.Data)})
		n.deliverLocked(p)
	default:
		n.deliverLocked(p)
	}
	return true
}

// deliverLocked queues p at its destination; n.mu must be held.
func (n *Network) deliverLocked(p Packet) {
	dst := p.Dst
	if inside, ok := n.natIn[dst]; ok {
		dst = inside
	}
	t, ok := n.transports[dst]
	if !ok {
		n.stats.NoRoute++
		return
	}
	p.Dst = dst // the address the receiver sees
	select {
	case t.queue <- p:
		n.stats.Delivered++
	default:
		n.stats.QueueFull++
	}
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Transport is one endpoint of a Network, with the methods of
// transport.UDP. Safe for concurrent use; after Close every call returns
// net.ErrClosed.
type Transport struct {
	net   *Network
	addr  netip.AddrPort // guarded by net.mu
	extra []netip.Addr   // further addresses on addr's port (AddAddr); guarded by net.mu
	queue chan Packet
	done  chan struct{}
	once  sync.Once
}

// Receive blocks until at least one packet is queued and returns up to
// min(len(bufs), len(sizes), len(eps), len(locals), BatchSize()) of them,
// with the address of t each was sent to in locals; a packet longer than
// its buffer is truncated.
func (t *Transport) Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error) {
	nb := min(len(bufs), len(sizes), len(eps), len(locals), t.net.batch)
	if nb == 0 {
		return 0, errors.New("receive: empty batch")
	}
	select {
	case <-t.done:
		return 0, net.ErrClosed
	default:
	}
	var p Packet
	select {
	case p = <-t.queue:
	case <-t.done:
		return 0, net.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n], p.Data)
		eps[n], locals[n] = p.Src, p.Dst.Addr()
		n++
		if n == nb {
			return n, nil
		}
		select {
		case p = <-t.queue:
		default:
			return n, nil
		}
	}
}

// Send sends each datagram in bufs to ep through the network from local,
// or from the transport's first address when local is the zero Addr, and
// returns how many were sent. Like UDP it reports no loss in the network;
// only packets a Hook refuses count as not sent, and then the error wraps
// ErrRefused. A local that is not one of the transport's addresses sends
// nothing and fails with an error wrapping syscall.EINVAL.
func (t *Transport) Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	select {
	case <-t.done:
		return 0, net.ErrClosed
	default:
	}
	if !ep.Addr().IsValid() {
		return 0, fmt.Errorf("send to %v: invalid address", ep)
	}
	ep = unmap(ep)
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	src := t.addr
	if local = local.Unmap(); local.IsValid() {
		if !t.hasAddrLocked(local) {
			return 0, fmt.Errorf("send to %v from %v: %w", ep, local, syscall.EINVAL)
		}
		src = netip.AddrPortFrom(local, t.addr.Port())
	}
	sent := 0
	for _, b := range bufs {
		if n.sendLocked(src, ep, b) {
			sent++
		}
	}
	if sent < len(bufs) {
		return sent, fmt.Errorf("send to %v: %d of %d datagrams: %w", ep, len(bufs)-sent, len(bufs), ErrRefused)
	}
	return sent, nil
}

// BatchSize returns the most packets one Receive returns.
func (t *Transport) BatchSize() int { return t.net.batch }

// Addr returns the transport's current address.
func (t *Transport) Addr() netip.AddrPort {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	return t.addr
}

// Port returns the transport's current port.
func (t *Transport) Port() uint16 { return t.Addr().Port() }

// hasAddrLocked reports whether a is one of t's addresses; net.mu must be
// held.
func (t *Transport) hasAddrLocked(a netip.Addr) bool {
	return a == t.addr.Addr() || slices.Contains(t.extra, a)
}

// Addrs returns the transport's addresses: the first (Addr) and those
// AddAddr added.
func (t *Transport) Addrs() []netip.Addr {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	return append([]netip.Addr{t.addr.Addr()}, t.extra...)
}

// AddAddr gives the transport a further address on its port, like a second
// uplink of a host: packets sent to it arrive here with it as their local
// address, and Send may use it as the source. An address already taken on
// that port is an error.
func (t *Transport) AddAddr(a netip.Addr) error {
	a = a.Unmap()
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.transports[t.addr] != t {
		return net.ErrClosed
	}
	ap := netip.AddrPortFrom(a, t.addr.Port())
	if !a.IsValid() {
		return fmt.Errorf("transport address %v: invalid", a)
	}
	if _, used := n.transports[ap]; used {
		return fmt.Errorf("transport address %v: already in use", ap)
	}
	n.transports[ap] = t
	t.extra = append(t.extra, a)
	return nil
}

// RemoveAddr takes away an address AddAddr gave: packets sent to it find
// no route, and a Send from it fails with syscall.EINVAL (an address
// removed from a host's interface).
func (t *Transport) RemoveAddr(a netip.Addr) error {
	a = a.Unmap()
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	i := slices.Index(t.extra, a)
	if i < 0 {
		return fmt.Errorf("transport address %v: not an added address of %v", a, t.addr)
	}
	t.extra = slices.Delete(t.extra, i, i+1)
	if ap := netip.AddrPortFrom(a, t.addr.Port()); n.transports[ap] == t {
		delete(n.transports, ap)
	}
	return nil
}

// Move gives the transport a new first address (roaming); port 0 picks a
// free one, and the added addresses move to that port too. Packets already queued stay; packets sent to the old address find no
// route.
func (t *Transport) Move(to netip.AddrPort) error {
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.transports[t.addr] != t {
		return net.ErrClosed
	}
	to, err := n.freeAddrLocked(to)
	if err != nil {
		return err
	}
	delete(n.transports, t.addr)
	for _, a := range t.extra {
		if ap := netip.AddrPortFrom(a, t.addr.Port()); n.transports[ap] == t {
			delete(n.transports, ap)
		}
		if ap := netip.AddrPortFrom(a, to.Port()); n.transports[ap] == nil {
			n.transports[ap] = t
		}
	}
	t.addr = to
	n.transports[to] = t
	return nil
}

// Close detaches the transport and unblocks Receive. It is idempotent.
func (t *Transport) Close() error {
	t.once.Do(func() {
		n := t.net
		n.mu.Lock()
		if n.transports[t.addr] == t {
			delete(n.transports, t.addr)
		}
		for _, a := range t.extra {
			if ap := netip.AddrPortFrom(a, t.addr.Port()); n.transports[ap] == t {
				delete(n.transports, ap)
			}
		}
		t.extra = nil
		n.mu.Unlock()
		close(t.done)
	})
	return nil
}
