package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestT1ReloadAllowedMACsRoot: `warren reload` of a TAP-mode site applies
// new AllowedMACs at once: a host at site B that reached site A before is
// kept out after site A lists only the other host's MAC for B (counted
// spoofed_mac, its MAC unbound), the listed host still reaches A, and
// dropping the list lets it in again. A reload that would change Bridge is
// refused with a line saying so, and changes nothing.
func TestT1ReloadAllowedMACsRoot(t *testing.T) {
	ping := requireTool(t, "ping")
	l := newL2Lab(t)
	confA := l.tapConfig(0, "")
	pr := l.startUp(t, 0, confA, nil)
	pr.waitLog(t, " msg=up ")
	l.up(t, 1, l.tapConfig(1, ""))
	l.attachHosts(t, 0)
	l.attachHosts(t, 1)
	a0 := l2HostIP(0, 0).Addr()
	pingUntil(t, l.hosts[1][0], a0)
	pingUntil(t, l.hosts[1][1], a0)
	b0, err := l.hosts[1][0].Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	b1, err := l.hosts[1][1].Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(l.dir, l.names[0]+".conf")
	// reload writes text and reloads, then waits for the n-th log line
	// holding want.
	reload := func(text, want string, n int) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := nsRun(l.testPair, 0, l.exe, "reload", l.names[0]); err != nil {
			t.Fatalf("warren reload: %v\n%s", err, out)
		}
		waitFor(t, want, func() bool { return strings.Count(pr.log.String(), want) >= n })
	}

	reload(confA+"AllowedMACs = "+b0.Attrs().HardwareAddr.String()+"\n", `msg="AllowedMACs changed"`, 1)
	before := l.showDrops(t, 0)["spoofed_mac"]
	if out, err := l.hosts[1][1].Command(context.Background(), ping, "-c", "2", "-i", "0.2", "-W", "1", a0.String()).CombinedOutput(); err == nil {
		t.Errorf("host B1, whose MAC the reload left out of AllowedMACs, still reaches site A:\n%s", out)
	}
	if n := l.showDrops(t, 0)["spoofed_mac"]; n == before {
		t.Errorf("spoofed_mac stayed %d at site A, want B1's frames counted", n)
	}
	for _, e := range l.showMACs(t, 0) {
		if e.MAC == b1.Attrs().HardwareAddr.String() {
			t.Errorf("B1's MAC is still bound at site A after the reload: %+v", e)
		}
	}
	pingUntil(t, l.hosts[1][0], a0)

	reload(strings.Replace(confA, "Bridge = "+l2Bridge, "Bridge = brother", 1), "Bridge cannot change while", 1)
	reload(confA, `msg="AllowedMACs changed"`, 2)
	pingUntil(t, l.hosts[1][1], a0)
}
