package mesh

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// Change returns d as a UAPI set request: a removal per removed peer, and
// each set peer with its endpoint, keepalive and allowed IPs replaced.
// Peers d does not name are not in the request, so they keep their
// sessions.
func (d *Diff) Change() (*uapi.Change, error) {
	c := &uapi.Change{}
	for _, k := range d.Remove {
		c.Peers = append(c.Peers, uapi.PeerChange{PublicKey: k, Remove: true})
	}
	for _, p := range d.Set {
		pc := uapi.PeerChange{PublicKey: p.PublicKey, ReplaceAllowedIPs: true}
		ka := keepaliveSeconds(p.PersistentKeepalive)
		pc.PersistentKeepalive = &ka
		if p.Endpoint != "" {
			ep, err := netip.ParseAddrPort(p.Endpoint)
			if err != nil {
				return nil, fmt.Errorf("peer %s: endpoint %q: %v", p.PublicKey, p.Endpoint, err)
			}
			pc.Endpoint = &ep
		}
		for _, a := range p.AllowedIPs {
			pc.AllowedIPs = append(pc.AllowedIPs, uapi.AllowedIPChange{Prefix: a})
		}
		c.Peers = append(c.Peers, pc)
	}
	return c, nil
}

// Annotate adds the mesh's state to st, a snapshot of the tunnel's state
// for a "get=warren" reply (uapi.Server.Extras): device lines for the
// store's state, and warren_mesh_node=NAME on each peer that is a mesh
// node (a peer of the node's own file with the same key is not one).
// Numeric lines become metrics of the same name (package metrics).
func (m *Mesh) Annotate(st *uapi.State) {
	s := m.Status()
	st.Extras = append(st.Extras, s.Extras(m.cfg.Network)...)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range st.Peers {
		p := &st.Peers[i]
		e, ok := m.nodes[p.PublicKey]
		if !ok || m.isStatic(p.PublicKey) {
			continue
		}
		p.Extras = append(p.Extras, uapi.Extra{Key: "warren_mesh_node", Value: printable(e.node.Name)})
	}
}

// isStatic reports whether k is a peer of the node's own file.
func (m *Mesh) isStatic(k wgcrypto.PublicKey) bool {
	for _, p := range m.static {
		if p.PublicKey == k {
			return true
		}
	}
	return false
}

// Extras returns s as the device lines of a "get=warren" reply for the
// mesh network.
func (s Status) Extras(network string) []uapi.Extra {
	connected := "0"
	if s.Connected {
		connected = "1"
	}
	es := []uapi.Extra{
		{Key: "warren_mesh_network", Value: printable(network)},
		{Key: "warren_mesh_connected", Value: connected},
		{Key: "warren_mesh_revision", Value: strconv.FormatInt(s.Revision, 10)},
		{Key: "warren_mesh_nodes", Value: strconv.Itoa(s.Nodes)},
		{Key: "warren_mesh_peers", Value: strconv.Itoa(s.Peers)},
		{Key: "warren_mesh_events_total", Value: strconv.FormatUint(s.Events, 10)},
		{Key: "warren_mesh_errors_total", Value: strconv.FormatUint(s.Errors, 10)},
	}
	if s.LastError != "" {
		es = append(es, uapi.Extra{Key: "warren_mesh_last_error", Value: printable(s.LastError)})
	}
	return es
}

// printable replaces the control characters of s, which a reply line
// cannot carry, with spaces.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
