package lifecycle

// Layer 2 mode (Mode = tap): the TAP instead of the TUN, no routes, and
// with `Bridge =` the TAP as a port of a Linux bridge that carries the
// interface's addresses.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/device/host"
	"github.com/warrenvpn/warren/tunnel"
)

// bridgeNetlink is what joining a bridge needs beyond Netlink;
// *netlink.Handle has it.
type bridgeNetlink interface {
	LinkByName(name string) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetMaster(link, master netlink.Link) error
	LinkSetUp(link netlink.Link) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

// bridgeJournal records, before the change, the bridge warren created and
// the addresses it put on a bridge, so that a crash leaves nothing it does
// not name (L22).
type bridgeJournal struct {
	Name      string         `json:"name"`
	Created   bool           `json:"created,omitempty"`
	Addresses []netip.Prefix `json:"addresses,omitempty"`
}

// layer2Options are the engine's layer 2 options for cfg; nil in TUN mode.
func layer2Options(cfg *config.Config) *tunnel.Layer2 {
	if cfg.Interface.Mode != config.ModeTAP {
		return nil
	}
	return &tunnel.Layer2{Forward: cfg.Interface.Forward, MACAgeing: cfg.Interface.MACAgeing}
}

// joinBridge makes the TAP a port of the bridge ifc.Bridge, creating the
// bridge (and bringing it up) if there is none, and puts ifc's addresses on
// it. A created bridge is deleted by the undo; an existing one loses only
// the port and the addresses warren added. Each change is journalled first.
func (t *Tunnel) joinBridge(nl Netlink, ifc *config.Interface) error {
	name := ifc.Bridge
	bn, ok := nl.(bridgeNetlink)
	if !ok {
		return fmt.Errorf("bridge %s: the netlink handle cannot manage links", name)
	}
	br, err := bn.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		if err := t.updateJournal(func(j *journal) { j.Bridge = &bridgeJournal{Name: name, Created: true} }); err != nil {
			return err
		}
		t.undo.push(func() error { return t.deleteBridge(bn, name) })
		if err := bn.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
		if br, err = bn.LinkByName(name); err == nil {
			err = bn.LinkSetUp(br)
		}
		if err != nil {
			return fmt.Errorf("bring bridge %s up: %w", name, err)
		}
		t.log.Info("added bridge", "interface", t.name, "bridge", name)
	case err != nil:
		return fmt.Errorf("find bridge %s: %w", name, err)
	case br.Type() != "bridge":
		return fmt.Errorf("Bridge = %s: %s is a %s link, not a bridge", name, name, br.Type())
	default:
		if err := t.updateJournal(func(j *journal) { j.Bridge = &bridgeJournal{Name: name} }); err != nil {
			return err
		}
		t.undo.push(func() error { return t.updateJournal(func(j *journal) { j.Bridge = nil }) })
	}
	tap, err := bn.LinkByName(t.name)
	if err == nil {
		err = bn.LinkSetMaster(tap, br)
	}
	if err != nil {
		return fmt.Errorf("add %s to bridge %s: %w", t.name, name, err)
	}
	t.log.Info("added bridge port", "interface", t.name, "bridge", name)
	if len(ifc.Addresses) == 0 {
		return nil
	}
	if err := t.updateJournal(func(j *journal) { j.Bridge.Addresses = ifc.Addresses }); err != nil {
		return err
	}
	bm := host.NewManager(nl, t.opts.Sysctl)
	t.undo.push(func() error {
		held := bm.State()
		if err := bm.Undo(); err != nil {
			return err
		}
		t.logHost("removed", held)
		return nil
	})
	if _, err := bm.Apply(host.State{Link: name, Addresses: ifc.Addresses}); err != nil {
		return fmt.Errorf("configure bridge %s: %w", name, err)
	}
	t.logHost("added", bm.State())
	return nil
}

// deleteBridge deletes the bridge warren created, if it is still there,
// and forgets it in the journal.
func (t *Tunnel) deleteBridge(bn bridgeNetlink, name string) error {
	br, err := bn.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
	case err != nil:
		return fmt.Errorf("find bridge %s: %w", name, err)
	default:
		if err := bn.LinkDel(br); err != nil {
			return fmt.Errorf("delete bridge %s: %w", name, err)
		}
		t.log.Info("removed bridge", "interface", t.name, "bridge", name)
	}
	return t.updateJournal(func(j *journal) { j.Bridge = nil })
}

// restoreBridge undoes what a crashed instance's journal records of its
// bridge: the bridge deleted if it made it, else the addresses it added
// removed.
func restoreBridge(nl host.Netlink, b *bridgeJournal) error {
	bn, ok := nl.(bridgeNetlink)
	if !ok {
		return fmt.Errorf("bridge %s: the netlink handle cannot manage links", b.Name)
	}
	br, err := bn.LinkByName(b.Name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		return nil
	case err != nil:
		return err
	case b.Created:
		return bn.LinkDel(br)
	}
	var errs []error
	for _, a := range b.Addresses {
		addr := &netlink.Addr{IPNet: prefixNet(a)}
		if err := bn.AddrDel(br, addr); err != nil && !isNoAddress(err) {
			errs = append(errs, fmt.Errorf("remove %v from %s: %w", a, b.Name, err))
		}
	}
	return errors.Join(errs...)
}

// prefixNet is a as the net.IPNet netlink takes, host bits kept.
func prefixNet(a netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}
}

// isNoAddress reports whether err says the address was not there.
func isNoAddress(err error) bool { return errors.Is(err, syscall.EADDRNOTAVAIL) }
