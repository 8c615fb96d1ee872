package lifecycle_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/lifecycle"
)

const testName = "wt0"

// testConfig is a wg-quick config that uses every step: a host name
// endpoint, a default route (rules and a sysctl), DNS and all four hooks.
func testConfig(t testing.TB) *config.Config {
	t.Helper()
	k1, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`[Interface]
PrivateKey = %s
ListenPort = 51820
Address = 198.19.0.1/24, fd00:7761:1::1/64
DNS = 198.19.0.53, example.test
PreUp = pre %%i
PostUp = postup %%i
PreDown = predown %%i
PostDown = postdown %%i

[Peer]
PublicKey = %s
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = peer.test:51820
`, k1, k2.PublicKey())
	cfg, err := config.Parse(testName+".conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// mode is a way to bring an interface up.
type mode struct {
	name string
	up   func(ctx context.Context, cfg *config.Config, opts lifecycle.Options) (*lifecycle.Tunnel, error)
}

var modes = []mode{
	{"Up", lifecycle.Up},
	{"UpDevice", func(ctx context.Context, cfg *config.Config, opts lifecycle.Options) (*lifecycle.Tunnel, error) {
		return lifecycle.UpDevice(ctx, cfg.Name, opts)
	}},
}

// checkClean fails t unless the fake host is as pristine and the run
// directory empty.
func checkClean(t *testing.T, f *fakes, runDir, pristine string) {
	t.Helper()
	if got := f.nl.Dump(); got != pristine {
		t.Errorf("host not restored (-got +want):\n%s", cmp.Diff(got, pristine))
	}
	if got := f.fw.dump(); got != "" {
		t.Errorf("nftables tables left:\n%s", got)
	}
	if ents, _ := os.ReadDir(runDir); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("run directory not empty: %v", names)
	}
}

// collapse replaces each run of host state calls with one "host" event: how
// many calls Apply makes to roll back a failure is package host's business
// (tested there); when they happen is the lifecycle's.
func collapse(events []string) []string {
	var out []string
	for _, e := range events {
		if strings.HasPrefix(e, "host ") {
			e = "host"
		}
		if e == "host" && len(out) > 0 && out[len(out)-1] == "host" {
			continue
		}
		out = append(out, e)
	}
	return out
}

// undoAfter returns the index j of the event of upLog after which the undo
// event u is on the undo stack: a failure of a later event runs u. A step's
// undo is pushed once its call succeeded; the host state's undo and PreDown
// are pushed before the call they guard (Apply, which may fail halfway, and
// PostUp). PostDown runs only after a successful Up.
func undoAfter(t *testing.T, u string, upLog []string) int {
	t.Helper()
	index := func(prefix string) int {
		i := slices.IndexFunc(upLog, func(e string) bool { return strings.HasPrefix(e, prefix) })
		if i < 0 {
			t.Fatalf("undo event %q: no %q in %q", u, prefix, upLog)
		}
		return i
	}
	for _, p := range []struct{ undo, do string }{
		{"adapter close", "adapter open"},
		{"transport close", "transport listen"},
		{"netlink close", "netlink open"},
		{"control close", "control listen"},
		{"dns unset", "dns set"},
		{"firewall remove", "firewall apply"},
	} {
		if strings.HasPrefix(u, p.undo) {
			return index(p.do)
		}
	}
	switch {
	case strings.HasPrefix(u, "host "):
		return index("host ") - 1
	case strings.HasPrefix(u, "hook PreDown"):
		return index("hook PostUp") - 1
	case strings.HasPrefix(u, "hook PostDown"):
		return len(upLog)
	}
	t.Fatalf("undo event %q: which step does it undo?", u)
	return 0
}

