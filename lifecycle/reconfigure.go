package lifecycle

// Reconfigure applies a new configuration to a running tunnel as `wg
// syncconf` and wg-quick's address and route handling would, in steps:
//  1. check what cannot change while running (the name, the mode, in Mode
//     = tap the bridge, the MAC ageing and Offload) and
//     resolve the endpoints of new and changed peers (a name that does not
//     resolve is retried in the background once the rest is applied, as
//     at start); nothing has changed yet;
//  2. hand the engine the difference as one uapi.Change: peers gone are
//     removed, new and changed peers set whole, the private key, listen
//     port and fwmark only if they differ. Peers that did not change are not
//     in the Change at all, so they keep their sessions, endpoints (also
//     after roaming) and timers, and lose no packet (L14);
//  3. apply the new host state (MTU, addresses, routes, rules, sysctls)
//     through host.Manager, which diffs it against what it holds, then
//     the nftables table the new state needs (or none), and rewrite the
//     crash journal; on failure the engine gets the reverse Change and the
//     host its previous state;
//  4. replace the DNS configuration if it changed.
//
// In Mode = tap the peers' AllowedMACs and Forward are applied with the
// engine in step 2 (uapi has no key for them, so they go to the engine
// beside the Change, and back with it on failure).
//
// Hooks (PreUp, PostUp, PreDown, PostDown) are not run again, as with `wg
// syncconf`; the new PreDown and PostDown run at Close.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/host"
	"github.com/warrenvpn/warren/mactable"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
)

// ErrClosed is returned by Reconfigure once Close has begun.
var ErrClosed = errors.New("tunnel closed")

// Reconfigure applies cfg to the running tunnel, changing only what differs
// from the configuration now applied (see the steps above). It is for
// tunnels brought up by Up; it is safe to call from several goroutines (the
// calls are serialised) and returns ErrClosed once Close has begun. On error
// the tunnel keeps its previous configuration.
func (t *Tunnel) Reconfigure(ctx context.Context, cfg *config.Config) error {
	t.cur.Lock()
	defer t.cur.Unlock()
	switch {
	case t.cur.closed:
		return ErrClosed
	case t.cur.cfg == nil || t.cur.hm == nil:
		return errors.New("reconfigure: only a tunnel brought up by Up has a configuration")
	case cfg.Interface.Mode != t.cur.cfg.Interface.Mode:
		return fmt.Errorf("reconfigure: Mode cannot change while %s is up (%s → %s)", t.name, t.cur.cfg.Interface.Mode, cfg.Interface.Mode)
	case cfg.Interface.Bridge != t.cur.cfg.Interface.Bridge:
		return fmt.Errorf("reconfigure: Bridge cannot change while %s is up (%q → %q): run warren down and up", t.name, t.cur.cfg.Interface.Bridge, cfg.Interface.Bridge)
	case cfg.Interface.OffloadOff != t.cur.cfg.Interface.OffloadOff:
		return fmt.Errorf("reconfigure: Offload cannot change while %s is up (the TAP's offloads are set when it opens): run warren down and up", t.name)
	case t.threads(&cfg.Interface) != t.threads(&t.cur.cfg.Interface):
		return fmt.Errorf("reconfigure: Threads cannot change while %s is up (%d → %d; the TUN's queues and the sockets are opened at start): run warren down and up",
			t.name, t.threads(&t.cur.cfg.Interface), t.threads(&cfg.Interface))
	case cfg.Interface.MACAgeing != t.cur.cfg.Interface.MACAgeing:
		return fmt.Errorf("reconfigure: MACAgeing cannot change while %s is up (%s → %s): run warren down and up",
			t.name, ageingText(t.cur.cfg.Interface.MACAgeing), ageingText(cfg.Interface.MACAgeing))
	case cfg.Interface.PathMTUProbe != t.cur.cfg.Interface.PathMTUProbe:
		return fmt.Errorf("reconfigure: PathMTUProbe cannot change while %s is up (%s → %s): run warren down and up",
			t.name, ageingText(t.cur.cfg.Interface.PathMTUProbe), ageingText(cfg.Interface.PathMTUProbe))
	case cfg.Interface.ReresolveAfter != t.cur.cfg.Interface.ReresolveAfter || cfg.Interface.ReresolveMax != t.cur.cfg.Interface.ReresolveMax:
		return fmt.Errorf("reconfigure: ReresolveAfter and ReresolveMax cannot change while %s is up (%s, %s → %s, %s): run warren down and up",
			t.name, ageingText(t.cur.cfg.Interface.ReresolveAfter), ageingText(t.cur.cfg.Interface.ReresolveMax),
			ageingText(cfg.Interface.ReresolveAfter), ageingText(cfg.Interface.ReresolveMax))
	}
	old, oldPlan := t.cur.cfg, t.cur.plan
	cfg, err := t.withTable(cfg)
	if err != nil {
		return err
	}
	plan := routePlan(cfg)

	// 1. Endpoints of new and changed peers.
	fwd, unresolved, err := t.peerChanges(ctx, old, cfg)
	if err != nil {
		return err
	}
	change := &uapi.Change{Peers: fwd}
	if !cfg.Interface.PrivateKey.Equal(old.Interface.PrivateKey) {
		change.PrivateKey = &cfg.Interface.PrivateKey
	}
	if cfg.Interface.ListenPort != old.Interface.ListenPort {
		port := cfg.Interface.ListenPort
		change.ListenPort = &port
	}
	if plan.FwMark != oldPlan.FwMark {
		change.FwMark = &plan.FwMark
	}

	// 2. Engine; the endpoints it knows are kept for the way back.
	endpoints := make(map[crypto.PublicKey]netip.AddrPort)
	for _, p := range t.eng.Config().Peers {
		endpoints[p.PublicKey] = p.Endpoint
	}
	if err := t.eng.Apply(change); err != nil {
		return fmt.Errorf("reconfigure %s: %w", t.name, err)
	}
	macs, oldMACs := allowedMACChanges(old, cfg)
	t.eng.SetAllowedMACs(macs)
	t.eng.SetForward(cfg.Interface.Forward)

	// 3. Host state, firewall and journal.
	want := hostState(t.name, cfg, plan)
	_, herr := t.cur.hm.Apply(want)
	if herr == nil {
		if herr = t.applyFirewall(firewallRules(t.name, cfg, plan), cfg.Interface.FirewallOptional); herr != nil {
			if _, rerr := t.cur.hm.Apply(hostState(t.name, old, oldPlan)); rerr != nil {
				herr = errors.Join(herr, fmt.Errorf("restore the previous host state: %w", rerr))
			}
		}
	}
	if jerr := t.updateJournal(func(j *journal) { j.Journal = t.cur.hm.Journal() }); jerr != nil {
		t.log.Warn("crash journal not shrunk to what is held", "err", jerr)
	}
	if herr != nil {
		if rerr := t.eng.Apply(reverseChange(old, oldPlan, change, endpoints)); rerr != nil {
			herr = errors.Join(herr, fmt.Errorf("restore the previous peers: %w", rerr))
		}
		t.eng.SetAllowedMACs(oldMACs)
		t.eng.SetForward(old.Interface.Forward)
		return fmt.Errorf("reconfigure %s: %w", t.name, herr)
	}

	// 4. DNS.
	if !slices.Equal(cfg.Interface.DNS, old.Interface.DNS) || !slices.Equal(cfg.Interface.DNSSearch, old.Interface.DNSSearch) {
		if err := t.unsetDNS(); err != nil {
			t.log.Warn("old DNS configuration not removed", "err", err)
		}
		if err := t.setDNS(ctx, &cfg.Interface); err != nil {
			t.log.Warn("DNS not applied", "err", err)
		}
	}

	t.watchReconfigured(cfg, fwd, unresolved)
	t.cur.cfg, t.cur.plan = cfg, plan
	t.preDown, t.postDown = cfg.Interface.PreDown, cfg.Interface.PostDown
	added, removed, changed := countPeers(change, old)
	t.log.Info("reconfigured", "interface", t.name, "peers_added", added, "peers_removed", removed, "peers_changed", changed)
	if len(macs) > 0 {
		t.log.Info("AllowedMACs changed", "interface", t.name, "peers", len(macs))
	}
	return nil
}

