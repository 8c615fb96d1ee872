package firewall_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/device/firewall"
)

// TestRulesString: the rules read as wg-quick's nft commands for each
// family with a default route, and only those.
func TestRulesString(t *testing.T) {
	r := firewall.Rules{
		Interface: "wg0",
		Addresses: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24"), netip.MustParsePrefix("fd00:7761:1::1/64")},
		FwMark:    51820,
		IPv4:      true,
	}
	want := `table ip warren-wg0 {
	chain preraw { type filter hook prerouting priority -300;
		iifname != "wg0" ip daddr 198.19.0.1 fib saddr type != local drop
	}
	chain premangle { type filter hook prerouting priority -150;
		meta l4proto udp meta mark set ct mark
	}
	chain postmangle { type filter hook postrouting priority -150;
		meta l4proto udp mark 0xca6c ct mark set mark
	}
}
`
	if diff := cmp.Diff(r.String(), want); diff != "" {
		t.Errorf("String() (-got +want):\n%s", diff)
	}
	if (firewall.Rules{Interface: "wg0"}).IsEmpty() != true || r.IsEmpty() {
		t.Error("IsEmpty wrong")
	}
}
