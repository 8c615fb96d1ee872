package main

// Every exit is clean (issue 11) and there is no crash window (issue 14),
// as root in the lab's namespaces: each stop signal leaves the host exactly
// as found; SIGHUP reloads and SIGPIPE or a closed stderr never kill
// warren; a SIGKILL at every point of start-up leaves a journal from which
// `warren down` restores the host; `warren down` never signals a process
// that is not warren.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/uapi"
)

// upProc is a `warren up` child whose log the test reads while it runs.
type upProc struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error // receives Wait's result once; put it back after reading
}

// startUp starts `warren up` for side i with conf, its stderr in the
// returned log (or in stderr if not nil), with env added to its
// environment. It does not wait for anything.
func (p *testPair) startUp(t *testing.T, i int, conf string, stderr io.Writer, env ...string) *upProc {
	t.Helper()
	path := p.dir + "/" + p.names[i] + ".conf"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := p.ns(i).Command(context.Background(), p.exe, "up", path)
	cmd.Env = append(os.Environ(), env...)
	pr := &upProc{cmd: cmd, log: new(syncBuffer), done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = pr.log, pr.log
	if stderr != nil {
		cmd.Stderr = stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pr.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-pr.done:
			pr.done <- err
			return
		default:
		}
		// Still running: stop it as a user would, so that it removes
		// what it added; kill it only if it does not go.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-pr.done:
			pr.done <- err
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-pr.done
		}
	})
	return pr
}

// waitLog waits until the log holds want, and fails t if the process exits
// first or 10 s pass.
func (pr *upProc) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(pr.log.String(), want) {
		select {
		case err := <-pr.done:
			pr.done <- err
			t.Fatalf("warren up exited (%v) before logging %q:\n%s", err, want, pr.log)
		case <-deadline:
			t.Fatalf("warren up did not log %q within 10 s:\n%s", want, pr.log)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// exit waits up to 5 s for the process to end and returns its exit status.
func (pr *upProc) exit(t *testing.T) int {
	t.Helper()
	select {
	case err := <-pr.done:
		pr.done <- err
		return exitCode(err)
	case <-time.After(5 * time.Second):
		t.Fatalf("warren up still running 5 s after it was asked to stop:\n%s", pr.log)
		return -1
	}
}

// compareHost fails t if after differs from before.
func compareHost(t *testing.T, what, before, after string) {
	t.Helper()
	if after != before {
		t.Errorf("host differs %s (-before +after):\n%s", what, cmp.Diff(strings.Split(before, "\n"), strings.Split(after, "\n")))
	}
}

// TestStopSignals (L6, L24): a full tunnel (fwmark rules, table 51820,
// src_valid_mark) stopped by SIGINT, SIGTERM or SIGQUIT, after a SIGHUP
// reload, or with its stderr a pipe nobody reads any more (SIGPIPE) exits
// 0 and leaves links, addresses, routes, rules and the sysctl as found.
func TestStopSignals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before []syscall.Signal // sent first, warren must survive them
		stop   syscall.Signal
		pipe   bool // stderr is a pipe the test closes once warren is up
	}{
		{name: "SIGINT", stop: syscall.SIGINT},
		{name: "SIGTERM", stop: syscall.SIGTERM},
		{name: "SIGQUIT", stop: syscall.SIGQUIT},
		{name: "SIGHUP then SIGTERM", before: []syscall.Signal{syscall.SIGHUP}, stop: syscall.SIGTERM},
		{name: "SIGPIPE and a closed stderr", before: []syscall.Signal{syscall.SIGPIPE, syscall.SIGHUP}, stop: syscall.SIGTERM, pipe: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPair(t)
			before := stableDump(t, p.lab.A)
			var pr *upProc
			if tc.pipe {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				pr = p.startUp(t, 0, defaultRouteConfig(p, 0), w)
				w.Close()
				// Read up to the "up" line, then stop reading: every
				// later log line meets a pipe without a reader.
				buf := make([]byte, 4096)
				var got strings.Builder
				for !strings.Contains(got.String(), " msg=up ") {
					n, err := r.Read(buf)
					if err != nil {
						t.Fatalf("warren up's stderr ended before the up line: %v\n%s", err, got.String())
					}
					got.Write(buf[:n])
				}
				r.Close()
			} else {
				pr = p.startUp(t, 0, defaultRouteConfig(p, 0), nil)
				pr.waitLog(t, " msg=up ")
			}
			if during := hostDump(t, p.lab.A); !strings.Contains(during, "lookup 51820") || !strings.Contains(during, "ip6 warren-") {
				t.Fatalf("while up, no fwmark rule or nftables table: the test proves nothing:\n%s", during)
			}
			for _, sig := range tc.before {
				pr.cmd.Process.Signal(sig)
				if sig == syscall.SIGHUP && !tc.pipe {
					pr.waitLog(t, "msg=reconfigured")
				}
			}
			// The process must still be there after the signals above.
			time.Sleep(100 * time.Millisecond)
			select {
			case err := <-pr.done:
				pr.done <- err
				t.Fatalf("warren up exited (%v) after %v:\n%s", err, tc.before, pr.log)
			default:
			}
			pr.cmd.Process.Signal(tc.stop)
			if code := pr.exit(t); code != 0 {
				t.Errorf("exit status %d after %v, want 0:\n%s", code, tc.stop, pr.log)
			}
			compareHost(t, "after "+tc.name, before, stableDump(t, p.lab.A))
			checkGone(t, nsPIDFile(t, p.lab.A, p.names[0]), nsJournalFile(t, p.lab.A, p.names[0]))
		})
	}
}