// ageingText renders a duration key (MACAgeing, PathMTUProbe, ...) for a
// message: 0 is the default, negative off.
func ageingText(d time.Duration) string {
	switch {
	case d == 0:
		return "default"
	case d < 0:
		return "off"
	}
	return d.String()
}

// allowedMACChanges returns the AllowedMACs of the peers of cfg whose list
// differs from old's (new peers with a list included), in cfg's order, and
// the lists they had in old (empty for new peers), to restore on failure.
// Both are empty outside Mode = tap, where AllowedMACs is refused.
func allowedMACChanges(old, cfg *config.Config) (fwd, rev []tunnel.PeerConfig) {
	oldMACs := make(map[crypto.PublicKey][]mactable.MAC, len(old.Peers))
	for _, p := range old.Peers {
		oldMACs[p.PublicKey] = p.AllowedMACs
	}
	for _, p := range cfg.Peers {
		was := oldMACs[p.PublicKey]
		if sameMACs(was, p.AllowedMACs) {
			continue
		}
		fwd = append(fwd, tunnel.PeerConfig{PublicKey: p.PublicKey, AllowedMACs: p.AllowedMACs})
		rev = append(rev, tunnel.PeerConfig{PublicKey: p.PublicKey, AllowedMACs: was})
	}
	return fwd, rev
}

// sameMACs reports whether a and b list the same MACs, in any order.
func sameMACs(a, b []mactable.MAC) bool {
	if len(a) != len(b) {
		return false
	}
	for _, m := range a {
		if !slices.Contains(b, m) {
			return false
		}
	}
	for _, m := range b {
		if !slices.Contains(a, m) {
			return false
		}
	}
	return true
}

// Config returns the configuration now applied (Up's, or the last one
// Reconfigure applied); nil for a tunnel of UpDevice. The caller must not
// modify it. Close zeroes its private and preshared keys.
func (t *Tunnel) Config() *config.Config {
	t.cur.Lock()
	defer t.cur.Unlock()
	return t.cur.cfg
}

