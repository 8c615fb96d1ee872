package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/uapi"
)

const showHelp = `usage: warren show [--json] [NAME | all | interfaces] [VIEW]

Shows the state of running tunnels as wg show does, read over their control
sockets in ` + uapi.DefaultDir + `, with the packets each dropped by reason.
Without NAME, or with all, it shows every tunnel; interfaces lists their
names.

VIEW prints one field per line, tab-separated, exactly as wg show does (with
all, each line starts with the interface name):
  public-key, private-key, listen-port, fwmark, peers, preshared-keys,
  endpoints, allowed-ips, latest-handshakes, transfer,
  persistent-keepalive, dump

flags:
  --json   print one JSON document of interfaces, peers and drops instead
`

// showViews are the VIEW arguments of `warren show`, those of `wg show`.
var showViews = []string{
	"public-key", "private-key", "listen-port", "fwmark", "peers", "preshared-keys",
	"endpoints", "allowed-ips", "latest-handshakes", "transfer", "persistent-keepalive", "dump",
}

// runShow prints the state of running tunnels as `wg show` does, read over
// their control sockets, with the drop counters of warren daemons.
func runShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("show")
	asJSON := fs.Bool("json", false, "print JSON")
	args, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(args) > 2 {
		return fmt.Errorf("%w: show: too many arguments", errUsage)
	}
	var view string
	if len(args) == 2 {
		view = args[1]
		if !slices.Contains(showViews, view) {
			return fmt.Errorf("%w: show: unknown view %q (want one of %s)", errUsage, view, strings.Join(showViews, ", "))
		}
		if *asJSON {
			return fmt.Errorf("%w: show: --json shows everything and takes no view", errUsage)
		}
	}
	all := len(args) == 0 || args[0] == "all"
	if !all && args[0] == "interfaces" {
		if len(args) > 1 || *asJSON {
			return fmt.Errorf("%w: show interfaces takes no view and no --json", errUsage)
		}
		if names := runningNames(); len(names) > 0 {
			fmt.Fprintln(stdout, strings.Join(names, " "))
		}
		return nil
	}
	names := args[:min(len(args), 1)]
	if all {
		names = runningNames()
	} else if !config.ValidName(names[0]) {
		return fmt.Errorf("%w: show: %q is not an interface name (%s)", errUsage, names[0], config.NameRule)
	}
	var tunnels []shownTunnel
	var errs []error
	for _, name := range names {
		t, err := getShown(name, func() (net.Conn, error) { return dialControl(name) })
		if err != nil {
			errs = append(errs, fmt.Errorf("show %s: %w", name, err))
			continue
		}
		tunnels = append(tunnels, t)
	}
	switch {
	case *asJSON:
		err = printShowJSON(stdout, tunnels)
	case view != "":
		for _, t := range tunnels {
			printView(stdout, t, view, all)
		}
	default:
		now := time.Now()
		for i, t := range tunnels {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			printShow(stdout, t, now)
		}
	}
	return errors.Join(append(errs, err)...)
}

// runningNames returns the sorted names of the interfaces with a control
// socket.
func runningNames() []string {
	socks, _ := filepath.Glob(filepath.Join(uapi.DefaultDir, "*.sock"))
	names := make([]string, 0, len(socks))
	for _, s := range socks {
		names = append(names, strings.TrimSuffix(filepath.Base(s), ".sock"))
	}
	sort.Strings(names)
	return names
}

// shownTunnel is what show learned about one tunnel.
type shownTunnel struct {
	name  string
	state *uapi.State
	drops bool // the daemon reported drop counters (warren does, wireguard-go does not)
}

// dialControl connects to the control socket of iface with a deadline.
func dialControl(iface string) (net.Conn, error) {
	c, err := uapi.Dial(uapi.DefaultDir, iface)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("not up (no %s)", uapi.SocketPath(uapi.DefaultDir, iface))
		}
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, nil
}

// getState asks the daemon of iface for its state (get=1).
func getState(iface string) (*uapi.State, error) {
	c, err := dialControl(iface)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return uapi.Get(c)
}

