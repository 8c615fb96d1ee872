package device_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/device"
)

func prefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func TestPlanRoutes(t *testing.T) {
	const mark = device.DefaultFwMark
	rules4 := []device.Rule{
		{Priority: 32765, Mark: mark, Invert: true, Table: mark},
		{Priority: 32764, Table: device.TableMain, Suppress: true},
	}
	rules6 := []device.Rule{
		{IPv6: true, Priority: 32765, Mark: 0x1234, Invert: true, Table: 0x1234},
		{IPv6: true, Priority: 32764, Table: device.TableMain, Suppress: true},
	}
	srcValid := []device.Sysctl{{Key: device.SrcValidMark, Value: "1"}}
	tests := []struct {
		name string
		opts device.RouteOptions
		want device.RoutePlan
	}{
		{
			name: "off",
			opts: device.RouteOptions{Table: device.TableOff, FwMark: 7, Allowed: prefixes("0.0.0.0/0", "10.0.0.0/8")},
			want: device.RoutePlan{FwMark: 7},
		},
		{
			name: "auto without default, longest first as wg-quick sorts",
			opts: device.RouteOptions{Allowed: prefixes("10.0.0.0/8", "10.1.2.3/24", "fd00:7761:2::/48", "10.1.2.0/24", "198.18.5.5/32")},
			want: device.RoutePlan{Routes: []device.Route{
				{Dst: netip.MustParsePrefix("fd00:7761:2::/48"), Table: device.TableMain},
				{Dst: netip.MustParsePrefix("198.18.5.5/32"), Table: device.TableMain},
				{Dst: netip.MustParsePrefix("10.1.2.0/24"), Table: device.TableMain},
				{Dst: netip.MustParsePrefix("10.0.0.0/8"), Table: device.TableMain},
			}},
		},
		{
			name: "auto IPv4 default",
			opts: device.RouteOptions{Allowed: prefixes("0.0.0.0/0", "10.0.0.0/8")},
			want: device.RoutePlan{
				FwMark: mark,
				Routes: []device.Route{
					{Dst: netip.MustParsePrefix("10.0.0.0/8"), Table: device.TableMain},
					{Dst: netip.MustParsePrefix("0.0.0.0/0"), Table: mark},
				},
				Rules:   rules4,
				Sysctls: srcValid,
			},
		},
		{
			name: "auto IPv6 default with fwmark",
			opts: device.RouteOptions{FwMark: 0x1234, Allowed: prefixes("::/0")},
			want: device.RoutePlan{
				FwMark: 0x1234,
				Routes: []device.Route{{Dst: netip.MustParsePrefix("::/0"), Table: 0x1234}},
				Rules:  rules6,
			},
		},
		{
			name: "auto both defaults, duplicates across peers",
			opts: device.RouteOptions{Allowed: prefixes("::/0", "0.0.0.0/0", "::/0", "0.0.0.0/0")},
			want: device.RoutePlan{
				FwMark: mark,
				Routes: []device.Route{
					{Dst: netip.MustParsePrefix("0.0.0.0/0"), Table: mark},
					{Dst: netip.MustParsePrefix("::/0"), Table: mark},
				},
				Rules: append(append([]device.Rule(nil), rules4...),
					device.Rule{IPv6: true, Priority: 32765, Mark: mark, Invert: true, Table: mark},
					device.Rule{IPv6: true, Priority: 32764, Table: device.TableMain, Suppress: true}),
				Sysctls: srcValid,
			},
		},
		{
			name: "numbered table takes the default route too",
			opts: device.RouteOptions{Table: 1234, Allowed: prefixes("0.0.0.0/0", "10.0.0.0/8")},
			want: device.RoutePlan{Routes: []device.Route{
				{Dst: netip.MustParsePrefix("10.0.0.0/8"), Table: 1234},
				{Dst: netip.MustParsePrefix("0.0.0.0/0"), Table: 1234},
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := device.PlanRoutes(tc.opts)
			if diff := cmp.Diff(got, tc.want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("PlanRoutes(%+v) (-got +want):\n%s", tc.opts, diff)
			}
		})
	}
}
