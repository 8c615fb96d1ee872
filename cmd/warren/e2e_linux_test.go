package main

// End-to-end tests of `warren up` as real processes in network namespaces
// (root). They build the warren binary once and reuse the demo's pieces.

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/firewall"
	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
)

// warrenBinary builds cmd/warren once per test run.
func warrenBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "warren-e2e-")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755) // the privilege test runs it as nobody
		builtPath = filepath.Join(dir, "warren")
		out, err := exec.Command("go", "build", "-o", builtPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtPath != "" {
		os.RemoveAll(filepath.Dir(builtPath))
	}
	os.Exit(code)
}

func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI=true: a missing tool is a failure)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// testPair is a lab with a tunnel endpoint in each namespace.
type testPair struct {
	*demo
	keys [2]wgcrypto.PrivateKey
}

func newTestPair(t *testing.T) *testPair {
	t.Helper()
	lab := netlabtest.NewLab(t, 0)
	exe := warrenBinary(t)
	p := &testPair{demo: &demo{out: io.Discard, exe: exe, lab: lab, dir: t.TempDir()}}
	var tag [2]byte
	rand.Read(tag[:])
	for i := range p.names {
		p.names[i] = fmt.Sprintf("wt%x%c", tag, 'a'+i)
		k, err := wgcrypto.NewPrivateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		p.keys[i] = k
	}
	t.Cleanup(func() {
		p.stopTunnels()
		if t.Failed() {
			t.Log(p.logs())
		}
	})
	return p
}

func (p *testPair) ns(i int) *netlab.Namespace {
	if i == 0 {
		return p.lab.A
	}
	return p.lab.B
}

func (p *testPair) underlay(i int) netip.Addr {
	if i == 0 {
		return p.lab.AddrA.Addr()
	}
	return p.lab.AddrB.Addr()
}

