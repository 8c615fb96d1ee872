package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// lastHandshake returns the time of the last handshake side i's warren
// has with its first peer, from its control socket.
func lastHandshake(t *testing.T, p *testPair, i int) time.Time {
	t.Helper()
	c, err := uapi.Dial(uapi.DefaultDir, p.names[i])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := uapi.Get(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Peers) == 0 {
		t.Fatal("no peer")
	}
	return s.Peers[0].LastHandshake
}

// TestReloadUnderTraffic (L14, L23): A pings B 100 times a second while A's
// config file gains a peer C with an address and a new MTU (SIGHUP), C's
// allowed IPs change (warren reload's SIGHUP), C goes again (SIGHUP), and
// a broken file is loaded (SIGHUP): no ping is lost, B's session is never
// renewed (no new handshake), the host follows each file, and the broken
// file is reported with its file and line while the tunnel runs on.
func TestReloadUnderTraffic(t *testing.T) {
	requireTool(t, "ping")
	p := newTestPair(t)
	confA := demoConfig(p.keys[0], p.keys[1].PublicKey(), 0, p.underlay(1))
	p.startUp(t, 1, demoConfig(p.keys[1], p.keys[0].PublicKey(), 1, p.underlay(0)), nil).waitLog(t, " msg=up ")
	pr := p.startUp(t, 0, confA, nil)
	pr.waitLog(t, " msg=up ")
	p.ping(t, 0, demoOverlay[1].v4.Addr(), 1)
	hs := lastHandshake(t, p, 0)
	path := filepath.Join(p.dir, p.names[0]+".conf")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ping := p.lab.A.Command(ctx, "ping", "-n", "-q", "-i", "0.01", "-c", "300", demoOverlay[1].v4.Addr().String())
	var out syncBuffer
	ping.Stdout, ping.Stderr = &out, &out
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	pingDone := make(chan error, 1)
	go func() { pingDone <- ping.Wait() }()

	kc, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	peerC := fmt.Sprintf("\n[Peer]\nPublicKey = %s\nAllowedIPs = 198.19.7.0/24\n", kc.PublicKey())
	withC := strings.Replace(confA, "Address = ", "MTU = 1400\nAddress = 198.19.9.1/24, ", 1) + peerC
	changedC := strings.Replace(withC, "198.19.7.0/24", "198.19.8.0/24", 1)
	reloads := 0
	reload := func(text string, how string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if how == "warren reload" {
			out, err := nsRun(p, 0, p.exe, "reload", p.names[0])
			if err != nil {
				t.Fatalf("warren reload: %v\n%s", err, out)
			}
		} else {
			pr.cmd.Process.Signal(syscall.SIGHUP)
		}
		reloads++
		want := reloads
		deadline := time.After(5 * time.Second)
		for strings.Count(pr.log.String(), `msg=reloading`) < want || strings.Count(pr.log.String(), "msg=reconfigured")+strings.Count(pr.log.String(), `msg="reload failed`) < want {
			select {
			case <-deadline:
				t.Fatalf("reload %d not done within 5 s:\n%s", want, pr.log)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	routes := func() string {
		out, _ := nsRun(p, 0, "ip", "-4", "route", "show", "dev", p.names[0])
		return out
	}
	link := func() string {
		out, _ := nsRun(p, 0, "ip", "-o", "addr", "show", "dev", p.names[0])
		l, _ := nsRun(p, 0, "ip", "-o", "link", "show", "dev", p.names[0])
		return l + out
	}

	reload(withC, "SIGHUP")
	if r := routes(); !strings.Contains(r, "198.19.7.0/24") {
		t.Errorf("after adding C, no route to its allowed IPs:\n%s", r)
	}
	if l := link(); !strings.Contains(l, "mtu 1400") || !strings.Contains(l, "198.19.9.1/24") {
		t.Errorf("after the reload, the link lacks the new MTU or address:\n%s", l)
	}
	reload(changedC, "warren reload")
	if r := routes(); !strings.Contains(r, "198.19.8.0/24") || strings.Contains(r, "198.19.7.0/24") {
		t.Errorf("after changing C, routes are not C's new allowed IPs:\n%s", r)
	}
	reload(confA, "SIGHUP")
	if r := routes(); strings.Contains(r, "198.19.8.0/24") {
		t.Errorf("after removing C, its route is still there:\n%s", r)
	}
	if l := link(); strings.Contains(l, "mtu 1400") || strings.Contains(l, "198.19.9.1") {
		t.Errorf("after the reload back, the link keeps the MTU or address:\n%s", l)
	}
	reload(confA+"\n[Peer]\nPublicKey = not-a-key\n", "SIGHUP")
	if !regexp.MustCompile(`reload failed.*` + regexp.QuoteMeta(path) + `:\d+: PublicKey`).MatchString(pr.log.String()) {
		t.Errorf("the broken file is not reported with file, line and key:\n%s", pr.log)
	}

	if err := <-pingDone; err != nil {
		t.Errorf("ping during the reloads: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), " 0% packet loss") {
		t.Errorf("pings lost during the reloads:\n%s", out.String())
	}
	p.ping(t, 0, demoOverlay[1].v4.Addr(), 1)
	if got := lastHandshake(t, p, 0); !got.Equal(hs) {
		t.Errorf("B's session was renewed by the reloads (handshake %v, then %v)", hs, got)
	}
	if !strings.Contains(pr.log.String(), "peers_added=1") || !strings.Contains(pr.log.String(), "peers_removed=1") {
		t.Errorf("the reloads are not logged with what changed:\n%s", pr.log)
	}
}

// nsRun runs a command in side i's namespace and returns its output.
func nsRun(p *testPair, i int, name string, args ...string) (string, error) {
	out, err := p.ns(i).Command(context.Background(), name, args...).CombinedOutput()
	return string(out), err
}
