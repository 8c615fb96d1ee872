package host_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/device/host"
)

// mainTable is the kernel's main routing table, as routes and rules carry it.
const mainTable = int(config.TableMain)

func prefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func TestPlanRoutes(t *testing.T) {
	const mark = host.DefaultFwMark
	rules4 := []host.Rule{
		{Priority: 32765, Mark: mark, Invert: true, Table: mark},
		{Priority: 32764, Table: mainTable, Suppress: true},
	}
	rules6 := []host.Rule{
		{IPv6: true, Priority: 32765, Mark: 0x1234, Invert: true, Table: 0x1234},
		{IPv6: true, Priority: 32764, Table: mainTable, Suppress: true},
	}
	srcValid := []host.Sysctl{{Key: host.SrcValidMark, Value: "1"}}
	tests := []struct {
		name string
		opts host.RouteOptions
		want host.RoutePlan
	}{
		{
			name: "off",
			opts: host.RouteOptions{Table: config.TableOff, FwMark: 7, Allowed: prefixes("0.0.0.0/0", "10.0.0.0/8")},
			want: host.RoutePlan{FwMark: 7},
		},
		{
			name: "auto without default, longest first as wg-quick sorts",
			opts: host.RouteOptions{Allowed: prefixes("10.0.0.0/8", "10.1.2.3/24", "fd00:7761:2::/48", "10.1.2.0/24", "198.18.5.5/32")},
			want: host.RoutePlan{Routes: []host.Route{
				{Dst: netip.MustParsePrefix("fd00:7761:2::/48"), Table: mainTable},
				{Dst: netip.MustParsePrefix("198.18.5.5/32"), Table: mainTable},
				{Dst: netip.MustParsePrefix("10.1.2.0/24"), Table: mainTable},
				{Dst: netip.MustParsePrefix("10.0.0.0/8"), Table: mainTable},
			}},
		},
		{
			name: "auto IPv4 default",
			opts: host.RouteOptions{Allowed: prefixes("0.0.0.0/0", "10.0.0.0/8")},
			want: host.RoutePlan{
				FwMark: mark,
				Routes: []host.Route{
					{Dst: netip.MustParsePrefix("10.0.0.0/8"), Table: mainTable},
					{Dst: netip.MustParsePrefix("0.0.0.0/0"), Table: mark},
				},
				Rules:   rules4,
				Sysctls: srcValid,
			},
		},
		{
			name: "auto IPv6 default with fwmark",
			opts: host.RouteOptions{FwMark: 0x1234, Allowed: prefixes("::/0")},
			want: host.RoutePlan{
				FwMark: 0x1234,
				Routes: []host.Route{{Dst: netip.MustParsePrefix("::/0"), Table: 0x1234}},
				Rules:  rules6,
			},
		},
		{
			name: "auto both defaults, duplicates across peers",
			opts: host.RouteOptions{Allowed: prefixes("::/0", "0.0.0.0/0", "::/0", "0.0.0.0/0")},
			want: host.RoutePlan{
				FwMark: mark,
				Routes: []host.Route{
					{Dst: netip.MustParsePrefix("0.0.0.0/0"), Table: mark},
					{Dst: netip.MustParsePrefix("::/0"), Table: mark},
				},
				Rules: append(append([]host.Rule(nil), rules4...),
					host.Rule{IPv6: true, Priority: 32765, Mark: mark, Invert: true, Table: mark},
					host.Rule{IPv6: true, Priority: 32764, Table: mainTable, Suppress: true}),
				Sysctls: srcValid,
			},
		},
		{
			name: "numbered table takes the default route too",
			opts: host.RouteOptions{Table: 1234, Allowed: prefixes("0.0.0.0/0", "10.0.0.0/8")},
			want: host.RoutePlan{Routes: []host.Route{
				{Dst: netip.MustParsePrefix("10.0.0.0/8"), Table: 1234},
				{Dst: netip.MustParsePrefix("0.0.0.0/0"), Table: 1234},
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := host.PlanRoutes(tc.opts)
			if diff := cmp.Diff(got, tc.want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("PlanRoutes(%+v) (-got +want):\n%s", tc.opts, diff)
			}
		})
	}
}