// getShown asks the daemon of iface for its state with drop counters
// (get=warren), and a daemon that does not know that request again with a
// plain get=1 on a new connection (it closed the first one).
func getShown(iface string, dial func() (net.Conn, error)) (shownTunnel, error) {
	t := shownTunnel{name: iface, drops: true}
	c, err := dial()
	if err != nil {
		return t, err
	}
	t.state, err = uapi.GetWarren(c)
	c.Close()
	if !errors.Is(err, uapi.ErrNotWarren) {
		return t, err
	}
	t.drops = false
	if c, err = dial(); err != nil {
		return t, err
	}
	defer c.Close()
	t.state, err = uapi.Get(c)
	return t, err
}

// printShow renders a tunnel as `wg show` does (wireguard-tools' show.c,
// pretty_print, without colours), with warren's drops after the
// interface's lines: peers by latest handshake, newest first; sizes and
// times in wg's words.
func printShow(w io.Writer, t shownTunnel, now time.Time) {
	st := t.state
	fmt.Fprintf(w, "interface: %s\n", t.name)
	if !st.PrivateKey.IsZero() {
		fmt.Fprintf(w, "  public key: %s\n  private key: (hidden)\n", st.PrivateKey.PublicKey())
	}
	if st.ListenPort != 0 {
		fmt.Fprintf(w, "  listening port: %d\n", st.ListenPort)
	}
	if st.FwMark != 0 {
		fmt.Fprintf(w, "  fwmark: 0x%x\n", st.FwMark)
	}
	if t.drops {
		var total uint64
		for _, d := range st.Drops {
			total += d.Count
		}
		fmt.Fprintf(w, "  dropped packets: %d\n", total)
		for _, d := range st.Drops {
			fmt.Fprintf(w, "    %s: %d\n", d.Reason, d.Count)
		}
	} else {
		fmt.Fprintf(w, "  dropped packets: (not reported by this daemon)\n")
	}
	printExtras(w, st.Extras)
	for _, p := range byLatestHandshake(st.Peers) {
		fmt.Fprintf(w, "\npeer: %s\n", p.PublicKey)
		if node := extra(p.Extras, "warren_mesh_node"); node != "" {
			fmt.Fprintf(w, "  mesh node: %s\n", node)
		}
		if !p.PresharedKey.IsZero() {
			fmt.Fprintf(w, "  preshared key: (hidden)\n")
		}
		if p.Endpoint.IsValid() {
			fmt.Fprintf(w, "  endpoint: %s\n", p.Endpoint)
		}
		if local := extra(p.Extras, "warren_local"); local != "" {
			fmt.Fprintf(w, "  local address: %s\n", local)
		}
		if outer, inner := pathMTU(p.Extras); outer != 0 {
			fmt.Fprintf(w, "  path MTU: %d (%d inside the tunnel)\n", outer, inner)
		}
		fmt.Fprintf(w, "  allowed ips: %s\n", allowedIPs(p, ", "))
		if !p.LastHandshake.IsZero() {
			fmt.Fprintf(w, "  latest handshake: %s\n", ago(p.LastHandshake, now))
		}
		if p.RxBytes != 0 || p.TxBytes != 0 {
			fmt.Fprintf(w, "  transfer: %s received, %s sent\n", humanBytes(p.RxBytes), humanBytes(p.TxBytes))
		}
		if p.PersistentKeepalive != 0 {
			fmt.Fprintf(w, "  persistent keepalive: every %s\n", humanDuration(uint64(p.PersistentKeepalive)))
		}
	}
}

// extra returns the value of the extra line key in es, "" if absent.
func extra(es []uapi.Extra, key string) string {
	for _, e := range es {
		if e.Key == key {
			return e.Value
		}
	}
	return ""
}

// pathMTU returns a peer's lowered path MTU from its warren_path_mtu line
// (outer and inner, bytes), zeros when absent or malformed.
func pathMTU(es []uapi.Extra) (outer, inner int) {
	if _, err := fmt.Sscanf(extra(es, "warren_path_mtu"), "%d %d", &outer, &inner); err != nil {
		return 0, 0
	}
	return outer, inner
}

