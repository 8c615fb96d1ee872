package config

import (
	"strings"
	"testing"
	"time"

	"github.com/warrenvpn/warren/mactable"
)

func TestParseLayer2(t *testing.T) {
	in := "[Interface]\nPrivateKey = " + privA + "\nMode = tap\nBridge = br-lan\nForward = true\nMACAgeing = 60\nOffload = OFF\n" +
		"\n[Peer]\nPublicKey = " + pubB + "\nAllowedMACs = 02:00:00:00:00:01, 02:00:00:00:00:02\nAllowedMACs = 02-00-00-00-00-03\n"
	c, err := Parse("wg0.conf", strings.NewReader(in))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	ifc := c.Interface
	if ifc.Bridge != "br-lan" || !ifc.Forward || ifc.MACAgeing != time.Minute || ifc.MTU != DefaultTAPMTU || !ifc.OffloadOff {
		t.Errorf("Interface = Bridge %q Forward %v MACAgeing %v MTU %d OffloadOff %v, want br-lan true 1m0s %d true", ifc.Bridge, ifc.Forward, ifc.MACAgeing, ifc.MTU, ifc.OffloadOff, DefaultTAPMTU)
	}
	want := []mactable.MAC{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}}
	if got := c.Peers[0].AllowedMACs; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("AllowedMACs = %v, want %v", got, want)
	}
	// Printed and read back, it is the same.
	again, err := Parse("wg0.conf", strings.NewReader(c.String()))
	if err != nil {
		t.Fatalf("Parse(String()): %v\n%s", err, c.String())
	}
	if again.String() != c.String() {
		t.Errorf("round trip:\n%s\nwant\n%s", again.String(), c.String())
	}
	// A MAC twice in one peer is kept once.
	c, err = Parse("wg0.conf", strings.NewReader("[Interface]\nPrivateKey = "+privA+"\nMode = tap\n[Peer]\nPublicKey = "+pubB+"\nAllowedMACs = 02:00:00:00:00:01\nAllowedMACs = 02:00:00:00:00:01\n"))
	if err != nil || len(c.Peers[0].AllowedMACs) != 1 {
		t.Errorf("one MAC twice in a peer: %v, %v", c, err)
	}
	// In tap mode two peers may list the same prefix.
	two := "[Interface]\nPrivateKey = " + privA + "\nMode = tap\n[Peer]\nPublicKey = " + pubB + "\nAllowedIPs = 198.18.5.0/24\n[Peer]\nPublicKey = " + pubC + "\nAllowedIPs = 198.18.5.0/24\n"
	if c, err := Parse("wg0.conf", strings.NewReader(two)); err != nil || len(c.Peers[1].AllowedIPs) != 1 {
		t.Errorf("one prefix for two peers in tap mode: %v", err)
	}
	// DefaultTAPMTU is 1420 - 14 - 4, and an explicit MTU wins.
	if DefaultTAPMTU != 1402 {
		t.Errorf("DefaultTAPMTU = %d, want 1402", DefaultTAPMTU)
	}
	c, err = Parse("wg0.conf", strings.NewReader("[Interface]\nPrivateKey = "+privA+"\nMTU = 1398\nMode = tap\n"))
	if err != nil || c.Interface.MTU != 1398 {
		t.Errorf("MTU = 1398 in tap mode: %v, %v", c.Interface.MTU, err)
	}
	c, err = Parse("wg0.conf", strings.NewReader(minimal))
	if err != nil || c.Interface.MTU != DefaultMTU {
		t.Errorf("tun mode MTU = %v, %v, want %d", c.Interface.MTU, err, DefaultMTU)
	}
}

func TestParseLayer2Errors(t *testing.T) {
	tap := "[Interface]\nPrivateKey = " + privA + "\nMode = tap\n"
	tun := "[Interface]\nPrivateKey = " + privA + "\n"
	peer := "[Peer]\nPublicKey = " + pubB + "\n"
	tests := []struct {
		name, in, want string
	}{
		{"bad MAC", tap + peer + "AllowedMACs = 02:00:00:00:00\n", `wg0.conf:6: AllowedMACs: "02:00:00:00:00": invalid MAC address`},
		{"long MAC", tap + peer + "AllowedMACs = 02:00:00:00:00:00:00:01\n", `wg0.conf:6: AllowedMACs: "02:00:00:00:00:00:00:01": invalid MAC address`},
		{"group MAC", tap + peer + "AllowedMACs = 01:00:5e:00:00:01\n", `wg0.conf:6: AllowedMACs: "01:00:5e:00:00:01": a multicast or broadcast MAC`},
		{"Forward in TUN mode", tun + "Forward = true\n", "wg0.conf:3: Forward: only with Mode = tap"},
		{"MACAgeing in TUN mode", tun + "MACAgeing = 30\n", "wg0.conf:3: MACAgeing: only with Mode = tap"},
		{"Offload in TUN mode", tun + "Offload = off\n", "wg0.conf:3: Offload: only with Mode = tap"},
		{"bad Offload", tap + "Offload = maybe\n", `wg0.conf:4: Offload: "maybe": invalid value: want on or off`},
		{"Bridge in TUN mode", tun + "Bridge = br0\n", "wg0.conf:3: Bridge: only with Mode = tap"},
		{"AllowedMACs in TUN mode", tun + peer + "AllowedMACs = 02:00:00:00:00:01\n", "wg0.conf:5: AllowedMACs: only with Mode = tap"},
		{"Mode after Forward", "[Interface]\nPrivateKey = " + privA + "\nForward = false\nMode = tun\n", "wg0.conf:3: Forward: only with Mode = tap"},
		{"bad Forward", tap + "Forward = yes\n", `wg0.conf:4: Forward: "yes"`},
		{"zero MACAgeing", tap + "MACAgeing = 0\n", `wg0.conf:4: MACAgeing: "0": invalid MAC ageing`},
		{"huge MACAgeing", tap + "MACAgeing = 99999999\n", `wg0.conf:4: MACAgeing: "99999999": invalid MAC ageing`},
		{"bad Bridge", tap + "Bridge = a/b\n", `wg0.conf:4: Bridge: "a/b": invalid bridge name`},
		{"MAC in two peers", tap + peer + "AllowedMACs = 02:00:00:00:00:01\n[Peer]\nPublicKey = " + pubC + "\nAllowedMACs = 02:00:00:00:00:02, 02:00:00:00:00:01\n",
			`wg0.conf:9: AllowedMACs: "02:00:00:00:00:01": duplicate`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("wg0.conf", strings.NewReader(tc.in))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want an error starting %q", err, tc.want)
			}
		})
	}
}