// TestFailAtEveryStep brings an interface up once with every call
// succeeding, then again with each call in turn failing (each opener, hook,
// endpoint lookup, host state call), and checks that exactly the steps
// before the failure were undone, in reverse order, and that the host and
// the run directory are as found.
func TestFailAtEveryStep(t *testing.T) {
	leakcheck.Check(t)
	cfg := testConfig(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			f := newFakes(-1)
			dir := t.TempDir()
			pristine := f.nl.Dump()
			tun, err := m.up(t.Context(), cfg, f.options(dir))
			if err != nil {
				t.Fatalf("%s without failures: %v", m.name, err)
			}
			upLog := f.rec.log()
			calls := f.rec.calls
			if err := tun.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			closeLog := f.rec.log()[len(upLog):]
			checkClean(t, f, dir, pristine)
			t.Logf("up: %q\nclose: %q", upLog, closeLog)
			if calls != len(upLog) {
				t.Fatalf("%d failable calls, %d events while up: every event of Up must be failable", calls, len(upLog))
			}

			for i := range calls {
				t.Run(fmt.Sprintf("%02d %s", i, upLog[i]), func(t *testing.T) {
					f := newFakes(i)
					dir := t.TempDir()
					tun, err := m.up(t.Context(), cfg, f.options(dir))
					var want []string
					if strings.HasPrefix(upLog[i], "resolve ") {
						// A name that does not resolve is retried in the
						// background: Up goes on (TestEndpointRetries).
						if err != nil {
							t.Fatalf("%s with the endpoint lookup failing = %v, want success", m.name, err)
						}
						if err := tun.Close(); err != nil {
							t.Fatalf("Close: %v", err)
						}
						want = append(slices.Clone(upLog), closeLog...)
					} else {
						if !errors.Is(err, errInjected) || tun != nil {
							t.Fatalf("%s with %q failing = %v, %v; want nil and the injected error", m.name, upLog[i], tun, err)
						}
						if strings.Contains(err.Error(), "cleanup") {
							t.Errorf("%s with %q failing: the undo failed too: %v", m.name, upLog[i], err)
						}
						want = slices.Clone(upLog[:i+1])
						for _, u := range closeLog {
							if undoAfter(t, u, upLog) < i {
								want = append(want, u)
							}
						}
					}
					got := collapse(f.rec.log())
					if strings.HasPrefix(upLog[i], "resolve ") && len(got) > 0 {
						// Retries in the background, if the test was slow.
						got = append(got[:1], slices.DeleteFunc(got[1:], func(e string) bool { return strings.HasPrefix(e, "resolve ") })...)
					}
					if diff := cmp.Diff(got, collapse(want)); diff != "" {
						t.Errorf("calls with %q failing (-got +want):\n%s", upLog[i], diff)
					}
					checkClean(t, f, dir, pristine)
				})
			}
		})
	}
}

// TestRunDir: a running instance is refused, an unreadable crash journal
// and an unwritable pid file fail Up; in each case exactly the earlier steps
// are undone.
func TestRunDir(t *testing.T) {
	leakcheck.Check(t)
	cfg := testConfig(t)
	step4 := []string{"resolve peer.test", "hook PreUp: pre wt0", "netlink open", "netlink close"}
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string) // make step 4 or 13 fail
		errText string
		want    func(upLog, closeLog []string) []string // given a clean run's calls
		left    []string                                // what stays in the run directory
	}{
		{
			name: "second instance",
			prepare: func(t *testing.T, dir string) {
				if runtime.GOOS != "linux" {
					t.Skip("no instance runs outside Linux")
				}
				// A process of ours, so that signal 0 may reach it.
				other := exec.Command("sleep", "60")
				if err := other.Start(); err != nil {
					t.Skipf("no process to stand for the running instance: %v", err)
				}
				t.Cleanup(func() { other.Process.Kill(); other.Wait() })
				writeFile(t, lifecycle.PIDFile(dir, testName), fmt.Sprintf("%d %d\n", other.Process.Pid, processStart(t, other.Process.Pid)))
			},
			errText: "already up",
			want:    func(_, _ []string) []string { return step4 },
			left:    []string{filepath.Base(lifecycle.PIDFile("", testName))},
		},
		{
			// Issue 14: the pid was reused by a process that is not
			// warren (another start time): not an instance.
			name: "pid reused",
			prepare: func(t *testing.T, dir string) {
				if runtime.GOOS != "linux" {
					t.Skip("no instance runs outside Linux")
				}
				other := exec.Command("sleep", "60")
				if err := other.Start(); err != nil {
					t.Skipf("no process to stand for the stranger: %v", err)
				}
				t.Cleanup(func() { other.Process.Kill(); other.Wait() })
				writeFile(t, lifecycle.PIDFile(dir, testName), fmt.Sprintf("%d %d\n", other.Process.Pid, processStart(t, other.Process.Pid)-1))
			},
			want: func(upLog, closeLog []string) []string { return append(slices.Clone(upLog), closeLog...) },
		},
		{
			name: "pid file without start time",
			prepare: func(t *testing.T, dir string) {
				writeFile(t, lifecycle.PIDFile(dir, testName), strconv.Itoa(os.Getppid())+"\n")
			},
			want: func(upLog, closeLog []string) []string { return append(slices.Clone(upLog), closeLog...) },
		},
		{
			name: "stale pid file",
			prepare: func(t *testing.T, dir string) {
				// Above any pid_max: no such process.
				writeFile(t, lifecycle.PIDFile(dir, testName), strconv.Itoa(1<<30)+"\n")
			},
			want: func(upLog, closeLog []string) []string { return append(slices.Clone(upLog), closeLog...) },
		},
		{
			name: "journal unreadable",
			prepare: func(t *testing.T, dir string) {
				mkdir(t, lifecycle.JournalFile(dir, testName))
			},
			errText: filepath.Base(lifecycle.JournalFile("", testName)),
			want:    func(_, _ []string) []string { return step4 },
			left:    []string{filepath.Base(lifecycle.JournalFile("", testName))},
		},
		{
			name: "malformed journal",
			prepare: func(t *testing.T, dir string) {
				writeFile(t, lifecycle.JournalFile(dir, testName), "{")
			},
			want: func(upLog, closeLog []string) []string { return append(slices.Clone(upLog), closeLog...) },
		},
		{
			// Written at step 5, right after the TUN opens.
			name: "pid file unwritable",
			prepare: func(t *testing.T, dir string) {
				mkdir(t, lifecycle.PIDFile(dir, testName))
				writeFile(t, filepath.Join(lifecycle.PIDFile(dir, testName), "x"), "")
			},
			errText: filepath.Base(lifecycle.PIDFile("", testName)),
			want: func(_, _ []string) []string {
				return []string{"resolve peer.test", "hook PreUp: pre wt0", "netlink open", "adapter open wt0 mtu 1420", "adapter close wt0", "netlink close"}
			},
			left: []string{filepath.Base(lifecycle.PIDFile("", testName))},
		},
	}
	// A clean run gives the calls of every step and of their undo.
	f := newFakes(-1)
	tun, err := lifecycle.Up(t.Context(), cfg, f.options(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	upLog := f.rec.log()
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	closeLog := f.rec.log()[len(upLog):]

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakes(-1)
			pristine := f.nl.Dump()
			dir := t.TempDir()
			tc.prepare(t, dir)
			tun, err := lifecycle.Up(t.Context(), cfg, f.options(dir))
			if tc.errText == "" {
				if err != nil {
					t.Fatalf("Up = %v, want success", err)
				}
				err = tun.Close()
			} else if err == nil || !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("Up = %v, want an error naming %q", err, tc.errText)
			}
			if err != nil && tc.errText == "" {
				t.Fatalf("Close: %v", err)
			}
			if diff := cmp.Diff(collapse(f.rec.log()), collapse(tc.want(upLog, closeLog))); diff != "" {
				t.Errorf("calls (-got +want):\n%s", diff)
			}
			for _, name := range tc.left {
				os.RemoveAll(filepath.Join(dir, name))
			}
			checkClean(t, f, dir, pristine)
		})
	}
}