// TestCrashAtEveryStep (L6, L22: issue 14's crash window): warren up of a full
// tunnel is paused at each step of its start-up and after each store of
// its crash journal, and killed there with SIGKILL; `warren down` then
// restores the host exactly as found, and leaves no pid file, journal or
// control socket.
func TestCrashAtEveryStep(t *testing.T) {
	p := newTestPair(t)
	p.lab.A.Command(context.Background(), "sysctl", "-qw", "net.ipv4.conf.all.src_valid_mark=0").Run()
	before := stableDump(t, p.lab.A)
	name := p.names[0]
	var points []string
	for i := 1; i <= 12; i++ {
		points = append(points, fmt.Sprintf("step %d", i))
	}
	// Four rules and src_valid_mark, each journalled before it is made,
	// the journal of the whole state, and the nftables table.
	for i := 1; i <= 7; i++ {
		points = append(points, fmt.Sprintf("journal#%d", i))
	}
	for _, point := range points {
		pr := p.startUp(t, 0, defaultRouteConfig(p, 0), nil, "WARREN_PAUSE_AT="+point)
		pr.waitLog(t, "paused at "+point)
		pr.cmd.Process.Kill()
		<-pr.done
		pr.done <- nil
		out, err := p.lab.A.Command(context.Background(), p.exe, "down", name).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "is not up") {
			t.Errorf("killed at %s: warren down: %v\n%s", point, err, out)
		}
		compareHost(t, "after a kill at "+point+" and warren down", before, stableDump(t, p.lab.A))
		checkGone(t, nsPIDFile(t, p.lab.A, name), nsJournalFile(t, p.lab.A, name), uapi.SocketPath(uapi.DefaultDir, name))
		if t.Failed() {
			t.Logf("warren up's log:\n%s\nwarren down's output:\n%s", pr.log, out)
			return
		}
	}
}

// TestDownStranger (L22, issue 14): a pid file left by a killed warren whose
// pid now belongs to another process: `warren down` does not signal it.
func TestDownStranger(t *testing.T) {
	netlabtest.RequireRoot(t)
	stranger := exec.Command("sleep", "60")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- stranger.Wait() }()
	t.Cleanup(func() { stranger.Process.Kill() })
	name := fmt.Sprintf("wts%d", os.Getpid()%10000)
	if err := os.MkdirAll(lifecycle.DefaultRunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{
		fmt.Sprintf("%d\n", stranger.Process.Pid),   // the old format: no start time
		fmt.Sprintf("%d 1\n", stranger.Process.Pid), // another start time
	} {
		if err := os.WriteFile(pidPath(name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(pidPath(name)) })
		out, err := exec.Command(warrenBinary(t), "down", name).CombinedOutput()
		if err != nil {
			t.Errorf("warren down with pid file %q: %v\n%s", content, err, out)
		}
		select {
		case err := <-exited:
			t.Fatalf("warren down with pid file %q killed a stranger (%v)", content, err)
		case <-time.After(100 * time.Millisecond):
		}
		checkGone(t, pidPath(name))
	}
}
