package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

func TestLinkUsage(t *testing.T) {
	tests := []struct {
		args      []string
		wantUsage bool
		wantText  string
	}{
		{nil, true, "no subcommand"},
		{[]string{"bogus"}, true, `unknown subcommand "bogus"`},
		{[]string{"add"}, true, "want KIND NAME"},
		{[]string{"add", "veth"}, true, "want KIND NAME"},
		{[]string{"add", "veth", "a", "b"}, true, "want KIND NAME"},
		{[]string{"add", "veth", "v0", "--nope"}, true, "flag provided but not defined"},
		{[]string{"add", "veth", "v0", "--address", "198.18.0.1"}, true, "prefix length"},
		{[]string{"del"}, true, "want NAME"},
		{[]string{"ls", "extra"}, true, `unexpected argument "extra"`},
		{[]string{"add", "macvlan", "m0"}, false, "--parent missing"},
		{[]string{"add", "macvlan", "m0", "--parent", "eth0", "--mode", "l3"}, false, `unknown mode "l3"`},
		{[]string{"add", "wireguard", "wg0"}, false, `unknown link kind "wireguard"`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runLink(context.Background(), tc.args, &stdout, &stderr)
			if err == nil || errors.Is(err, errUsage) != tc.wantUsage || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("runLink(%q) = %v, want error containing %q (usage %v)", tc.args, err, tc.wantText, tc.wantUsage)
			}
		})
	}
}

func TestLinkHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := runLink(context.Background(), []string{"help"}, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "warren link add") {
		t.Errorf("runLink(help) = %v, output %q, want usage on stdout", err, stdout.String())
	}
}

