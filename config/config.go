package config

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/mactable"
)

// Defaults and limits of the [Interface] section.
const (
	DefaultMTU = 1420 // bytes: 1500 - 32 WireGuard - 8 UDP - 40 IPv6
	// DefaultTAPMTU is the TAP's MTU in Mode = tap: what fits in one
	// 1420-byte payload with the 14-byte Ethernet header and warren's
	// 4-byte frame header, for untagged frames. A frame with one VLAN tag
	// needs 4 more, so set MTU = 1398 where VLAN-tagged frames cross.
	DefaultTAPMTU = DefaultMTU - 14 - 4 // bytes: 1402
	MinMTU        = 68                  // bytes: the IPv4 minimum (RFC 791), ETH_MIN_MTU
	MaxThreads    = 64                  // pipelines: the most Threads takes
	MaxMTU        = 65535               // bytes: the largest MTU a TUN or TAP link takes
	MinIPv6MTU    = 1280                // bytes: RFC 8200; Linux turns IPv6 off below it
)

// Config is one parsed wg-quick style file.
type Config struct {
	// Name is the interface name taken from the file name (wg0.conf → wg0),
	// or "" when the file name is not NAME.conf with a valid NAME.
	Name      string
	Interface Interface
	Peers     []Peer
}

// Interface is the [Interface] section.
type Interface struct {
	PrivateKey crypto.PrivateKey
	ListenPort uint16 // 0 = a random port
	// Addresses are the interface's addresses with their on-link prefix
	// length, host bits kept (10.0.0.1/24); a bare address is a /32 or /128.
	Addresses []netip.Prefix
	MTU       int   // bytes; DefaultMTU when the file has no MTU
	Table     Table // routing table for the peers' allowed IPs
	// TableName is a Table given by a name other than auto, off, main,
	// local or default: a name from /etc/iproute2/rt_tables, which Parse
	// does not read. Table is then TableAuto until the caller looks the
	// name up (LookupTable) and sets it.
	TableName string
	FwMark    uint32 // 0 = off
	// DNS holds the DNS server addresses in canonical text form, and
	// DNSSearch the search domains, both in file order. wg-quick puts every
	// DNS entry that looks like an IP address in the first list and every
	// other entry in the second.
	DNS       []string
	DNSSearch []string
	// SaveConfig asks, as in wg-quick, that the running configuration
	// (with peers added or changed at run time by `wg set`) be written
	// back to the file when the interface goes down.
	SaveConfig bool
	// Hook commands for the shell, in file order; each line is one command.
	PreUp, PostUp, PreDown, PostDown []string
	Mode                             Mode // warren's own key; ModeTUN by default
	// Threads is warren's own key: how many pipelines (a TUN queue and a
	// UDP socket each, with their goroutines) move packets; 0 = unset,
	// the default of `warren up` (DefaultThreads). Mode = tap runs one:
	// more is an error naming the Threads line.
	Threads int
	// MetricsListen is warren's own key: the address and port where `warren
	// up` serves Prometheus metrics over HTTP (/metrics); zero = off.
	MetricsListen netip.AddrPort
	// DNSOptional and FirewallOptional are warren's own keys DNSRequired
	// and FirewallRequired, set to false: `warren up` then goes on with a
	// warning where the DNS servers cannot be handed to resolvconf or
	// systemd-resolved, or where nftables cannot take the full tunnel's
	// protections. By default (true, fail closed) it stops and removes
	// everything it added.
	DNSOptional      bool
	FirewallOptional bool
	// Layer 2 mode (Mode = tap) only, warren's own keys. Bridge is a
	// Linux bridge the TAP joins (created if absent); Forward lets frames
	// from one peer go on to others (a hub); MACAgeing is how long a MAC
	// table entry lives unseen (0: the engine's default, 300 s).
	// OffloadOff (Offload = off) opens the TAP with the kernel's
	// checksum and segmentation offloads off.
	Bridge     string
	Forward    bool
	MACAgeing  time.Duration
	OffloadOff bool
	// Paths that change under a running tunnel, warren's own keys; 0 is
	// unset (the defaults of package tunnel and lifecycle), negative off.
	// PathMTUProbe is how long a peer's lowered path MTU stands before
	// warren checks whether the path widened (default 10 min).
	// ReresolveAfter is how old a peer's last handshake must be before its
	// Endpoint host name is looked up again (default 135 s), ReresolveMax
	// the longest delay between two such look-ups (default 1 min).
	PathMTUProbe   time.Duration
	ReresolveAfter time.Duration
	ReresolveMax   time.Duration
}

// Peer is one [Peer] section.
type Peer struct {
	PublicKey    crypto.PublicKey
	PresharedKey crypto.PresharedKey // zero = none
	// AllowedIPs are masked to their prefix length (10.0.0.7/24 is stored as
	// 10.0.0.0/24, which is what the kernel keeps), without duplicates, in
	// file order.
	AllowedIPs []netip.Prefix
	// Endpoint is host:port as written ("198.18.0.1:51820",
	// "[fd00:7761::1]:51820" or "vpn.example.com:51820"); "" = none.
	// ResolveEndpoint turns it into an address.
	Endpoint            string
	PersistentKeepalive time.Duration // whole seconds; 0 = off
	// AllowedMACs (Mode = tap only, warren's own key) are the only source
	// MACs the peer may send frames from; empty allows any.
	AllowedMACs []mactable.MAC
}

// Table is the value of the Table key: where wg-quick puts the routes for
// the peers' allowed IPs. It is TableAuto, TableOff or a kernel routing
// table ID (1 to 4294967295).
type Table int64

// Table values with a name.
const (
	// TableAuto (the default) routes through the main table, except that
	// a default route goes through its own table selected by an fwmark rule.
	TableAuto Table = 0
	// TableOff adds no routes.
	TableOff     Table = -1
	TableDefault Table = 253 // iproute2's name "default"
	TableMain    Table = 254 // iproute2's name "main"
	TableLocal   Table = 255 // iproute2's name "local"
)

// String returns the Table value as the file writes it.
func (t Table) String() string {
	switch t {
	case TableAuto:
		return "auto"
	case TableOff:
		return "off"
	case TableDefault:
		return "default"
	case TableMain:
		return "main"
	case TableLocal:
		return "local"
	}
	return strconv.FormatInt(int64(t), 10)
}

// ID returns the routing table ID to add routes to: 254 (main) for
// TableAuto, 0 for TableOff, otherwise t itself.
func (t Table) ID() uint32 {
	switch {
	case t == TableAuto:
		return uint32(TableMain)
	case t < 0:
		return 0
	}
	return uint32(t)
}

// Mode is warren's own Mode key: the kind of adapter.
type Mode uint8

// Modes.
const (
	ModeTUN Mode = iota // layer 3, as WireGuard
	ModeTAP             // layer 2 frames, warren only
)

// String returns "tun" or "tap".
func (m Mode) String() string {
	switch m {
	case ModeTUN:
		return "tun"
	case ModeTAP:
		return "tap"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// WipeSecrets zeroes the private key and every peer's preshared key (P18),
// for a holder that is done with c. Peers share their slice with copies of
// c, so a copy's preshared keys go too.
func (c *Config) WipeSecrets() {
	c.Interface.PrivateKey.Zero()
	for i := range c.Peers {
		c.Peers[i].PresharedKey.Zero()
	}
}