// up starts `warren up` for side i with conf (written to NAME.conf) and waits
// for its link.
func (p *testPair) up(t *testing.T, i int, conf string) *demoProc {
	t.Helper()
	path := filepath.Join(p.dir, p.names[i]+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	pr, err := p.start(context.Background(), p.ns(i), path)
	if err != nil {
		t.Fatal(err)
	}
	p.procs = append(p.procs, pr)
	if err := p.waitLink(context.Background(), p.ns(i), p.names[i], pr); err != nil {
		t.Fatal(err)
	}
	return pr
}

// stop sends SIGTERM and waits for a clean exit within a second (L6).
func stopProc(t *testing.T, pr *demoProc) {
	t.Helper()
	syscall.Kill(pr.pid, syscall.SIGTERM)
	select {
	case err := <-pr.done:
		pr.done <- err
		if err != nil {
			t.Errorf("warren up exited with %v after SIGTERM\n%s", err, pr.log)
		}
	case <-time.After(time.Second):
		t.Errorf("warren up did not exit within 1 s of SIGTERM\n%s", pr.log)
	}
}

func (p *testPair) ping(t *testing.T, from int, dst netip.Addr, n int) {
	t.Helper()
	rtts, err := demoPing(context.Background(), p.ns(from), dst, n)
	if err != nil {
		t.Fatalf("ping %s from side %d: %v", dst, from, err)
	}
	if len(rtts) != n {
		t.Errorf("ping %s from side %d: %d of %d answered", dst, from, len(rtts), n)
	}
}

// show returns `warren show NAME` run inside side i's namespace.
func (p *testPair) show(t *testing.T, i int, tool ...string) string {
	t.Helper()
	args := append(tool, p.names[i])
	if len(tool) == 0 {
		args = []string{p.exe, "show", p.names[i]}
	}
	out, err := p.ns(i).Command(context.Background(), args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestWarrenToWarren: pings over IPv4 and IPv6 and a 32 MiB TCP transfer
// whose SHA-256 matches (issue 3; N2).
func TestWarrenToWarren(t *testing.T) {
	p := newTestPair(t)
	for i := range 2 {
		p.up(t, i, demoConfig(p.keys[i], p.keys[1-i].PublicKey(), i, p.underlay(1-i)))
	}
	p.ping(t, 0, demoOverlay[1].v4.Addr(), 3)
	p.ping(t, 1, demoOverlay[0].v6.Addr(), 3)
	p.ping(t, 1, demoOverlay[0].v4.Addr(), 3)
	gbps, _, err := demoTransfer(context.Background(), p.lab.A, p.lab.B, demoOverlay[1].v4.Addr(), 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("32 MiB over TCP at %.2f Gbit/s", gbps)
	gbps, _, err = demoTransfer(context.Background(), p.lab.B, p.lab.A, demoOverlay[0].v6.Addr(), 32<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("32 MiB over TCP/IPv6 the other way at %.2f Gbit/s", gbps)
	if out := p.show(t, 0); !strings.Contains(out, "latest handshake") {
		t.Errorf("warren show has no handshake:\n%s", out)
	}
}

// TestDemo runs `warren demo` as a user would.
func TestDemo(t *testing.T) {
	netlabtest.RequireRoot(t)
	out, err := exec.Command(warrenBinary(t), "demo", "--mb", "16", "--pings", "2").CombinedOutput()
	if err != nil {
		t.Fatalf("warren demo: %v\n%s", err, out)
	}
	for _, want := range []string{"ping IPv4", "ping IPv6", "SHA-256 matches", "removed the namespaces"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("warren demo output lacks %q:\n%s", want, out)
		}
	}
}

// stableDump waits until hostDump stops changing (a fresh veth gains its
// carrier shortly after creation) and returns it.
func stableDump(t *testing.T, ns *netlab.Namespace) string {
	t.Helper()
	prev := hostDump(t, ns)
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		cur := hostDump(t, ns)
		if cur == prev {
			return cur
		}
		prev = cur
	}
	t.Fatalf("host state of %s does not settle", ns.Name())
	return ""
}

// hostDump renders the namespace's links, addresses (one per line), routes,
// rules, src_valid_mark and nftables tables. It leaves out IPv6 link-local addresses and their routes: the
// kernel adds them to the lab's veths when their carrier comes up and DAD
// ends, which may be after a "before" dump, and warren never touches them.
func hostDump(t *testing.T, ns *netlab.Namespace) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-d", "link", "show"}, {"-o", "addr", "show"}, {"route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"}, {"rule", "show"}, {"-6", "rule", "show"},
	} {
		out, err := ns.Command(context.Background(), "ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		// DAD on an address may finish meanwhile.
		stable := strings.ReplaceAll(string(out), " tentative", "")
		stable = dropLines(stable, "fe80::")
		fmt.Fprintf(&b, "# ip %s\n%s", strings.Join(args, " "), stable)
	}
	sv, _ := ns.Command(context.Background(), "sysctl", "-n", "net.ipv4.conf.all.src_valid_mark").CombinedOutput()
	fmt.Fprintf(&b, "# src_valid_mark\n%s", sv)
	tables, err := nftables(t, ns).Tables()
	if err != nil {
		t.Fatalf("list nftables tables: %v", err)
	}
	fmt.Fprintf(&b, "# nft tables\n%s\n", strings.Join(tables, "\n"))
	return b.String()
}

// nftables returns warren's nftables maker working in ns.
func nftables(t testing.TB, ns *netlab.Namespace) *firewall.NFT {
	t.Helper()
	f, err := os.Open("/var/run/netns/" + ns.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return firewall.New(int(f.Fd()))
}

// dropLines removes the lines of s that contain sub.
func dropLines(s, sub string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.Contains(l, sub) {
			b.WriteString(l)
		}
	}
	return b.String()
}

// TestCleanupAfterSIGTERM: a wg-quick default-route setup (fwmark rules,
// table 51820, src_valid_mark), then SIGTERM → exit 0 within 1 s and dumps
// identical before and after (L6, N9's setup).
func TestCleanupAfterSIGTERM(t *testing.T) {
	requireTool(t, "ip")
	p := newTestPair(t)
	before := stableDump(t, p.lab.A)
	conf := fmt.Sprintf(`[Interface]
PrivateKey = %s
ListenPort = %d
Address = 198.19.0.1/24, fd00:7761:1::1/64
PostUp = true %%i

[Peer]
PublicKey = %s
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = %s
`, p.keys[0], demoPort, p.keys[1].PublicKey(), netip.AddrPortFrom(p.underlay(1), demoPort))
	pr := p.up(t, 0, conf)
	during := hostDump(t, p.lab.A)
	for _, want := range []string{"not from all fwmark 0xca6c lookup 51820", "suppress_prefixlength 0", "table 51820"} {
		if !strings.Contains(during, want) {
			t.Errorf("while up, host lacks %q:\n%s", want, during)
		}
	}
	stopProc(t, pr)
	after := hostDump(t, p.lab.A)
	if after != before {
		t.Errorf("host differs after SIGTERM (-before +after):\n%s", cmp.Diff(strings.Split(before, "\n"), strings.Split(after, "\n")))
	}
}

// TestWarrenToWireGuardGo: warren against the Debian wireguard-go configured
// with wg, with a preshared key; each side initiates once; traffic both ways
// (issue 3, P4).
func TestWarrenToWireGuardGo(t *testing.T) {
	wggo := requireTool(t, "wireguard-go")
	wg := requireTool(t, "wg")
	for _, initiator := range []string{"warren", "wireguard-go"} {
		t.Run(initiator+" initiates", func(t *testing.T) {
			p := newTestPair(t)
			psk, err := wgcrypto.NewPresharedKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			conf := demoConfig(p.keys[0], p.keys[1].PublicKey(), 0, p.underlay(1)) +
				fmt.Sprintf("PresharedKey = %s\n", psk)
			p.up(t, 0, conf)

			// Side B: wireguard-go in the foreground, configured with wg and ip.
			ns := p.lab.B
			name := p.names[1]
			startWireGuardGo(t, ns, wggo, name)
			keyFile := filepath.Join(p.dir, "b.key")
			pskFile := filepath.Join(p.dir, "psk")
			os.WriteFile(keyFile, []byte(p.keys[1].String()+"\n"), 0o600)
			os.WriteFile(pskFile, []byte(psk.String()+"\n"), 0o600)
			run := func(args ...string) {
				t.Helper()
				if out, err := ns.Command(context.Background(), args[0], args[1:]...).CombinedOutput(); err != nil {
					t.Fatalf("%v: %v\n%s", args, err, out)
				}
			}
			run(wg, "set", name, "private-key", keyFile, "listen-port", fmt.Sprint(demoPort),
				"peer", p.keys[0].PublicKey().String(), "preshared-key", pskFile,
				"allowed-ips", "198.19.0.1/32,fd00:7761:1::1/128",
				"endpoint", netip.AddrPortFrom(p.underlay(0), demoPort).String())
			run("ip", "addr", "add", "198.19.0.2/24", "dev", name)
			run("ip", "addr", "add", "fd00:7761:1::2/64", "dev", name, "nodad")
			run("ip", "link", "set", name, "up")
			// The IPv6 address was added before the link came up: its
			// local route comes a little later, and a ping before it is
			// lost (seen under load with -count=3).
			if err := ns.WaitLocal(netip.MustParseAddr("fd00:7761:1::2")); err != nil {
				t.Fatal(err)
			}

			first, second := 0, 1
			if initiator == "wireguard-go" {
				first, second = 1, 0
			}
			p.ping(t, first, peerOverlay(first).v4.Addr(), 3)
			p.ping(t, second, peerOverlay(second).v6.Addr(), 3)
			if _, _, err := demoTransfer(context.Background(), p.lab.A, p.lab.B, demoOverlay[1].v4.Addr(), 8<<20); err != nil {
				t.Fatalf("TCP warren → wireguard-go: %v", err)
			}
			if _, _, err := demoTransfer(context.Background(), p.lab.B, p.lab.A, demoOverlay[0].v4.Addr(), 8<<20); err != nil {
				t.Fatalf("TCP wireguard-go → warren: %v", err)
			}
			out := p.show(t, 1, wg, "show")
			if !strings.Contains(out, "latest handshake") || !strings.Contains(out, "preshared key") {
				t.Errorf("wg show on the wireguard-go side:\n%s", out)
			}
		})
	}
}

// peerOverlay is the overlay of the side that side i talks to.
func peerOverlay(i int) struct{ v4, v6 netip.Prefix } { return demoOverlay[1-i] }

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRoaming: side B's underlay address changes while it keeps sending; the
// tunnel keeps working and A shows B's new endpoint (issue 3 roaming, RO1 in
// namespaces).
func TestRoaming(t *testing.T) {
	p := newTestPair(t)
	for i := range 2 {
		p.up(t, i, demoConfig(p.keys[i], p.keys[1-i].PublicKey(), i, p.underlay(1-i)))
	}
	p.ping(t, 1, demoOverlay[0].v4.Addr(), 2)
	moved := netip.MustParsePrefix("198.18.0.3/24")
	run := func(args ...string) {
		t.Helper()
		if out, err := p.lab.B.Command(context.Background(), "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	// Deleting the primary address would take a secondary one with it: move.
	run("addr", "del", p.lab.AddrB.String(), "dev", p.lab.LinkB)
	run("addr", "add", moved.String(), "dev", p.lab.LinkB)
	p.ping(t, 1, demoOverlay[0].v4.Addr(), 3)
	p.ping(t, 0, demoOverlay[1].v4.Addr(), 3)
	want := netip.AddrPortFrom(moved.Addr(), demoPort).String()
	if out := p.show(t, 0); !strings.Contains(out, "endpoint: "+want) {
		t.Errorf("after roaming, A does not show endpoint %s:\n%s", want, out)
	}
}

// TestUpErrors: clear one-line errors and exit status 1 for a bad config and
// a port already in use, with nothing left behind.
func TestUpErrors(t *testing.T) {
	p := newTestPair(t)
	bad := filepath.Join(p.dir, "bad0.conf")
	os.WriteFile(bad, []byte("[Interface]\nPrivateKey = "+p.keys[0].String()+"\nMTU = lots\n"), 0o600)
	out, err := p.lab.A.Command(context.Background(), p.exe, "up", bad).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "bad0.conf:3: MTU:") {
		t.Errorf("bad config: exit %d, output %q; want 1 and bad0.conf:3: MTU", code, out)
	}

	var held net.PacketConn
	if err := p.lab.A.Do(func() (err error) {
		held, err = net.ListenPacket("udp", fmt.Sprintf(":%d", demoPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	before := stableDump(t, p.lab.A)
	path := filepath.Join(p.dir, p.names[0]+".conf")
	os.WriteFile(path, []byte(demoConfig(p.keys[0], p.keys[1].PublicKey(), 0, p.underlay(1))), 0o600)
	out, err = p.lab.A.Command(context.Background(), p.exe, "up", path).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "address already in use") {
		t.Errorf("port in use: exit %d, output %q; want 1 and address already in use", code, out)
	}
	if after := hostDump(t, p.lab.A); after != before {
		t.Errorf("a failed up left changes (-before +after):\n%s", cmp.Diff(strings.Split(before, "\n"), strings.Split(after, "\n")))
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestWGQuick: wg-quick brings warren up as its userspace implementation,
// wg configures it, traffic flows to a `warren up` peer, and wg-quick down
// ends the process and leaves the host as found (C11).
func TestWGQuick(t *testing.T) {
	wgQuick := requireTool(t, "wg-quick")
	requireTool(t, "wg")
	p := newTestPair(t)
	p.up(t, 1, demoConfig(p.keys[1], p.keys[0].PublicKey(), 1, p.underlay(0)))
	before := stableDump(t, p.lab.A)
	path := filepath.Join(p.dir, p.names[0]+".conf")
	os.WriteFile(path, []byte(demoConfig(p.keys[0], p.keys[1].PublicKey(), 0, p.underlay(1))), 0o600)
	wgq := func(verb string) {
		t.Helper()
		cmd := p.lab.A.Command(context.Background(), wgQuick, verb, path)
		cmd.Env = append(os.Environ(), "WG_QUICK_USERSPACE_IMPLEMENTATION="+p.exe)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("wg-quick %s: %v\n%s", verb, err, out)
		}
	}
	wgq("up")
	p.ping(t, 0, demoOverlay[1].v4.Addr(), 2)
	p.ping(t, 0, demoOverlay[1].v6.Addr(), 2)
	if out := p.show(t, 0, "wg", "show"); !strings.Contains(out, "latest handshake") {
		t.Errorf("wg show after wg-quick up:\n%s", out)
	}
	wgq("down")
	sock := filepath.Join("/var/run/wireguard", p.names[0]+".sock")
	waitFor(t, "the userspace process to remove its socket", func() bool { _, err := os.Stat(sock); return err != nil })
	if after := stableDump(t, p.lab.A); after != before {
		t.Errorf("host differs after wg-quick down (-before +after):\n%s", cmp.Diff(strings.Split(before, "\n"), strings.Split(after, "\n")))
	}
}

// TestUpWithoutPrivileges: as an unprivileged user, one clear line and exit
// status 1.
func TestUpWithoutPrivileges(t *testing.T) {
	netlabtest.RequireRoot(t)
	setpriv := requireTool(t, "setpriv")
	dir, err := os.MkdirTemp("", "warren-np-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	k, _ := wgcrypto.NewPrivateKey(rand.Reader)
	path := filepath.Join(dir, "np0.conf")
	// The user's own file, private as it should be (no "world accessible"
	// warning).
	os.WriteFile(path, []byte("[Interface]\nPrivateKey = "+k.String()+"\nAddress = 198.19.0.1/24\n"), 0o600)
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		warrenBinary(t), "up", path).CombinedOutput()
	want := "warren: creating TUN np0: permission denied: run as root or with CAP_NET_ADMIN\n"
	if code := exitCode(err); code != 1 || string(out) != want {
		t.Errorf("unprivileged warren up: exit %d, output %q; want 1 and %q", code, out, want)
	}
}

// TestL5SocketDeleted: deleting the control socket file shuts warren down
// cleanly, as it does wireguard-go (L5).
func TestL5SocketDeleted(t *testing.T) {
	p := newTestPair(t)
	before := stableDump(t, p.lab.A)
	pr := p.up(t, 0, demoConfig(p.keys[0], p.keys[1].PublicKey(), 0, p.underlay(1)))
	sock := filepath.Join("/var/run/wireguard", p.names[0]+".sock")
	waitFor(t, "the control socket", func() bool { _, err := os.Stat(sock); return err == nil })
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-pr.done:
		pr.done <- err
		if err != nil {
			t.Errorf("warren up exited with %v after its socket was deleted, want 0\n%s", err, pr.log)
		}
	case <-time.After(time.Second):
		t.Fatalf("warren up still running 1 s after its control socket was deleted\n%s", pr.log)
	}
	if !strings.Contains(pr.log.String(), "control socket removed") {
		t.Errorf("log does not say why it stopped:\n%s", pr.log)
	}
	if after := stableDump(t, p.lab.A); after != before {
		t.Errorf("host differs after shutdown (-before +after):\n%s", cmp.Diff(strings.Split(before, "\n"), strings.Split(after, "\n")))
	}
}

// TestCrashRecovery: warren up with a default route is killed with SIGKILL
// once it is up (its TUN and routes vanish, its rules and src_valid_mark
// stay); the next warren up of that interface, here without a default
// route, restores them, and after its SIGTERM the host is as found (L6).
// The kill waits for the "up" line, so the rules exist when it comes.
func TestCrashRecovery(t *testing.T) {
	p := newTestPair(t)
	p.lab.A.Command(context.Background(), "sysctl", "-qw", "net.ipv4.conf.all.src_valid_mark=0").Run()
	before := stableDump(t, p.lab.A)
	first := p.startUp(t, 0, defaultRouteConfig(p, 0), nil)
	first.waitLog(t, " msg=up ")
	first.cmd.Process.Kill()
	<-first.done
	first.done <- nil
	if left := hostDump(t, p.lab.A); !strings.Contains(left, "lookup 51820") {
		t.Fatalf("the crash left no rule behind; the test proves nothing:\n%s", left)
	}
	p.up(t, 1, demoConfig(p.keys[1], p.keys[0].PublicKey(), 1, p.underlay(0)))
	pr := p.startUp(t, 0, demoConfig(p.keys[0], p.keys[1].PublicKey(), 0, p.underlay(1)), nil)
	pr.waitLog(t, " msg=up ")
	p.ping(t, 0, demoOverlay[1].v4.Addr(), 1)
	pr.cmd.Process.Signal(syscall.SIGTERM)
	if code := pr.exit(t); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0:\n%s", code, pr.log)
	}
	if !strings.Contains(pr.log.String(), "crashed warren") {
		t.Errorf("the restart does not say it restored anything:\n%s", pr.log)
	}
	if after := stableDump(t, p.lab.A); after != before {
		t.Errorf("host differs after crash and restart (-before +after):\n%s", cmp.Diff(strings.Split(before, "\n"), strings.Split(after, "\n")))
	}
}

// TestDemoInterrupted: Ctrl-C while the demo runs removes its namespaces,
// tunnels and control sockets all the same.
func TestDemoInterrupted(t *testing.T) {
	netlabtest.RequireRoot(t)
	// What another run (killed, or running now) left is not this demo's.
	leftovers := func() []string {
		var names []string
		entries, _ := os.ReadDir("/run/netns")
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "wdemo") {
				names = append(names, "namespace "+e.Name())
			}
		}
		socks, _ := filepath.Glob("/var/run/wireguard/wd*.sock")
		return append(names, socks...)
	}
	before := leftovers()
	cmd := exec.Command(warrenBinary(t), "demo", "--mb", "100000")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// A test that fails before its Ctrl-C still stops the demo it started
	// (a 100 GB transfer would otherwise outlive it).
	t.Cleanup(func() {
		select {
		case err := <-done:
			done <- err
		default:
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
	})
	waitFor(t, "the demo's TCP transfer", func() bool { return strings.Contains(out.String(), "ping IPv6") })
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		done <- err
	case <-time.After(10 * time.Second):
		t.Fatalf("demo still running 10 s after Ctrl-C:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "removed the namespaces") {
		t.Errorf("demo did not clean up after Ctrl-C:\n%s", out.String())
	}
	for _, l := range leftovers() {
		if !slices.Contains(before, l) {
			t.Errorf("%s left behind", l)
		}
	}
}

// syncBuffer is a bytes.Buffer a child process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startWireGuardGo runs wireguard-go (the binary at wggo) in the foreground
// in ns for interface name, stops it when the test ends (printing its log
// if the test failed) and waits for its control socket.
func startWireGuardGo(t *testing.T, ns *netlab.Namespace, wggo, name string) {
	t.Helper()
	cmd := ns.Command(context.Background(), wggo, "-f", name)
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("wireguard-go:\n%s", log.String())
		}
	})
	sock := filepath.Join("/var/run/wireguard", name+".sock")
	waitFor(t, "wireguard-go socket", func() bool { _, err := os.Stat(sock); return err == nil })
}