// printExtras prints the interface's extra lines (get=warren): the mesh's
// state in words, any other line as its key without warren_ and its value.
func printExtras(w io.Writer, es []uapi.Extra) {
	if net := extra(es, "warren_mesh_network"); net != "" {
		state := "not connected to the store"
		if extra(es, "warren_mesh_connected") == "1" {
			state = "connected to the store"
		}
		fmt.Fprintf(w, "  mesh: network %s, %s, revision %s\n", net, state, extra(es, "warren_mesh_revision"))
		fmt.Fprintf(w, "    nodes: %s, peers: %s, events: %s, errors: %s\n", extra(es, "warren_mesh_nodes"),
			extra(es, "warren_mesh_peers"), extra(es, "warren_mesh_events_total"), extra(es, "warren_mesh_errors_total"))
		if e := extra(es, "warren_mesh_last_error"); e != "" {
			fmt.Fprintf(w, "    last error: %s\n", e)
		}
	}
	for _, e := range es {
		if strings.HasPrefix(e.Key, "warren_mesh_") || strings.HasPrefix(e.Key, "warren_mac") {
			continue
		}
		fmt.Fprintf(w, "  %s: %s\n", strings.ReplaceAll(strings.TrimPrefix(e.Key, "warren_"), "_", " "), e.Value)
	}
	printMACs(w, es)
}

// extrasJSON returns es as a JSON object, keys as on the wire; the MAC
// table's lines are left to macsJSON.
func extrasJSON(es []uapi.Extra) map[string]string {
	m := make(map[string]string, len(es))
	for _, e := range es {
		if e.Key != "warren_mac" {
			m[e.Key] = e.Value
		}
	}
	return m
}

// byLatestHandshake returns the peers sorted as wg show sorts them: the
// latest handshake first, peers that never completed one last.
func byLatestHandshake(peers []uapi.PeerState) []uapi.PeerState {
	sorted := slices.Clone(peers)
	slices.SortStableFunc(sorted, func(a, b uapi.PeerState) int {
		switch {
		case a.LastHandshake.IsZero() && !b.LastHandshake.IsZero():
			return 1
		case b.LastHandshake.IsZero() && !a.LastHandshake.IsZero():
			return -1
		}
		return b.LastHandshake.Compare(a.LastHandshake)
	})
	return sorted
}

// allowedIPs joins a peer's allowed IPs with sep, or says "(none)".
func allowedIPs(p uapi.PeerState, sep string) string {
	if len(p.AllowedIPs) == 0 {
		return "(none)"
	}
	ips := make([]string, len(p.AllowedIPs))
	for i, ip := range p.AllowedIPs {
		ips[i] = ip.String()
	}
	return strings.Join(ips, sep)
}

// humanBytes writes a byte count as wg show does: "B" below 1 KiB, then
// KiB, MiB, GiB and TiB with two decimals.
func humanBytes(b uint64) string {
	const k = 1024
	switch {
	case b < k:
		return fmt.Sprintf("%d B", b)
	case b < k*k:
		return fmt.Sprintf("%.2f KiB", float64(b)/k)
	case b < k*k*k:
		return fmt.Sprintf("%.2f MiB", float64(b)/(k*k))
	case b < k*k*k*k:
		return fmt.Sprintf("%.2f GiB", float64(b)/(k*k*k))
	}
	return fmt.Sprintf("%.2f TiB", float64(b)/(k*k*k*k))
}

// humanDuration writes seconds as wg show does: "1 year, 2 days, 1 hour,
// 5 minutes, 1 second", leaving out the zero units (a year is 365 days).
// Zero seconds is "".
func humanDuration(secs uint64) string {
	units := []struct {
		name string
		secs uint64
	}{{"year", 365 * 24 * 3600}, {"day", 24 * 3600}, {"hour", 3600}, {"minute", 60}, {"second", 1}}
	var parts []string
	for _, u := range units {
		n := secs / u.secs
		secs %= u.secs
		switch n {
		case 0:
		case 1:
			parts = append(parts, "1 "+u.name)
		default:
			parts = append(parts, fmt.Sprintf("%d %ss", n, u.name))
		}
	}
	return strings.Join(parts, ", ")
}

