package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/warrenvpn/warren/uapi"
)

// runShow prints the state of running tunnels as `wg show` does, read over
// their control sockets.
func runShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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
		return fmt.Errorf("%w: warren show [NAME]", errUsage)
	}
	for i, name := range names {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		st, err := getState(name)
		if err != nil {
			return fmt.Errorf("show %s: %w", name, err)
		}
		printShow(stdout, name, st, time.Now())
	}
	return nil
}

// getState asks the daemon of iface for its state (get=1).
func getState(iface string) (*uapi.State, error) {
	c, err := uapi.Dial(uapi.DefaultDir, iface)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("not up (no %s)", uapi.SocketPath(uapi.DefaultDir, iface))
		}
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return uapi.Get(c)
}

// printShow renders a state like `wg show`.
func printShow(w io.Writer, name string, st *uapi.State, now time.Time) {
	fmt.Fprintf(w, "interface: %s\n", name)
	if !st.PrivateKey.IsZero() {
		fmt.Fprintf(w, "  public key: %s\n  private key: (hidden)\n", st.PrivateKey.PublicKey())
	}
	if st.ListenPort != 0 {
		fmt.Fprintf(w, "  listening port: %d\n", st.ListenPort)
	}
	if st.FwMark != 0 {
		fmt.Fprintf(w, "  fwmark: 0x%x\n", st.FwMark)
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
