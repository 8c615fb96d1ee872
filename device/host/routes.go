package host

import (
	"net/netip"
	"slices"

	"github.com/warrenvpn/warren/config"
)

// DefaultFwMark is the fwmark and table wg-quick uses for a default route
// when the configuration sets no FwMark.
const DefaultFwMark = 51820

// Rule priorities of a default route. wg-quick lets the kernel choose, which
// on a host with the default rules gives these; fixing them keeps the
// suppress rule in front whatever order the rules are added in.
const (
	PrioritySuppress  = 32764 // lookup main suppress_prefixlength 0
	PriorityNotFwMark = 32765 // not fwmark M lookup M
)

// SrcValidMark is the sysctl wg-quick sets with an IPv4 default route, so
// that reverse-path filtering takes the fwmark into account.
const SrcValidMark = "net.ipv4.conf.all.src_valid_mark"

// RouteOptions are the inputs of PlanRoutes.
type RouteOptions struct {
	Table   config.Table   // the Table key: config.TableAuto, config.TableOff or a table ID
	FwMark  uint32         // the interface's FwMark; 0: DefaultFwMark if a default route needs one
	Allowed []netip.Prefix // the allowed IPs of every peer
}

// RoutePlan is what PlanRoutes decides: entries for a State, and the
// fwmark the transport's sockets must carry.
type RoutePlan struct {
	Routes  []Route
	Rules   []Rule
	Sysctls []Sysctl
	FwMark  uint32 // 0: none
}

// PlanRoutes decides routes and rules for the peers' allowed IPs as wg-quick
// does. With config.TableOff there are none; with a table ID every prefix
// goes to that table. With config.TableAuto every prefix goes to the main table, except a
// default route (0.0.0.0/0 or ::/0): that goes to a table numbered after the
// fwmark, with the rules `not fwmark M lookup M` and `lookup main
// suppress_prefixlength 0` for its family, so that the tunnel's own marked
// UDP packets still leave through the main table. An IPv4 default route also
// sets src_valid_mark. Unlike wg-quick, PlanRoutes does not probe for a free
// table when FwMark is unset; it takes DefaultFwMark.
func PlanRoutes(opts RouteOptions) RoutePlan {
	plan := RoutePlan{FwMark: opts.FwMark}
	if opts.Table == config.TableOff {
		return plan
	}
	var prefixes []netip.Prefix
	for _, p := range opts.Allowed {
		if p.IsValid() {
			prefixes = append(prefixes, p.Masked())
		}
	}
	// Longest prefixes first, as wg-quick sorts them.
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
		if a.Bits() != b.Bits() {
			return b.Bits() - a.Bits()
		}
		return comparePrefix(a, b)
	})
	prefixes = slices.Compact(prefixes)
	for _, p := range prefixes {
		if opts.Table != config.TableAuto {
			plan.Routes = append(plan.Routes, Route{Dst: p, Table: int(opts.Table)})
			continue
		}
		if p.Bits() != 0 {
			plan.Routes = append(plan.Routes, Route{Dst: p, Table: mainTable})
			continue
		}
		if plan.FwMark == 0 {
			plan.FwMark = DefaultFwMark
		}
		table := int(plan.FwMark)
		v6 := p.Addr().Is6()
		plan.Routes = append(plan.Routes, Route{Dst: p, Table: table})
		plan.Rules = append(plan.Rules,
			Rule{IPv6: v6, Priority: PriorityNotFwMark, Mark: plan.FwMark, Invert: true, Table: table},
			Rule{IPv6: v6, Priority: PrioritySuppress, Table: mainTable, Suppress: true, SuppressPrefixlen: 0},
		)
		if !v6 {
			plan.Sysctls = append(plan.Sysctls, Sysctl{Key: SrcValidMark, Value: "1"})
		}
	}
	return plan
}