// ago writes how long before now t was, in whole seconds as wg show
// counts them ("Now" for none).
func ago(t, now time.Time) string {
	switch d := now.Unix() - t.Unix(); {
	case d == 0:
		return "Now"
	case d < 0:
		return "(System clock wound backward; connection problems may ensue.)"
	default:
		return humanDuration(uint64(d)) + " ago"
	}
}

// printView writes one VIEW of `warren show NAME VIEW` as `wg show` does
// (show.c, ugly_print and dump_print): tab-separated, with the interface
// name first on each line when several interfaces are shown (all).
func printView(w io.Writer, t shownTunnel, view string, withName bool) {
	st := t.state
	prefix := ""
	if withName {
		prefix = t.name + "\t"
	}
	var private, public string = "(none)", "(none)"
	if !st.PrivateKey.IsZero() {
		private, public = st.PrivateKey.String(), st.PrivateKey.PublicKey().String()
	}
	fwmark := "off"
	if st.FwMark != 0 {
		fwmark = fmt.Sprintf("0x%x", st.FwMark)
	}
	switch view {
	case "public-key":
		fmt.Fprintf(w, "%s%s\n", prefix, public)
	case "private-key":
		fmt.Fprintf(w, "%s%s\n", prefix, private)
	case "listen-port":
		fmt.Fprintf(w, "%s%d\n", prefix, st.ListenPort)
	case "fwmark":
		fmt.Fprintf(w, "%s%s\n", prefix, fwmark)
	case "dump":
		fmt.Fprintf(w, "%s%s\t%s\t%d\t%s\n", prefix, private, public, st.ListenPort, fwmark)
	case "endpoints":
		// wg writes the interface name once, before the first peer, not on
		// every line; scripts that parse it expect exactly that.
		fmt.Fprint(w, prefix)
	}
	for _, p := range st.Peers {
		pub := p.PublicKey.String()
		switch view {
		case "peers":
			fmt.Fprintf(w, "%s%s\n", prefix, pub)
		case "preshared-keys":
			fmt.Fprintf(w, "%s%s\t%s\n", prefix, pub, presharedKey(p))
		case "endpoints":
			fmt.Fprintf(w, "%s\t%s\n", pub, endpoint(p))
		case "allowed-ips":
			fmt.Fprintf(w, "%s%s\t%s\n", prefix, pub, allowedIPs(p, " "))
		case "latest-handshakes":
			fmt.Fprintf(w, "%s%s\t%d\n", prefix, pub, unixSeconds(p.LastHandshake))
		case "transfer":
			fmt.Fprintf(w, "%s%s\t%d\t%d\n", prefix, pub, p.RxBytes, p.TxBytes)
		case "persistent-keepalive":
			fmt.Fprintf(w, "%s%s\t%s\n", prefix, pub, keepalive(p))
		case "dump":
			fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", prefix, pub, presharedKey(p), endpoint(p),
				allowedIPs(p, ","), unixSeconds(p.LastHandshake), p.RxBytes, p.TxBytes, keepalive(p))
		}
	}
}

func presharedKey(p uapi.PeerState) string {
	if p.PresharedKey.IsZero() {
		return "(none)"
	}
	return p.PresharedKey.String()
}

func endpoint(p uapi.PeerState) string {
	if !p.Endpoint.IsValid() {
		return "(none)"
	}
	return p.Endpoint.String()
}

func keepalive(p uapi.PeerState) string {
	if p.PersistentKeepalive == 0 {
		return "off"
	}
	return fmt.Sprint(p.PersistentKeepalive)
}