// TestWait: each reason to stop ends Wait with the right value, and Close
// then leaves the host and the run directory clean.
func TestWait(t *testing.T) {
	leakcheck.Check(t)
	cfg := testConfig(t)
	tests := []struct {
		name   string
		stop   func(f *fakes, cancel context.CancelFunc)
		normal bool   // whether IsNormalStop
		is     error  // what Wait's error must match
		text   string // what it must say
	}{
		{"signal", func(f *fakes, cancel context.CancelFunc) { cancel() }, true, nil, ""},
		{"interface removed", func(f *fakes, _ context.CancelFunc) { f.adapter.Load().remove() }, true, lifecycle.ErrInterfaceRemoved, "interface removed"},
		{"control socket removed", func(f *fakes, _ context.CancelFunc) { f.ctl.Load().removeSocket() }, true, lifecycle.ErrSocketRemoved, "control socket removed"},
		{"control socket fails", func(f *fakes, _ context.CancelFunc) { f.ctl.Load().end(errInjected) }, false, errInjected, "control socket of wt0"},
		{"transport fails for good", func(f *fakes, _ context.CancelFunc) { f.tr.Load().breakDown() }, false, nil, "wt0 stopped: receive failed 11 times in a row: receive: network is down"},
	}
	for _, m := range modes {
		for _, tc := range tests {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel() // a transport fails for good after seconds of retries
				f := newFakes(-1)
				pristine := f.nl.Dump()
				dir := t.TempDir()
				tun, err := m.up(t.Context(), cfg, f.options(dir))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				tc.stop(f, cancel)
				err = tun.Wait(ctx)
				if lifecycle.IsNormalStop(err) != tc.normal {
					t.Errorf("Wait = %v: IsNormalStop = %v, want %v", err, !tc.normal, tc.normal)
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("Wait = %v, want an error matching %v", err, tc.is)
				}
				if tc.text != "" && (err == nil || !strings.Contains(err.Error(), tc.text)) {
					t.Errorf("Wait = %v, want an error saying %q", err, tc.text)
				}
				if tc.is == nil && tc.text == "" && err != nil {
					t.Errorf("Wait = %v, want nil", err)
				}
				if err := tun.Close(); err != nil {
					t.Errorf("Close = %v, want nil (a failure Wait returned is not returned again)", err)
				}
				if err := tun.Close(); err != nil {
					t.Errorf("second Close = %v, want nil", err)
				}
				checkClean(t, f, dir, pristine)
			})
		}
	}
}

// processStart returns field 22 of /proc/PID/stat, the process's start
// time, which the pid file records.
func processStart(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
}
