package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/uapi"
)

// netnsOf returns the inode of ns, which names warren's run files there.
func netnsOf(t testing.TB, ns *netlab.Namespace) uint64 {
	t.Helper()
	ino, err := lifecycle.NetnsInode(filepath.Join("/run/netns", ns.Name()))
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

// nsPIDFile is the pid file of warren up or userspace of name run in ns.
func nsPIDFile(t testing.TB, ns *netlab.Namespace, name string) string {
	return lifecycle.PIDFileIn(lifecycle.DefaultRunDir, name, netnsOf(t, ns))
}

// nsJournalFile is the crash journal of warren up of name run in ns.
func nsJournalFile(t testing.TB, ns *netlab.Namespace, name string) string {
	return lifecycle.JournalFileIn(lifecycle.DefaultRunDir, name, netnsOf(t, ns))
}

// TestRunFilesPerNamespace (L22, issue 14): the pid file and crash journal are
// named per network namespace. warren down of an interface run in namespace
// A, given in namespace B or the host's, neither stops it nor, after a
// kill -9, restores A's journal there; in A it does both.
func TestRunFilesPerNamespace(t *testing.T) {
	p := newTestPair(t)
	name := p.names[0]
	before := stableDump(t, p.lab.A)
	pr := p.up(t, 0, defaultRouteConfig(p, 0)) // rules and a sysctl: a journal
	pidFile, journal := nsPIDFile(t, p.lab.A, name), nsJournalFile(t, p.lab.A, name)
	if pidFile == nsPIDFile(t, p.lab.B, name) || pidFile == lifecycle.PIDFile(lifecycle.DefaultRunDir, name) {
		t.Fatalf("pid file %s is not A's own", pidFile)
	}
	waitFor(t, "the pid file and journal", func() bool { return exists(pidFile) && exists(journal) })
	down := func(ns *netlab.Namespace) (string, error) {
		cmd := exec.Command(p.exe, "down", name)
		if ns != nil {
			cmd = ns.Command(t.Context(), p.exe, "down", name)
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, kill := range []bool{false, true} {
		if kill {
			syscall.Kill(pr.pid, syscall.SIGKILL)
			<-pr.done
			pr.done <- nil
		}
		for _, ns := range []*netlab.Namespace{p.lab.B, nil} {
			if out, err := down(ns); err == nil || !strings.Contains(out, "is not up") {
				t.Errorf("warren down outside A (killed %v): %v, want \"is not up\"\n%s", kill, err, out)
			}
		}
		if !exists(pidFile) || !exists(journal) {
			t.Fatalf("warren down outside A (killed %v) removed A's pid file or journal", kill)
		}
		if !kill {
			select {
			case err := <-pr.done:
				pr.done <- err
				t.Fatalf("warren down outside A stopped A's instance (%v)", err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if out, err := down(p.lab.A); err != nil {
		t.Fatalf("warren down in A: %v\n%s", err, out)
	}
	compareHost(t, "after warren down in A", before, stableDump(t, p.lab.A))
	checkGone(t, pidFile, journal, uapi.SocketPath(uapi.DefaultDir, name))
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func statErr(path string) error { _, err := os.Stat(path); return err }