// unixSeconds is t in seconds since 1970, 0 for the zero time (never).
func unixSeconds(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// The JSON document of `warren show --json`. Every key is always present,
// so that scripts can rely on the shape; secrets are never included.
type (
	showJSON struct {
		Interfaces []interfaceJSON `json:"interfaces"`
	}
	interfaceJSON struct {
		Name       string            `json:"name"`
		PublicKey  string            `json:"public_key"`  // "" without a private key
		ListenPort uint16            `json:"listen_port"` // 0: none
		FwMark     uint32            `json:"fwmark"`      // 0: none
		Peers      []peerJSON        `json:"peers"`
		Drops      map[string]uint64 `json:"drops"` // by reason, non-zero ones; null when the daemon does not report them
		// Extras are the process's warren_* lines, such as the mesh's
		// state (warren_mesh_connected and so on); null when the daemon
		// does not report them.
		Extras map[string]string `json:"extras"`
		// MACs is the MAC table of Mode = tap, sorted by MAC; null in TUN
		// mode and when the daemon does not report it.
		MACs []macJSON `json:"macs"`
	}
	macJSON struct {
		MAC    string `json:"mac"`
		Peer   string `json:"peer"` // public key, or "local": learned from the TAP
		Age    int64  `json:"age"`  // seconds since last seen
		Frames uint64 `json:"frames"`
	}
	peerJSON struct {
		PublicKey           string     `json:"public_key"`
		PresharedKey        bool       `json:"preshared_key"` // whether one is set
		Endpoint            string     `json:"endpoint"`      // "" when unknown
		AllowedIPs          []string   `json:"allowed_ips"`
		LatestHandshake     *time.Time `json:"latest_handshake"` // null: never
		RxBytes             uint64     `json:"rx_bytes"`
		TxBytes             uint64     `json:"tx_bytes"`
		PersistentKeepalive uint16     `json:"persistent_keepalive"` // seconds; 0: off
		MeshNode            string     `json:"mesh_node"`            // the mesh node's name; "" if not a mesh peer
		LocalAddress        string     `json:"local_address"`        // our address the peer last wrote to, which replies leave from; "" before it wrote
		PathMTU             int        `json:"path_mtu"`             // bytes, when a narrower path lowered it; 0: not lowered
		InnerMTU            int        `json:"inner_mtu"`            // bytes, what packets to the peer must fit with path_mtu; 0: not lowered
	}
)

// printShowJSON writes the tunnels as one indented JSON document.
func printShowJSON(w io.Writer, tunnels []shownTunnel) error {
	doc := showJSON{Interfaces: make([]interfaceJSON, 0, len(tunnels))}
	for _, t := range tunnels {
		st := t.state
		ij := interfaceJSON{Name: t.name, ListenPort: st.ListenPort, FwMark: st.FwMark, Peers: make([]peerJSON, 0, len(st.Peers))}
		if !st.PrivateKey.IsZero() {
			ij.PublicKey = st.PrivateKey.PublicKey().String()
		}
		if t.drops {
			ij.Drops = make(map[string]uint64, len(st.Drops))
			for _, d := range st.Drops {
				ij.Drops[d.Reason] += d.Count
			}
			ij.Extras = extrasJSON(st.Extras)
			ij.MACs = macsJSON(st.Extras)
		}
		for _, p := range st.Peers {
			pj := peerJSON{
				PublicKey:           p.PublicKey.String(),
				PresharedKey:        !p.PresharedKey.IsZero(),
				AllowedIPs:          make([]string, 0, len(p.AllowedIPs)),
				RxBytes:             p.RxBytes,
				TxBytes:             p.TxBytes,
				PersistentKeepalive: p.PersistentKeepalive,
				MeshNode:            extra(p.Extras, "warren_mesh_node"),
				LocalAddress:        extra(p.Extras, "warren_local"),
			}
			if p.Endpoint.IsValid() {
				pj.Endpoint = p.Endpoint.String()
			}
			pj.PathMTU, pj.InnerMTU = pathMTU(p.Extras)
			for _, ip := range p.AllowedIPs {
				pj.AllowedIPs = append(pj.AllowedIPs, ip.String())
			}
			if !p.LastHandshake.IsZero() {
				h := p.LastHandshake.UTC()
				pj.LatestHandshake = &h
			}
			ij.Peers = append(ij.Peers, pj)
		}
		doc.Interfaces = append(doc.Interfaces, ij)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
