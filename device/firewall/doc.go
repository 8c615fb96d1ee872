// Package firewall owns warren's nftables table: the protections wg-quick
// installs for a full tunnel (a default route in AllowedIPs with Table =
// auto), made through netlink with github.com/google/nftables, never by
// running nft. For each address family with a default route, table
// "warren-IFACE" of that family holds, as wg-quick's "wg-quick-IFACE" does:
//
//   - chain preraw (filter, prerouting, priority -300, the raw hook): a
//     packet for one of the tunnel's addresses that arrives on another
//     interface from a source that is not local is dropped, so that no one
//     on the underlay can probe the tunnel's address and the connections
//     behind it (CVE-2019-14899):
//     iifname != "IFACE" ip daddr ADDR fib saddr type != local drop
//   - chain premangle (filter, prerouting, priority -150): a UDP packet
//     gets the mark its connection carries, so that replies to the
//     tunnel's own marked packets match the fwmark rules too:
//     meta l4proto udp meta mark set ct mark
//   - chain postmangle (filter, postrouting, priority -150): the mark of a
//     marked UDP packet is saved in its connection:
//     meta l4proto udp mark FWMARK ct mark set mark
//
// Apply installs the table for a Rules, replacing any table of that name in
// one transaction; Remove deletes it, and deleting a table that is not
// there is not an error. Neither keeps state: the table's name is all a
// crash journal needs to remove it.
package firewall