// runOK runs warren with args and returns its standard output.
func runOK(t testing.TB, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("warren %s: %v (stderr %q)", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// TestLinkListJSONClassifies creates one link of every kind warren link
// knows (through the command) in a namespace and checks that `link ls
// --json` classifies each one, with every field the JSON promises.
func TestLinkListJSONClassifies(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("links are Linux only")
	}
	ns := netlabtest.NewNamespace(t)
	n := ns.Name()
	suffix := fmt.Sprintf("%05x", rand.Uint32()&0xfffff)
	tun, tap, mvt := "wlkn"+suffix, "wlkp"+suffix, "wlkv"+suffix // names that reach the host: TUN/TAP, /dev/tapN
	adds := []struct {
		name string
		args []string
	}{
		{"v0", []string{"veth", "v0", "--netns", n, "--peer", "v1", "--peer-netns", n}},
		{tun, []string{"tun", tun, "--netns", n, "--multi-queue"}},
		{tap, []string{"tap", tap, "--netns", n, "--owner", "1000"}},
		{"mv0", []string{"macvlan", "mv0", "--parent", "v0", "--parent-netns", n, "--netns", n, "--mode", "private"}},
		{mvt, []string{"macvtap", mvt, "--parent", "v0", "--parent-netns", n, "--netns", n, "--mode", "vepa"}},
		{"br0", []string{"bridge", "br0", "--netns", n, "--ports", "v1", "--hairpin"}},
		{"ifb0", []string{"ifb", "ifb0", "--netns", n, "--redirect-from", "v0"}},
		{"vx0", []string{"vxlan", "vx0", "--netns", n, "--vni", "42", "--port", "4790"}},
	}
	for _, a := range adds {
		out := runOK(t, append([]string{"link", "add"}, a.args...)...)
		if !strings.HasPrefix(out, "added ") {
			t.Errorf("link add %s printed %q", strings.Join(a.args, " "), out)
		}
		t.Cleanup(func() { runOK(t, "link", "del", a.name, "--netns", n) })
	}

	out := runOK(t, "link", "ls", "--json", "--netns", n)
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("link ls --json: %v\n%s", err, out)
	}
	type peer struct {
		Index int    `json:"index"`
		Name  string `json:"name"`
		Netns string `json:"netns"`
	}
	type link struct {
		Name, Netns, Kind, Why, MAC, State, Master, Parent, Mode string
		Index, MTU                                               int
		Virtual                                                  bool
		Peer                                                     *peer
		TapDevice                                                string `json:"tap_device"`
		Hairpin                                                  *bool
		TUN                                                      *struct {
			Type       string `json:"type"`
			MultiQueue bool   `json:"multi_queue"`
			Owner      int    `json:"owner"`
			Persistent bool   `json:"persistent"`
		} `json:"tun"`
		VXLAN *struct{ VNI, Port int } `json:"vxlan"`
	}
	links := map[string]link{}
	for _, r := range raw {
		for _, field := range []string{"name", "index", "netns", "kind", "virtual", "why", "mac", "mtu", "state", "master", "parent", "mode", "peer"} {
			if _, ok := r[field]; !ok {
				t.Errorf("link ls --json: object %s lacks field %q", r["name"], field)
			}
		}
		b, _ := json.Marshal(r)
		var l link
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		links[l.Name] = l
	}

	wantKinds := map[string]string{"lo": "loopback", "v0": "veth", "v1": "veth", tun: "tun", tap: "tap",
		"mv0": "macvlan", mvt: "macvtap", "br0": "bridge", "ifb0": "ifb", "vx0": "vxlan"}
	for name, kind := range wantKinds {
		l, ok := links[name]
		if !ok {
			t.Errorf("link ls --json: %s missing", name)
			continue
		}
		if l.Kind != kind || !l.Virtual || l.Netns != n || !strings.Contains(l.Why, "/sys/devices/virtual/net") || l.Index == 0 || l.MTU == 0 {
			t.Errorf("link ls --json: %s = %+v, want kind %s, virtual (sysfs), netns %s", name, l, kind, n)
		}
		if (l.Peer != nil) != (kind == "veth") {
			t.Errorf("link ls --json: %s peer = %+v, want a peer only for veth", name, l.Peer)
		}
	}
	if p := links["v0"].Peer; p == nil || *p != (peer{Index: links["v1"].Index, Name: "v1", Netns: n}) {
		t.Errorf("v0 peer = %+v, want v1 (index %d) in %s", p, links["v1"].Index, n)
	}
	if l := links["mv0"]; l.Parent != "v0" || l.Mode != "private" {
		t.Errorf("mv0 parent %q mode %q, want v0, private", l.Parent, l.Mode)
	}
	if l := links[mvt]; l.Parent != "v0" || l.Mode != "vepa" || l.TapDevice != fmt.Sprintf("/dev/tap%d", l.Index) {
		t.Errorf("%s parent %q mode %q tap %q, want v0, vepa, /dev/tap%d", mvt, l.Parent, l.Mode, l.TapDevice, l.Index)
	}
	if l := links["v1"]; l.Master != "br0" || l.Hairpin == nil || !*l.Hairpin {
		t.Errorf("v1 master %q hairpin %v, want br0, on", l.Master, l.Hairpin)
	}
	if l := links[tun]; l.TUN == nil || l.TUN.Type != "tun" || !l.TUN.MultiQueue || !l.TUN.Persistent {
		t.Errorf("%s tun = %+v, want multi-queue persistent tun", tun, l.TUN)
	}
	if l := links[tap]; l.TUN == nil || l.TUN.Type != "tap" || l.TUN.MultiQueue || l.TUN.Owner != 1000 {
		t.Errorf("%s tun = %+v, want single-queue tap owned by 1000", tap, l.TUN)
	}
	if l := links["vx0"]; l.VXLAN == nil || l.VXLAN.VNI != 42 || l.VXLAN.Port != 4790 {
		t.Errorf("vx0 vxlan = %+v, want VNI 42 port 4790", l.VXLAN)
	}
	if l := links["mv0"]; l.MAC == "" || l.MAC == links["v0"].MAC {
		t.Errorf("mv0 MAC %q, want its own address", l.MAC)
	}

	table := runOK(t, "link", "ls", "--all-namespaces")
	for _, want := range []string{n, "peer v1", "mode vepa", "hairpin on", "vni 42 port 4790", "multi-queue"} {
		if !strings.Contains(table, want) {
			t.Errorf("link ls --all-namespaces lacks %q:\n%s", want, table)
		}
	}
}
