package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotify (L26): warren up under a NOTIFY_SOCKET the test listens on,
// as systemd's would be, says READY=1 once up, RELOADING=1 (with
// MONOTONIC_USEC) then READY=1 around a SIGHUP reload, and STOPPING=1 on
// SIGTERM, each with a STATUS= line, in that order and nothing else.
func TestSystemdNotify(t *testing.T) {
	p := newTestPair(t)
	sock := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	next := func() string {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	pr := p.startUp(t, 0, demoConfig(p.keys[0], p.keys[1].PublicKey(), 0, p.underlay(1)), nil, "NOTIFY_SOCKET="+sock)
	name := p.names[0]
	steps := []struct {
		do   func()
		want string
	}{
		{func() {}, "READY=1\nSTATUS=" + name + " up: 1 peers, UDP port \\d+\n"},
		{func() { pr.cmd.Process.Signal(syscall.SIGHUP) }, "RELOADING=1\nMONOTONIC_USEC=[1-9]\\d*\nSTATUS=reloading .*\n"},
		{func() {}, "READY=1\nSTATUS=" + name + " up: 1 peers, UDP port \\d+\n"},
		{func() { pr.cmd.Process.Signal(syscall.SIGTERM) }, "STOPPING=1\nSTATUS=stopping: asked to\n"},
	}
	for _, s := range steps {
		s.do()
		if got := next(); !regexp.MustCompile("^" + s.want + "$").MatchString(got) {
			t.Errorf("notification %q, want %q", got, s.want)
		}
	}
	if code := pr.exit(t); code != 0 {
		t.Errorf("exit status %d, want 0:\n%s", code, pr.log)
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _ := c.Read(make([]byte, 4096)); n > 0 {
		t.Errorf("a notification after STOPPING=1")
	}
}

// TestServiceUnit (L26): dist/warren@.service is a Type=notify unit whose reload
// sends SIGHUP, and systemd-analyze verify accepts it (with the binary's
// path replaced by one that exists here).
func TestServiceUnit(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "dist", "warren@.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"\nType=notify\n", "\nExecStart=/usr/local/bin/warren up %i\n", "\nExecReload=/bin/kill -HUP $MAINPID\n",
		"\nExecStopPost=-/usr/local/bin/warren down %i\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("warren@.service lacks %q", strings.TrimSpace(want))
		}
	}
	analyze := requireTool(t, "systemd-analyze")
	dir := t.TempDir()
	path := filepath.Join(dir, "warren@wg0.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/warren", "/bin/true")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", path)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice")
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
