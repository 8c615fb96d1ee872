package main

// How `warren up` and `warren userspace` stop on their own (root): the TUN
// deleted from outside (how `wg-quick down` stops a userspace
// implementation) is a normal stop, exit status 0; the engine failing for
// good is a failure, exit status 1. Either way one line says why and the
// host is left as found.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/transport"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
)

// defaultRouteConfig is side i's demo config with a wg-quick default route:
// fwmark rules, table 51820 and src_valid_mark, the host state a crash or a
// careless stop would leave behind.
func defaultRouteConfig(p *testPair, i int) string {
	return strings.Replace(demoConfig(p.keys[i], p.keys[1-i].PublicKey(), i, p.underlay(1-i)),
		"AllowedIPs = 198.19.0.2/32, fd00:7761:1::2/128", "AllowedIPs = 0.0.0.0/0, ::/0", 1)
}

// linesAfter returns the non-empty lines of log after the first line
// containing marker, leaving out those that list what the undo removed
// (msg="removed ..." and msg="restored sysctl"), which are not about why
// warren stopped.
func linesAfter(log, marker string) []string {
	_, after, ok := strings.Cut(log, marker)
	if !ok {
		return nil
	}
	_, after, _ = strings.Cut(after, "\n")
	var lines []string
	for _, l := range strings.Split(after, "\n") {
		if strings.TrimSpace(l) == "" || strings.Contains(l, `msg="removed `) || strings.Contains(l, `msg="restored sysctl"`) {
			continue
		}
		lines = append(lines, l)
	}
	return lines
}

// waitExit waits up to d for pr to exit and returns its exit status.
func waitExit(t *testing.T, pr *demoProc, d time.Duration) int {
	t.Helper()
	select {
	case err := <-pr.done:
		pr.done <- err
		return exitCode(err)
	case <-time.After(d):
		t.Fatalf("still running %v after its interface was deleted\n%s", d, pr.log)
		return -1
	}
}

// checkGone fails t for each path that still exists.
func checkGone(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after exit (stat: %v)", p, err)
		}
	}
}

// TestStopInterfaceDeleted: `ip link del` of the TUN ends `warren up` (with
// a default route: rules, table 51820, src_valid_mark) and `warren
// userspace` (configured with wg and ip), each with one line saying the
// interface was removed, exit status 0, and the host as found: routes,
// rules, sysctls, pid file, control socket and crash journal gone (L4). The
// engine notices the removal itself; there is no second watcher.
func TestStopInterfaceDeleted(t *testing.T) {
	t.Run("up", func(t *testing.T) {
		p := newTestPair(t)
		before := stableDump(t, p.lab.A)
		name := p.names[0]
		pr := p.up(t, 0, defaultRouteConfig(p, 0))
		sock := uapi.SocketPath(uapi.DefaultDir, name)
		waitFor(t, "the control socket", func() bool { _, err := os.Stat(sock); return err == nil })
		if _, err := os.Stat(nsJournalFile(t, p.lab.A, name)); err != nil {
			t.Errorf("no crash journal while up with fwmark rules: %v", err)
		}
		p.run(t, 0, "ip", "link", "del", name)
		if code := waitExit(t, pr, 2*time.Second); code != 0 {
			t.Errorf("exit status %d after the interface was deleted, want 0\n%s", code, pr.log)
		}
		if lines := linesAfter(pr.log.String(), " msg=up "); len(lines) != 1 || !strings.Contains(lines[0], "interface removed") {
			t.Errorf("after the interface was deleted warren up wrote %d lines, want 1 saying it was removed:\n%s", len(lines), strings.Join(lines, "\n"))
		}
		if after := stableDump(t, p.lab.A); after != before {
			t.Errorf("host differs after the interface was deleted (-before +after):\n%s", cmp.Diff(strings.Split(before, "\n"), strings.Split(after, "\n")))
		}
		checkGone(t, sock, nsPIDFile(t, p.lab.A, name), nsJournalFile(t, p.lab.A, name))
	})

	t.Run("userspace", func(t *testing.T) {
		wg := requireTool(t, "wg")
		p := newTestPair(t)
		before := stableDump(t, p.lab.A)
		name := p.names[0]
		cmd := p.lab.A.Command(context.Background(), p.exe, "userspace", "-f", name)
		pr := &demoProc{ns: p.lab.A, log: new(bytes.Buffer), done: make(chan error, 1)}
		cmd.Stdout, cmd.Stderr = pr.log, pr.log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pr.cmd, pr.pid = cmd, cmd.Process.Pid
		go func() { pr.done <- cmd.Wait() }()
		p.procs = append(p.procs, pr)
		sock := uapi.SocketPath(uapi.DefaultDir, name)
		waitFor(t, "the control socket", func() bool { _, err := os.Stat(sock); return err == nil })

		keyFile := filepath.Join(p.dir, "a.key")
		os.WriteFile(keyFile, []byte(p.keys[0].String()+"\n"), 0o600)
		p.run(t, 0, wg, "set", name, "private-key", keyFile, "listen-port", fmt.Sprint(demoPort),
			"peer", p.keys[1].PublicKey().String(), "allowed-ips", "198.19.0.2/32",
			"endpoint", netip.AddrPortFrom(p.underlay(1), demoPort).String())
		p.run(t, 0, "ip", "addr", "add", "198.19.0.1/24", "dev", name)
		p.run(t, 0, "ip", "link", "set", name, "up")
		p.run(t, 0, "ip", "route", "add", "198.19.7.0/24", "dev", name)

		p.run(t, 0, "ip", "link", "del", name)
		if code := waitExit(t, pr, 2*time.Second); code != 0 {
			t.Errorf("exit status %d after the interface was deleted, want 0\n%s", code, pr.log)
		}
		if lines := linesAfter(pr.log.String(), "userspace device ready"); len(lines) != 1 || !strings.Contains(lines[0], "interface removed") {
			t.Errorf("after the interface was deleted warren userspace wrote %d lines, want 1 saying it was removed:\n%s", len(lines), strings.Join(lines, "\n"))
		}
		if after := stableDump(t, p.lab.A); after != before {
			t.Errorf("host differs after the interface was deleted (-before +after):\n%s", cmp.Diff(strings.Split(before, "\n"), strings.Split(after, "\n")))
		}
		checkGone(t, sock)
	})
}

