// Package host applies a desired host state to one interface (addresses,
// MTU, link state, routes, fwmark rules and sysctls) through a small netlink
// interface, holds what it applied so that Undo removes exactly that, and
// writes the crash journal that lets the next start undo what a killed
// process left behind. PlanRoutes turns a config's allowed IPs into a
// RoutePlan of routes, rules and sysctls the way wg-quick does.
package host
