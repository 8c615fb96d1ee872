// Package uapitest provides an in-memory uapi.Device that applies changes
// with the semantics documented on uapi.Change, for tests of the control
// protocol and as a reference for the engine.
package uapitest

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/warrenvpn/warren/allowedips"
	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// Device is an in-memory uapi.Device. The zero Device is empty and ready to
// use; it is safe for concurrent use.
type Device struct {
	mu sync.Mutex // guards everything below

	// BusyPorts lists listen ports that Apply refuses with
	// uapi.ErrnoPortInUse, as a real bind would.
	BusyPorts map[uint16]bool
	// ApplyErr, if not nil, is returned by Apply before it changes anything.
	ApplyErr error
	// Applied counts the changes applied successfully.
	Applied int

	privateKey crypto.PrivateKey
	ownPub     crypto.PublicKey // zero until a private key is first set
	listenPort uint16
	fwMark     uint32
	drops      []uapi.Drop
	peers      []*peer // in creation order
	allowed    allowedips.Table[*peer]
}

var _ uapi.Device = (*Device)(nil)

type peer struct {
	publicKey     crypto.PublicKey
	presharedKey  crypto.PresharedKey
	endpoint      netip.AddrPort
	keepalive     uint16
	txBytes       uint64
	rxBytes       uint64
	lastHandshake time.Time
}

// State returns the current configuration, peers in creation order.
func (d *Device) State() (*uapi.State, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &uapi.State{PrivateKey: d.privateKey, ListenPort: d.listenPort, FwMark: d.fwMark}
	for _, p := range d.peers {
		s.Peers = append(s.Peers, uapi.PeerState{
			PublicKey:           p.publicKey,
			PresharedKey:        p.presharedKey,
			Endpoint:            p.endpoint,
			LastHandshake:       p.lastHandshake,
			TxBytes:             p.txBytes,
			RxBytes:             p.rxBytes,
			PersistentKeepalive: p.keepalive,
			AllowedIPs:          d.allowed.Entries(p),
		})
	}
	s.Drops = slices.Clone(d.drops)
	return s, nil
}

// SetDrops sets the drop counters State reports.
func (d *Device) SetDrops(drops ...uapi.Drop) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drops = slices.Clone(drops)
}

// SetStats sets the statistics of the peer with public key pub, if any.
func (d *Device) SetStats(pub crypto.PublicKey, tx, rx uint64, lastHandshake time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.findLocked(pub); p != nil {
		p.txBytes, p.rxBytes, p.lastHandshake = tx, rx, lastHandshake
	}
}

// Lookup returns the public key of the peer whose allowed IPs contain addr.
func (d *Device) Lookup(addr netip.Addr) (crypto.PublicKey, bool) {
	p, ok := d.allowed.Lookup(addr)
	if !ok {
		return crypto.PublicKey{}, false
	}
	return p.publicKey, true
}

func (d *Device) findLocked(pub crypto.PublicKey) *peer {
	for _, p := range d.peers {
		if p.publicKey == pub {
			return p
		}
	}
	return nil
}

func (d *Device) removeLocked(b *allowedips.Batch[*peer], p *peer) {
	b.RemoveValue(p)
	d.peers = slices.DeleteFunc(d.peers, func(q *peer) bool { return q == p })
}

// Apply applies c as documented on uapi.Change, entirely or (on error) not
// at all.
func (d *Device) Apply(c *uapi.Change) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ApplyErr != nil {
		return d.ApplyErr
	}
	if c.ListenPort != nil && d.BusyPorts[*c.ListenPort] {
		return uapi.Errorf(uapi.ErrnoPortInUse, "listen port %d: address already in use", *c.ListenPort)
	}
	d.allowed.Update(func(b *allowedips.Batch[*peer]) {
		d.applyLocked(b, c)
	})
	d.Applied++
	return nil
}

func (d *Device) applyLocked(b *allowedips.Batch[*peer], c *uapi.Change) {
	if c.PrivateKey != nil && *c.PrivateKey != d.privateKey {
		d.privateKey = *c.PrivateKey
		d.ownPub = d.privateKey.PublicKey()
		if p := d.findLocked(d.ownPub); p != nil {
			d.removeLocked(b, p)
		}
	}
	if c.ListenPort != nil {
		d.listenPort = *c.ListenPort
	}
	if c.FwMark != nil {
		d.fwMark = *c.FwMark
	}
	if c.ReplacePeers {
		for _, p := range slices.Clone(d.peers) {
			d.removeLocked(b, p)
		}
	}
	for i := range c.Peers {
		pc := &c.Peers[i]
		if pc.PublicKey == d.ownPub {
			continue
		}
		p := d.findLocked(pc.PublicKey)
		if pc.Remove {
			if p != nil {
				d.removeLocked(b, p)
			}
			continue
		}
		if p == nil {
			if pc.UpdateOnly {
				continue
			}
			p = &peer{publicKey: pc.PublicKey}
			d.peers = append(d.peers, p)
		}
		if pc.PresharedKey != nil {
			p.presharedKey = *pc.PresharedKey
		}
		if pc.Endpoint != nil {
			p.endpoint = *pc.Endpoint
		}
		if pc.PersistentKeepalive != nil {
			p.keepalive = *pc.PersistentKeepalive
		}
		if pc.ReplaceAllowedIPs {
			b.RemoveValue(p)
		}
		for _, a := range pc.AllowedIPs {
			if a.Remove {
				b.RemoveFrom(a.Prefix, p)
			} else {
				b.Insert(a.Prefix, p)
			}
		}
	}
}
