package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	wgcrypto "github.com/warrenvpn/warren/crypto"
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
		kv, err := uapiGet(ctx, uapi.SocketPath(uapi.DefaultDir, name))
		if err != nil {
			return fmt.Errorf("show %s: %w", name, err)
		}
		printShow(stdout, name, kv, time.Now())
	}
	return nil
}

// uapiGet sends get=1 and returns the reply's key=value lines in order.
func uapiGet(ctx context.Context, path string) ([][2]string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("not up (no %s)", path)
		}
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "get=1\n\n"); err != nil {
		return nil, err
	}
	var kv [][2]string
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("malformed reply line %q", line)
		}
		if k == "errno" {
			if v != "0" {
				return nil, fmt.Errorf("errno=%s", v)
			}
			return kv, nil
		}
		kv = append(kv, [2]string{k, v})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("reply ended without errno")
}

func uapiKeyToBase64(h string) string {
	b, err := hex.DecodeString(h)
	if err != nil {
		return h
	}
	return base64.StdEncoding.EncodeToString(b)
}

// printShow renders a get=1 reply like `wg show`.
func printShow(w io.Writer, name string, kv [][2]string, now time.Time) {
	fmt.Fprintf(w, "interface: %s\n", name)
	var peer map[string][]string
	flush := func() {
		if peer == nil {
			return
		}
		get := func(k string) string {
			if v := peer[k]; len(v) > 0 {
				return v[0]
			}
			return ""
		}
		fmt.Fprintf(w, "\npeer: %s\n", uapiKeyToBase64(get("public_key")))
		if strings.Trim(get("preshared_key"), "0") != "" {
			fmt.Fprintf(w, "  preshared key: (hidden)\n")
		}
		if ep := get("endpoint"); ep != "" {
			fmt.Fprintf(w, "  endpoint: %s\n", ep)
		}
		ips := strings.Join(peer["allowed_ip"], ", ")
		if ips == "" {
			ips = "(none)"
		}
		fmt.Fprintf(w, "  allowed ips: %s\n", ips)
		if sec, _ := strconv.ParseInt(get("last_handshake_time_sec"), 10, 64); sec != 0 {
			fmt.Fprintf(w, "  latest handshake: %s ago\n", now.Sub(time.Unix(sec, 0)).Truncate(time.Second))
		}
		fmt.Fprintf(w, "  transfer: %s B received, %s B sent\n", get("rx_bytes"), get("tx_bytes"))
		if ka := get("persistent_keepalive_interval"); ka != "" && ka != "0" {
			fmt.Fprintf(w, "  persistent keepalive: every %s seconds\n", ka)
		}
	}
	for _, e := range kv {
		k, v := e[0], e[1]
		switch {
		case k == "public_key":
			flush()
			peer = map[string][]string{}
			peer[k] = []string{v}
		case peer != nil:
			peer[k] = append(peer[k], v)
		case k == "private_key":
			if k, err := wgcrypto.ParsePrivateKeyHex(v); err == nil {
				fmt.Fprintf(w, "  public key: %s\n", k.PublicKey())
			}
			fmt.Fprintf(w, "  private key: (hidden)\n")
		case k == "listen_port":
			fmt.Fprintf(w, "  listening port: %s\n", v)
		case k == "fwmark":
			n, _ := strconv.ParseUint(v, 10, 32)
			fmt.Fprintf(w, "  fwmark: 0x%x\n", n)
		}
	}
	flush()
}