// unresolvedPeer is a peer whose endpoint name did not resolve.
type unresolvedPeer struct {
	peer *config.Peer
	err  error
}

// peerChanges returns the engine's peer changes from old to cfg: a removal
// for each peer gone, a whole entry for each peer new or changed; peers
// that are equal are left out. Endpoints of new peers and of peers whose
// Endpoint changed are resolved; those that do not resolve are returned
// to be retried.
func (t *Tunnel) peerChanges(ctx context.Context, old, cfg *config.Config) ([]uapi.PeerChange, []unresolvedPeer, error) {
	oldPeers := make(map[crypto.PublicKey]*config.Peer, len(old.Peers))
	for i := range old.Peers {
		oldPeers[old.Peers[i].PublicKey] = &old.Peers[i]
	}
	newPeers := make(map[crypto.PublicKey]bool, len(cfg.Peers))
	var changes []uapi.PeerChange
	var unresolved []unresolvedPeer
	for i := range cfg.Peers {
		p := &cfg.Peers[i]
		newPeers[p.PublicKey] = true
		o := oldPeers[p.PublicKey]
		if o != nil && equalPeer(o, p) {
			continue
		}
		var ep *netip.AddrPort
		if p.Endpoint != "" && (o == nil || o.Endpoint != p.Endpoint) {
			a, err := t.resolve(ctx, p)
			switch {
			case ctx.Err() != nil:
				return nil, nil, err
			case err != nil:
				unresolved = append(unresolved, unresolvedPeer{p, err})
			default:
				ep = &a
			}
		}
		changes = append(changes, wholePeer(p, ep))
	}
	for i := range old.Peers {
		if pk := old.Peers[i].PublicKey; !newPeers[pk] {
			changes = append(changes, uapi.PeerChange{PublicKey: pk, Remove: true})
		}
	}
	return changes, unresolved, nil
}

// wholePeer is a change that sets every field of p, with ep its resolved
// endpoint (nil: leave the endpoint as it is).
func wholePeer(p *config.Peer, ep *netip.AddrPort) uapi.PeerChange {
	psk := p.PresharedKey
	keepalive := uint16(p.PersistentKeepalive.Seconds())
	pc := uapi.PeerChange{
		PublicKey:           p.PublicKey,
		PresharedKey:        &psk,
		Endpoint:            ep,
		PersistentKeepalive: &keepalive,
		ReplaceAllowedIPs:   true,
	}
	for _, a := range p.AllowedIPs {
		pc.AllowedIPs = append(pc.AllowedIPs, uapi.AllowedIPChange{Prefix: a})
	}
	return pc
}

// equalPeer reports whether a and b configure a peer the same way (allowed
// IPs compared as sets).
func equalPeer(a, b *config.Peer) bool {
	if a.PublicKey != b.PublicKey || !a.PresharedKey.Equal(b.PresharedKey) || a.Endpoint != b.Endpoint ||
		a.PersistentKeepalive != b.PersistentKeepalive || len(a.AllowedIPs) != len(b.AllowedIPs) {
		return false
	}
	for _, p := range a.AllowedIPs {
		if !slices.Contains(b.AllowedIPs, p) {
			return false
		}
	}
	return true
}

// reverseChange undoes fwd, the change made from old, as far as the engine
// allows: removed and changed peers get old's entries back (with the
// endpoints the engine knew before), added ones are removed. Sessions of the
// peers fwd touched are not restored.
func reverseChange(old *config.Config, oldPlan host.RoutePlan, fwd *uapi.Change, endpoints map[crypto.PublicKey]netip.AddrPort) *uapi.Change {
	rev := &uapi.Change{}
	if fwd.PrivateKey != nil {
		rev.PrivateKey = &old.Interface.PrivateKey
	}
	if fwd.ListenPort != nil {
		port := old.Interface.ListenPort
		rev.ListenPort = &port
	}
	if fwd.FwMark != nil {
		rev.FwMark = &oldPlan.FwMark
	}
	for _, pc := range fwd.Peers {
		i := slices.IndexFunc(old.Peers, func(p config.Peer) bool { return p.PublicKey == pc.PublicKey })
		if i < 0 {
			rev.Peers = append(rev.Peers, uapi.PeerChange{PublicKey: pc.PublicKey, Remove: true})
			continue
		}
		var ep *netip.AddrPort
		if a, ok := endpoints[pc.PublicKey]; ok && a.IsValid() {
			ep = &a
		}
		rev.Peers = append(rev.Peers, wholePeer(&old.Peers[i], ep))
	}
	return rev
}

// countPeers counts the peers change adds, removes and changes, old being
// the configuration it was made against.
func countPeers(change *uapi.Change, old *config.Config) (added, removed, changed int) {
	for _, pc := range change.Peers {
		switch {
		case pc.Remove:
			removed++
		case slices.ContainsFunc(old.Peers, func(p config.Peer) bool { return p.PublicKey == pc.PublicKey }):
			changed++
		default:
			added++
		}
	}
	return added, removed, changed
}
