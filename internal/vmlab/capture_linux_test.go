package vmlab_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// capture is dumpcap recording UDP on the lab's TAP.
type capture struct {
	path string
	cmd  *exec.Cmd
	done chan error
}

// wgMessage is one WireGuard message seen on the wire.
type wgMessage struct {
	src     netip.Addr
	srcPort int
	dstPort int
	typ     int // 1 initiation, 2 response, 3 cookie reply, 4 transport data
}

// startCapture starts dumpcap on the TAP with a BPF filter and waits until
// it captures. It is stopped by stop, or when t ends.
func (l *lab) startCapture(t testing.TB, filter string) *capture {
	t.Helper()
	dumpcap, err := exec.LookPath("dumpcap")
	if err != nil {
		requireFailOrSkip(t, "dumpcap (Debian package tshark) not installed")
	}
	c := &capture{path: filepath.Join(t.TempDir(), "wg.pcapng"), done: make(chan error, 1)}
	c.cmd = l.ns.Command(context.Background(), dumpcap, "-i", labTAP, "-f", filter, "-w", c.path)
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var log strings.Builder
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			log.WriteString(s.Text() + "\n")
			if strings.HasPrefix(s.Text(), "File:") {
				close(started)
			}
		}
		io.Copy(io.Discard, stderr)
		c.done <- c.cmd.Wait()
	}()
	select {
	case <-started:
	case err := <-c.done:
		t.Fatalf("dumpcap exited: %v", err)
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		t.Fatalf("dumpcap not capturing after 10 s")
	}
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop ends the capture; it is idempotent.
func (c *capture) stop(t testing.TB) {
	if c.cmd.ProcessState != nil || c.done == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
		t.Errorf("dumpcap did not stop within 5 s of SIGINT")
	}
	c.done = nil
}

// messages stops the capture and decodes the WireGuard messages to and from
// ports.
func (c *capture) messages(t testing.TB, ports ...int) []wgMessage {
	t.Helper()
	c.stop(t)
	args := []string{"-r", c.path, "-T", "fields", "-E", "separator=,", "-e", "ip.src", "-e", "ipv6.src", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "wg.type"}
	for _, p := range ports {
		args = append(args, "-d", fmt.Sprintf("udp.port==%d,wg", p))
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark %v: %v", args, err)
	}
	var msgs []wgMessage
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		if len(f) != 5 || f[4] == "" {
			continue
		}
		var m wgMessage
		src := f[0]
		if src == "" {
			src = f[1]
		}
		m.src, _ = netip.ParseAddr(src)
		m.srcPort, _ = strconv.Atoi(f[2])
		m.dstPort, _ = strconv.Atoi(f[3])
		m.typ, _ = strconv.Atoi(f[4])
		msgs = append(msgs, m)
	}
	return msgs
}

// requireFailOrSkip skips t, or fails it under CI=true.
func requireFailOrSkip(t testing.TB, why string) {
	t.Helper()
	if isCI() {
		t.Fatalf("%s (CI=true: a missing tool is a failure)", why)
	}
	t.Skip(why)
}
