package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// TestDemoTAP runs `warren demo --mode tap` as a user would: the hosts
// behind the two bridges ping each other after ARP and neighbour
// discovery across the tunnel, site A's MAC table shows host B's MAC at
// the peer, and nothing is left behind.
func TestDemoTAP(t *testing.T) {
	netlabtest.RequireRoot(t)
	namespaces := func() []string {
		var names []string
		entries, _ := os.ReadDir("/run/netns")
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "wdemo") {
				names = append(names, e.Name())
			}
		}
		return names
	}
	before := namespaces()
	out, err := exec.Command(warrenBinary(t), "demo", "--mode", "tap", "--mb", "8", "--pings", "2").CombinedOutput()
	if err != nil {
		t.Fatalf("warren demo --mode tap: %v\n%s", err, out)
	}
	for _, want := range []string{
		"each TAP is a port of bridge",
		"ping IPv4 198.19.6.2: 2/2 answered",
		"ping IPv6 fd00:7761:6::2: 2/2 answered",
		"ARP across the tunnel: host A resolved 198.19.6.2 to",
		"neighbour discovery across the tunnel: host A resolved fd00:7761:6::2 to",
		"mac table:",
		"SHA-256 matches",
		"removed the namespaces",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	for _, n := range namespaces() {
		if !slices.Contains(before, n) {
			t.Errorf("namespace %s left behind", n)
		}
	}
	if out, err := exec.Command(warrenBinary(t), "demo", "--mode", "l2").CombinedOutput(); exitCode(err) != 2 || !strings.Contains(string(out), `--mode "l2": want tun or tap`) {
		t.Errorf("warren demo --mode l2: %v\n%s", err, out)
	}
}
