package mesh

// From the nodes in the store to the tunnel's peers, in two steps:
//  1. desiredPeers picks the nodes to take (mode, labels) and settles
//     conflicts: nodes are taken in the order they joined (create
//     revision), this node first, and a node whose name or any allowed IP
//     collides with one taken before is skipped. Publish refuses such a
//     node; this step guards against documents written by anything else.
//  2. diffPeers compares the result with the peers applied so far and
//     returns only what changed, so that untouched peers keep their
//     sessions.

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
)

// Diff is a change to the tunnel's mesh peers.
type Diff struct {
	// Set holds the peers to add or to replace whole (endpoint, allowed
	// IPs, keepalive), sorted by public key.
	Set []config.Peer
	// Remove holds the public keys of the peers to remove, sorted.
	Remove []wgcrypto.PublicKey
}

// IsEmpty reports whether d changes nothing.
func (d *Diff) IsEmpty() bool { return len(d.Set) == 0 && len(d.Remove) == 0 }

// Applier applies a Diff to a running tunnel: engine peers and host
// routes, leaving every peer the Diff does not name as it is (with its
// session). Apply is called from one goroutine at a time; the Diff and its
// slices belong to the Applier from the call on. If Apply fails, the mesh
// calls it again later with the difference from the peers last applied
// with success, so a partial application must leave a state that such a
// retry repairs.
type Applier interface {
	Apply(ctx context.Context, d Diff) error
}

// entry is one node as last read from the store.
type entry struct {
	node      Node
	createRev int64 // etcd create revision: the order nodes joined in
	modRev    int64
	raw       []byte // the document as stored, for the cache
}

// skipped is a node desiredPeers left out, and why.
type skipped struct {
	key    wgcrypto.PublicKey
	modRev int64
	name   string
	reason string
}

// desiredPeers returns the peers to configure for the nodes in nodes, as
// seen from self; step 1 of the flow.
func desiredPeers(self *Node, c *Config, nodes map[wgcrypto.PublicKey]*entry) (map[wgcrypto.PublicKey]config.Peer, []skipped) {
	order := make([]*entry, 0, len(nodes))
	for k, e := range nodes {
		if k == self.PublicKey {
			continue
		}
		order = append(order, e)
	}
	slices.SortFunc(order, func(a, b *entry) int {
		if c := cmp.Compare(a.createRev, b.createRev); c != 0 {
			return c
		}
		return slices.Compare(a.node.PublicKey[:], b.node.PublicKey[:])
	})
	var (
		names   = map[string]string{self.Name: "this node"}
		taken   = make(map[netip.Prefix]string) // prefix → owner
		covered = make(map[netip.Prefix]string) // every shorter mask of a taken prefix → owner
		out     = make(map[wgcrypto.PublicKey]config.Peer, len(order))
		skips   []skipped
	)
	take := func(owner string, ps []netip.Prefix) {
		for _, p := range ps {
			taken[p] = owner
			for b := p.Bits(); b >= 0; b-- {
				m, _ := p.Addr().Prefix(b)
				if _, ok := covered[m]; !ok {
					covered[m] = owner
				}
			}
		}
	}
	// overlap returns the owner of a taken prefix that overlaps p.
	overlap := func(p netip.Prefix) (string, bool) {
		if owner, ok := covered[p]; ok { // p holds a taken prefix
			return owner, true
		}
		for b := p.Bits(); b >= 0; b-- { // a taken prefix holds p
			m, _ := p.Addr().Prefix(b)
			if owner, ok := taken[m]; ok {
				return owner, true
			}
		}
		return "", false
	}
	take("this node", self.AllowedIPs)
next:
	for _, e := range order {
		n := &e.node
		skip := func(reason string) { skips = append(skips, skipped{n.PublicKey, e.modRev, n.Name, reason}) }
		if n.Mode != self.Mode {
			skip(fmt.Sprintf("mode %s, this node's is %s", n.Mode, self.Mode))
			continue
		}
		if !selected(n.Labels, c.Select) {
			continue
		}
		if owner, ok := names[n.Name]; ok {
			skip("name taken by " + owner)
			continue
		}
		for _, p := range n.AllowedIPs {
			if owner, ok := overlap(p); ok {
				skip(fmt.Sprintf("allowed IP %s overlaps a prefix of %s", p, owner))
				continue next
			}
		}
		owner := fmt.Sprintf("node %q", n.Name)
		names[n.Name] = owner
		take(owner, n.AllowedIPs)
		out[n.PublicKey] = peerOf(n, c)
	}
	return out, skips
}

// selected reports whether labels carry every label of sel.
func selected(labels, sel map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// peerOf is the tunnel peer for node n: its first endpoint (the engine
// follows the peer if it shows up from another), its allowed IPs.
func peerOf(n *Node, c *Config) config.Peer {
	p := config.Peer{
		PublicKey:           n.PublicKey,
		AllowedIPs:          n.AllowedIPs,
		PersistentKeepalive: c.PersistentKeepalive,
	}
	if len(n.Endpoints) > 0 {
		p.Endpoint = n.Endpoints[0].String()
	}
	return p
}

// diffPeers returns what turns applied into desired; step 2 of the flow.
func diffPeers(applied, desired map[wgcrypto.PublicKey]config.Peer) Diff {
	var d Diff
	for k, p := range desired {
		if old, ok := applied[k]; !ok || !samePeer(&old, &p) {
			d.Set = append(d.Set, p)
		}
	}
	for k := range applied {
		if _, ok := desired[k]; !ok {
			d.Remove = append(d.Remove, k)
		}
	}
	slices.SortFunc(d.Set, func(a, b config.Peer) int { return slices.Compare(a.PublicKey[:], b.PublicKey[:]) })
	slices.SortFunc(d.Remove, func(a, b wgcrypto.PublicKey) int { return slices.Compare(a[:], b[:]) })
	return d
}

// samePeer reports whether a and b configure the same peer.
func samePeer(a, b *config.Peer) bool {
	return a.PublicKey == b.PublicKey && a.Endpoint == b.Endpoint &&
		a.PersistentKeepalive == b.PersistentKeepalive && a.PresharedKey == b.PresharedKey &&
		slices.Equal(a.AllowedIPs, b.AllowedIPs)
}

// keepaliveSeconds is d in whole seconds for the engine, capped at 65535.
func keepaliveSeconds(d time.Duration) uint16 {
	return uint16(min(d/time.Second, 65535))
}