// failingTransport is a real UDP socket whose Receive fails for good once
// broken, as a socket whose network went away would.
type failingTransport struct {
	*transport.UDP
	broken atomic.Bool
}

func (f *failingTransport) breakDown() {
	f.broken.Store(true)
	f.UDP.Close() // wakes the blocked Receive
}

func (f *failingTransport) Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error) {
	n, err := f.UDP.Receive(bufs, sizes, eps, locals)
	if err != nil && f.broken.Load() {
		return 0, errors.New("receive: network is down (injected)")
	}
	return n, err
}

var errRebindInjected = errors.New("bind: address already in use (injected)")

// TestStopEngineFailure: the engine failing for good ends `warren up` and
// `warren userspace` with one line that says why, exit status 1 (a non-nil
// error, which main prints as one "warren: ..." line) and the host as found. Nothing outside
// the process makes a socket fail reliably, so this runs up in-process as
// root, in a namespace of its own with a real TUN, netlink and sysctls, and
// injects the failure through lifecycle.Options: a transport whose Receive
// fails for good, or a fwmark rebind that fails and whose restore fails
// too.
func TestStopEngineFailure(t *testing.T) {
	tests := []struct {
		name    string
		provoke func(t *testing.T, tr *failingTransport, ctlDir, name string)
		want    string // in the error
	}{
		{
			name:    "transport fails for good",
			provoke: func(t *testing.T, tr *failingTransport, _, _ string) { tr.breakDown() },
			want:    "receive: network is down (injected)",
		},
		{
			name: "rebind restore fails",
			provoke: func(t *testing.T, _ *failingTransport, ctlDir, name string) {
				conn, err := uapi.Dial(ctlDir, name)
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				mark := uint32(0x1234)
				if err := uapi.Set(conn, &uapi.Change{FwMark: &mark}); err == nil {
					t.Error("set fwmark succeeded with every bind failing")
				}
			},
			want: "injected",
		},
	}
	commands := []struct {
		name  string
		ready string // the log line that says it is up
		run   func(ctx context.Context, cfg *config.Config, log *slog.Logger, opts lifecycle.Options) error
	}{
		{"up", " msg=up ", up},
		{"userspace", "userspace device ready", func(ctx context.Context, cfg *config.Config, log *slog.Logger, opts lifecycle.Options) error {
			return serveUserspace(ctx, cfg.Name, log, opts)
		}},
	}
	for _, c := range commands {
		for _, tc := range tests {
			t.Run(c.name+"/"+tc.name, func(t *testing.T) {
				ns := netlabtest.NewNamespace(t)
				before := stableDump(t, ns)
				var tag [2]byte
				rand.Read(tag[:])
				name := fmt.Sprintf("wt%xf", tag)
				cfg := failureConfig(t, name)
				runDir, ctlDir := t.TempDir(), t.TempDir()
				var logs syncBuffer
				log := slog.New(slog.NewTextHandler(&logs, nil))

				var tr atomic.Pointer[failingTransport]
				var listens atomic.Int32 // Listen calls: the first opens the socket, later ones rebind
				opts := lifecycle.Options{
					Listen: func(port uint16, mark uint32) (tunnel.Transport, error) {
						if listens.Add(1) > 1 {
							return nil, errRebindInjected
						}
						u, err := transport.Listen(transport.Options{Port: port, FwMark: mark, Logger: log})
						if err != nil {
							return nil, err
						}
						f := &failingTransport{UDP: u}
						tr.Store(f)
						return f, nil
					},
					ListenControl: func(name string) (net.Listener, error) { return uapi.ListenDir(ctlDir, name) },
					RunDir:        runDir,
				}
				sock := uapi.SocketPath(ctlDir, name)
				provoked := make(chan struct{})
				go func() {
					defer close(provoked)
					deadline := time.Now().Add(10 * time.Second)
					for {
						if _, err := os.Stat(sock); err == nil && strings.Contains(logs.String(), c.ready) {
							break
						}
						if time.Now().After(deadline) {
							t.Error("not up within 10 s")
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
					if during := hostDump(t, ns); c.name == "up" && (!strings.Contains(during, "lookup 51820") || !strings.Contains(during, "# src_valid_mark\n1\n")) {
						t.Errorf("while up, the namespace lacks the fwmark rule or src_valid_mark:\n%s", during)
					}
					tc.provoke(t, tr.Load(), ctlDir, name)
				}()

				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				defer cancel()
				start := time.Now()
				// The TUN, the netlink handle and the sysctls belong to the
				// namespace of the thread that runs up.
				err := ns.Do(func() error { return c.run(ctx, cfg, log, opts) })
				<-provoked
				t.Logf("up returned %v after %v", err, time.Since(start).Round(time.Millisecond))
				if ctx.Err() != nil {
					t.Fatalf("up ran until the test's timeout\n%s", logs.String())
				}
				if err == nil {
					t.Fatalf("%s = nil after the engine failed, want an error (exit status 1)\n%s", c.name, logs.String())
				}
				if line := "warren: " + err.Error(); strings.Contains(line, "\n") || !strings.Contains(line, name) || !strings.Contains(line, tc.want) {
					t.Errorf("up's error prints as %q, want one line naming %s and %q", line, name, tc.want)
				}
				if strings.Contains(logs.String(), "level=ERROR") {
					t.Errorf("the failure was also logged; it must be reported once, by the returned error:\n%s", logs.String())
				}
				if strings.Contains(logs.String(), "cleanup") {
					t.Errorf("cleanup reported a failure:\n%s", logs.String())
				}
				if after := stableDump(t, ns); after != before {
					t.Errorf("host differs after the failure (-before +after):\n%s", cmp.Diff(strings.Split(before, "\n"), strings.Split(after, "\n")))
				}
				checkGone(t, sock, lifecycle.PIDFileIn(runDir, name, netnsOf(t, ns)), lifecycle.JournalFileIn(runDir, name, netnsOf(t, ns)))
				if t.Failed() || testing.Verbose() {
					t.Logf("log:\n%s", logs.String())
				}
			})
		}
	}
}

// failureConfig is a config for name with a default route (rules, table
// 51820, src_valid_mark) and a peer that never answers.
func failureConfig(t *testing.T, name string) *config.Config {
	t.Helper()
	k1, _ := wgcrypto.NewPrivateKey(rand.Reader)
	k2, _ := wgcrypto.NewPrivateKey(rand.Reader)
	cfg, err := config.Parse(name+".conf", strings.NewReader(fmt.Sprintf(`[Interface]
PrivateKey = %s
Address = 198.19.0.1/24, fd00:7761:1::1/64

[Peer]
PublicKey = %s
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = 198.18.0.2:51820
`, k1, k2.PublicKey())))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestStopDuringStartUp (L6): SIGTERM while start-up is still running (here
// a PostUp hook that sleeps, as a slow script would) stops warren up with
// exit 0, the hook killed and the host as found: a stop asked for is not a
// failure, whichever step it meets (TestCleanupAfterSIGTERM's SIGTERM once
// landed in its PostUp and warren exited 1).
func TestStopDuringStartUp(t *testing.T) {
	p := newTestPair(t)
	before := stableDump(t, p.lab.A)
	conf := strings.Replace(defaultRouteConfig(p, 0), "\n[Peer]", "PostUp = sleep 30\n\n[Peer]", 1)
	pr := p.startUp(t, 0, conf, nil)
	pr.waitLog(t, `msg=hook hook=PostUp`)
	start := time.Now()
	pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-pr.done:
		pr.done <- err
		if err != nil {
			t.Errorf("warren up exited with %v after SIGTERM during PostUp\n%s", err, pr.log)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("warren up did not exit within 3 s of SIGTERM during PostUp\n%s", pr.log)
	}
	t.Logf("exited %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(pr.log.String(), "stopped during start-up") {
		t.Errorf("no line says warren stopped during start-up:\n%s", pr.log)
	}
	compareHost(t, "after SIGTERM during PostUp", before, stableDump(t, p.lab.A))
}
