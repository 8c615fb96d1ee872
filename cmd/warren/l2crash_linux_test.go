package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestL2CrashRecovery: warren up in Mode = tap is killed with SIGKILL
// after making its bridge (and, in the other case, after putting its
// address on an existing one); warren down then restores the host as it
// was, as the journal records it.
func TestL2CrashRecovery(t *testing.T) {
	for _, existing := range []bool{false, true} {
		name := map[bool]string{false: "created bridge", true: "existing bridge"}[existing]
		t.Run(name, func(t *testing.T) {
			l := newL2Lab(t)
			ns := l.ns(0)
			if existing {
				ip(t, "-n", ns.Name(), "link", "add", l2Bridge, "type", "bridge")
			}
			before := linkNames(t, ns) + linkAddrsOr(t, ns, l2Bridge)
			pr := l.startUp(t, 0, l.tapConfig(0, "Address = 198.19.5.200/24"), nil)
			pr.waitLog(t, " msg=up ")
			pr.cmd.Process.Kill()
			<-pr.done
			pr.done <- nil
			if !strings.Contains(linkNames(t, ns), l2Bridge+"\n") {
				t.Fatalf("the crash left no bridge; the test proves nothing")
			}
			if left := linkAddrs(t, ns, l2Bridge); !strings.Contains(left, "198.19.5.200") {
				t.Fatalf("the crash left no address on the bridge; the test proves nothing: %q", left)
			}
			out, err := ns.Command(context.Background(), l.exe, "down", l.names[0]).CombinedOutput()
			if err != nil {
				t.Fatalf("warren down after the crash: %v\n%s", err, out)
			}
			if after := linkNames(t, ns) + linkAddrsOr(t, ns, l2Bridge); after != before {
				t.Errorf("host after crash and warren down:\n%s\nwant\n%s", after, before)
			}
		})
	}
}

// linkNames returns the names of ns's links, one per line.
func linkNames(t *testing.T, ns interface {
	Name() string
}) string {
	t.Helper()
	out, err := netlabCommand("-n", ns.Name(), "-br", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v\n%s", err, out)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, strings.SplitN(f[0], "@", 2)[0])
		}
	}
	return strings.Join(names, "\n") + "\n"
}

// linkAddrsOr returns the addresses of link in ns, or "" if there is no
// such link.
func linkAddrsOr(t *testing.T, ns interface{ Name() string }, link string) string {
	t.Helper()
	out, err := netlabCommand("-n", ns.Name(), "-br", "addr", "show", "dev", link).CombinedOutput()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return link + "\n"
	}
	return strings.Join(append([]string{f[0]}, f[2:]...), " ") + "\n"
}

// TestL2BridgeNotABridge: Bridge = naming a link that is not a bridge
// stops warren up with one line that says so, and leaves the links as
// they were.
func TestL2BridgeNotABridge(t *testing.T) {
	l := newL2Lab(t)
	ns := l.ns(0)
	before := linkNames(t, ns)
	conf := strings.Replace(l.tapConfig(0, ""), "Bridge = "+l2Bridge, "Bridge = "+l.lab.LinkA, 1)
	path := filepath.Join(l.dir, l.names[0]+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := ns.Command(context.Background(), l.exe, "up", path).CombinedOutput()
	if code := exitCode(err); code != 1 {
		t.Errorf("warren up exit status %d, want 1\n%s", code, out)
	}
	if want := "Bridge = " + l.lab.LinkA + ": " + l.lab.LinkA + " is a veth link, not a bridge"; !strings.Contains(string(out), want) {
		t.Errorf("warren up says:\n%s\nwant a line with %q", out, want)
	}
	if after := linkNames(t, ns); after != before {
		t.Errorf("links after the failed up:\n%s\nwant\n%s", after, before)
	}
}
