// Package lifecycle brings one WireGuard interface up and down: the adapter,
// the transport, the engine, the host state (addresses, routes, rules,
// sysctls) with its crash journal, the full tunnel's nftables table, the
// control socket, the metrics server, wg-quick's hooks and DNS, and the pid
// file that `warren down` reads. Every opener is injected through Options,
// with the real one as the default, so that the whole sequence and its undo
// run without root against test doubles.
//
// Up brings an interface up as wg-quick does, in these steps, after looking
// a Table = NAME up in rt_tables (Options.RTTables); a failure at any step
// undoes exactly the steps before it, in reverse (the undo stack):
//  1. resolve the peers' endpoints (a name that does not resolve is
//     retried in the background, see endpoints.go);
//  2. run PreUp;
//  3. open the netlink handle;
//  4. refuse a second instance (its pid file names a live process with the
//     recorded start time), restore what a crashed one left (L6);
//  5. open the adapter (the TUN, its MTU set), then write the pid file;
//  6. open the transport (the UDP socket, with the fwmark the routes need);
//  7. start the engine with the keys and peers: it owns the adapter and
//     the transport from here on, and closing it closes them; start the
//     retries of endpoint names;
//  8. bring the engine up, before the link is: a packet the host sends as
//     soon as it sees the link up starts a handshake instead of being
//     dropped by an engine still down;
//  9. apply the host state, then, for a full tunnel, the nftables table
//     (package device/firewall); the crash journal is written and synced
//     before each change that would outlive a kill -9 (rules, sysctls, the
//     table, the DNS entry), so no point of start-up leaves one unrecorded
//     (L22);
//  10. open and serve the control socket (wg, warren show), and the
//     Prometheus metrics server (package metrics) when the config sets
//     MetricsListen;
//  11. apply DNS (resolvconf, or systemd-resolved's resolvectl);
//  12. run PostUp (PreDown is on the undo stack from here on).
//
// Steps 9 and 11 fail closed: where nftables refuses the table or no
// resolver takes the DNS servers, Up stops, unless the config says
// FirewallRequired = false or DNSRequired = false (then it logs a warning
// and goes on).
//
// UpDevice brings up only steps 5, 6, 7, 8 and 10, with no configuration:
// the bare device that `wg` and `ip` configure, as wireguard-go provides it
// to wg-quick.
//
// Tunnel.Reconfigure applies a new configuration to the running tunnel (the
// difference only: see reconfigure.go). Recover restores what a dead
// instance left, from its journal, for `warren down`.
//
// Tunnel.Wait returns when the context is done, the engine stops on its own
// (its interface deleted from outside, or a fatal error) or the control
// socket file is deleted or stops accepting. Tunnel.SaveConfig writes the
// running configuration back to the file (for SaveConfig = true; the caller
// calls it before Close). Tunnel.Close runs PreDown, undoes every step in
// reverse and runs PostDown last, as wg-quick does.
package lifecycle
