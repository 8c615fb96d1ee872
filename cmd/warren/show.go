package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/warrenvpn/warren/uapi"
)

const showUsage = `usage: warren show [--json] [NAME]

Shows the state of running tunnels (all of them without NAME) as wg show
does, read over their control sockets, with the packets each dropped by
reason. --json prints one JSON document instead.
`

// runShow prints the state of running tunnels as `wg show` does, read over
// their control sockets, with the drop counters of warren daemons.
func runShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, showUsage) }
	asJSON := fs.Bool("json", false, "print JSON")
	args, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	var names []string
	switch len(args) {
	case 0:
		socks, _ := filepath.Glob(filepath.Join(uapi.DefaultDir, "*.sock"))
		for _, s := range socks {
			names = append(names, strings.TrimSuffix(filepath.Base(s), ".sock"))
		}
		sort.Strings(names)
	case 1:
		names = args
	default:
		fs.Usage()
		return fmt.Errorf("%w: warren show [--json] [NAME]", errUsage)
	}
	var tunnels []shownTunnel
	for _, name := range names {
		t, err := getShown(name, func() (net.Conn, error) { return dialControl(name) })
		if err != nil {
			return fmt.Errorf("show %s: %w", name, err)
		}
		tunnels = append(tunnels, t)
	}
	if *asJSON {
		return printShowJSON(stdout, tunnels)
	}
	for i, t := range tunnels {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printShow(stdout, t, time.Now())
	}
	return nil
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

// printShow renders a tunnel like `wg show`, with its drops after the
// interface's lines.
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
	for _, p := range st.Peers {
		fmt.Fprintf(w, "\npeer: %s\n", p.PublicKey)
		if !p.PresharedKey.IsZero() {
			fmt.Fprintf(w, "  preshared key: (hidden)\n")
		}
		if p.Endpoint.IsValid() {
			fmt.Fprintf(w, "  endpoint: %s\n", p.Endpoint)
		}
		ips := make([]string, len(p.AllowedIPs))
		for i, ip := range p.AllowedIPs {
			ips[i] = ip.String()
		}
		if len(ips) == 0 {
			ips = []string{"(none)"}
		}
		fmt.Fprintf(w, "  allowed ips: %s\n", strings.Join(ips, ", "))
		if !p.LastHandshake.IsZero() {
			fmt.Fprintf(w, "  latest handshake: %s ago\n", now.Sub(p.LastHandshake).Truncate(time.Second))
		}
		fmt.Fprintf(w, "  transfer: %d B received, %d B sent\n", p.RxBytes, p.TxBytes)
		if p.PersistentKeepalive != 0 {
			fmt.Fprintf(w, "  persistent keepalive: every %d seconds\n", p.PersistentKeepalive)
		}
	}
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
		}
		for _, p := range st.Peers {
			pj := peerJSON{
				PublicKey:           p.PublicKey.String(),
				PresharedKey:        !p.PresharedKey.IsZero(),
				AllowedIPs:          make([]string, 0, len(p.AllowedIPs)),
				RxBytes:             p.RxBytes,
				TxBytes:             p.TxBytes,
				PersistentKeepalive: p.PersistentKeepalive,
			}
			if p.Endpoint.IsValid() {
				pj.Endpoint = p.Endpoint.String()
			}
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
