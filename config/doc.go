// Package config owns warren's config files: wg-quick style [Interface] and
// [Peer] sections plus warren's own keys, Mode, MetricsListen (IP:port
// of the Prometheus metrics, off by default), DNSRequired and
// FirewallRequired (see below), Threads (the number of pipelines, 1-64),
// and PathMTUProbe, ReresolveAfter and ReresolveMax (whole seconds, off for
// the first two: when a lowered path MTU is checked again, and when and
// how often an Endpoint host name is looked up again). It parses,
// validates and
// prints them back, returns typed values, and never touches the host (Load
// reads the one file it is given; ResolveEndpoint asks the resolver it is
// given).
//
// # Syntax, as wg-quick and wg read it
//
// Everything from the first '#' on a line is a comment, also inside hook
// commands (wg-quick cuts there too). Blank lines are skipped. A line is
// a section header, [Interface] or [Peer], or Key = Value split at the
// first '='; whitespace around key and value is trimmed. Keys, section
// headers and the words off, auto, true, false, tun and tap are read
// without regard to case. Address and DNS lists split at commas and
// whitespace (wg-quick's word splitting); AllowedIPs splits at commas only
// and refuses empty entries (as wg does). Address, DNS, AllowedIPs and the
// four hooks may repeat and add up; an empty value adds nothing. MTU or
// Table with an empty value mean the default, as in wg-quick.
//
// # Where warren is stricter than wg-quick
//
//   - Parse stops at the first mistake and returns it as an *Error.
//   - A key that is not a list (ListenPort, MTU, PublicKey, Endpoint, ...)
//     appearing twice in a section, a second [Interface] section, the same
//     interface address twice, and a prefix allowed for two peers are
//     errors; wg-quick lets the last one win.
//   - A peer whose public key is the interface's own is an error (the
//     kernel silently ignores such a peer).
//   - A section header must be exactly [Interface] or [Peer] (any case),
//     without whitespace inside the brackets; a key with whitespace inside
//     is unknown (wg deletes all whitespace before matching its own keys).
//   - ListenPort and the Endpoint port are numbers (no service names from
//     /etc/services); an Endpoint port must not be 0; an IPv6 Endpoint
//     needs brackets; a host name must be a syntactically valid DNS name.
//   - Table takes auto, off, main (254), local (255), default (253), a
//     number 1-4294967295 in decimal or 0x hex (not 0 or octal), or another
//     name, which Parse keeps in TableName for the caller to look up in
//     /etc/iproute2/rt_tables (LookupTable; `warren up` does, and a name
//     not there stops it).
//   - MTU is 68-65535, and at least 1280 when there is an IPv6 address.
//   - Address refuses the unspecified address and multicast addresses.
//
// # SaveConfig
//
// SaveConfig = true is kept in Interface.SaveConfig: as wg-quick does,
// `warren up` then writes the running configuration (the peers as they are
// then, including those added or changed with `wg set`; the listen port in
// use) back to the file when it goes down, atomically and with mode 0600.
// Comments and the order of keys in the file are not kept.
//
// # Failing closed: DNSRequired and FirewallRequired
//
// `warren up` hands DNS servers to resolvconf or systemd-resolved
// (resolvectl), whichever the host has, and for a full tunnel (a default
// route in AllowedIPs with Table = auto) installs wg-quick's nftables
// protections. Where it cannot, it stops with one line and removes
// everything it added, so that names never resolve, nor packets arrive,
// outside the tunnel unnoticed. `DNSRequired = false` or `FirewallRequired
// = false` in [Interface] says explicitly to go on instead, with a warning.
// Both default to true; wg-quick does not know them, so a file that sets
// them is warren's.
//
// # Layer 2: Mode = tap
//
// With Mode = tap the interface carries Ethernet frames between warren
// peers (no WireGuard implementation reads them). Its own keys are
// [Interface] Bridge = NAME (a Linux bridge the TAP joins), Forward = true
// (a hub: frames from one peer go on to the others), MACAgeing = SECONDS
// (1 to 1000000; the engine's default is 300), Offload = on or off (the
// TAP's checksum and segmentation offloads; on by default) and [Peer]
// AllowedMACs = MAC, MAC, ... (unicast MACs, any of the forms net.ParseMAC
// reads for six octets, printed as 02:00:00:00:00:01; a MAC in two peers'
// lists is an error naming both lines). Any of them without Mode = tap is
// an error naming its line. Without an MTU key the MTU is DefaultTAPMTU
// (1402: 1420 - 14 for the Ethernet header - 4 for warren's frame header,
// untagged frames; MTU = 1398 leaves room for one VLAN tag). AllowedIPs
// then filter the senders inside frames, so several peers may list the
// same prefix (a subnet spread over sites), which in TUN mode is an error.
//
// # Stored forms
//
// AllowedIPs are stored masked: wg sends 10.0.0.7/24 to the kernel as
// written and the kernel keeps 10.0.0.0/24, so that is what a Config
// holds and prints. Address keeps its host bits (10.0.0.1/24 is an address
// with its on-link prefix). DNS entries that look like IP addresses (only
// digits and dots, or a colon) are servers in Interface.DNS, in canonical
// form; the others are search domains in Interface.DNSSearch. A Peer's
// Endpoint is kept as written and resolved only by ResolveEndpoint.
//
// # Errors
//
// Every mistake in a file is an *Error with the file, line, key and value,
// printed as
//
//	wg0.conf:7: AllowedIPs: "10.0.0/24": invalid prefix
//
// The values of PrivateKey and PresharedKey are never copied into an
// error. Structural mistakes wrap the Err* sentinels for errors.Is.
package config
