package mesh

import (
	"fmt"
	"net/netip"

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
