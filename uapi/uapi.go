// Package uapi owns WireGuard's cross-platform userspace API
// (https://www.wireguard.com/xplatform/): the line protocol spoken on
// /var/run/wireguard/<iface>.sock by wg, wg-quick and warren.
//
// It parses "set=1" requests into a typed Change, formats "get=1" replies
// from a typed State, and answers each request with an errno line, byte for
// byte as wireguard-go does. It applies nothing itself: the engine implements
// Device, and a Server drives it from connections.
//
// A session on one connection is a sequence of requests:
//
//	get=1\n\n                      -> key=value lines..., errno=0\n\n
//	set=1\n key=value\n ... \n     -> errno=N\n\n
//	get=warren\n\n                 -> as get=1, plus warren_drop_* lines
//	anything else\n                -> the connection is closed, no reply
//
// Keys are lowercase hex (64 characters), numbers decimal.
//
// Listen makes the interface's owner-only socket (replacing a stale one a
// dead daemon left) and notices when its file is deleted. A Server cannot
// be wedged by its clients: it holds no lock while it reads a request or
// writes a reply (C12), closes a connection idle 30 s in a read or write or
// open 5 min, serves at most 64 connections at once (C13), retries a
// temporary Accept error with a backoff (C14), refuses a set body over
// MaxSetSize (C15), and zeroes the keys of a set once applied and of a get
// reply once written (P18). Dial, Get, GetWarren and Set are the client
// side, for `warren show`.
//
// # Warren's extension
//
// The engine's drop counters (State.Drops) are not part of WireGuard's
// protocol, so "get=1" never reports them: wg and wg-quick see exactly
// what wireguard-go would send (uapitest's conformance suite compares the
// bytes). A client that wants them asks with the operation "get=warren",
// which wg never sends and wireguard-go answers by closing the connection
// (GetWarren returns ErrNotWarren then). The reply is that of "get=1" with
// one line per non-zero counter in the device section, after fwmark and
// before the first peer:
//
//	warren_drop_<reason>=<count>     for example warren_drop_no_route=3
//
// After them come the device's extra lines, and each peer's section ends
// with that peer's extra lines: warren_<word>=<value> lines that the
// process adds through Server.Extras (the mesh's state, for example):
//
//	warren_mesh_connected=1
//	warren_mesh_revision=42
//
// An engine in layer 2 mode (Mode = tap) adds its MAC table to the
// device's lines, one line per live entry, and the number of moves:
//
//	warren_mac=02:00:00:00:00:01 local 3 10
//	warren_mac=02:00:00:00:00:02 <peer's public key, base64> 0 7
//	warren_mac_moves=1
//
// (MAC, "local" for the TAP's side or the peer, seconds since last seen,
// frames). "get=1" carries none of it, so `wg show` reads a TAP-mode
// interface as any other.
//
// A peer whose path MTU the engine lowered (a narrower link on the way,
// learnt from the kernel) ends its section with the outer path MTU and the
// inner MTU packets to it must fit, in bytes:
//
//	warren_path_mtu=1280 1220
//
// A peer that wrote to us names the local address it wrote to, which the
// engine's replies to it leave from:
//
//	warren_local=198.18.0.5
//
// A separate operation keeps the extension out of the replies of every
// other client, and needs no second socket or request format.
package uapi

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// Errno values sent in "errno=N" status lines. They are negated Linux errno
// numbers, as in wireguard-go on every platform that has them.
const (
	ErrnoIO        = -5  // -EIO: reading the request or writing the reply failed
	ErrnoInvalid   = -22 // -EINVAL: unknown key or invalid value
	ErrnoProtocol  = -71 // -EPROTO: a line without "="
	ErrnoPortInUse = -98 // -EADDRINUSE: listen_port or fwmark could not be applied
	ErrnoUnknown   = -55 // any other failure of Device.Apply
)

// Error is a failed request with the errno to report. Device.Apply returns
// one (for example with ErrnoPortInUse) to choose the status line; any other
// error is reported as ErrnoUnknown.
type Error struct {
	Errno int64
	Err   error
}

// Errorf returns an *Error with the given errno and a formatted cause.
func Errorf(errno int64, format string, args ...any) *Error {
	return &Error{Errno: errno, Err: fmt.Errorf(format, args...)}
}

// Error returns the errno and the cause.
func (e *Error) Error() string {
	return fmt.Sprintf("uapi errno %d: %v", e.Errno, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// errnoOf returns the errno to report for err (0 for nil).
func errnoOf(err error) int64 {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Errno
	}
	return ErrnoUnknown
}

// Device is the configurable side of the engine, as the Server sees it.
//
// The Server serialises its own calls: it never calls Apply concurrently with
// Apply or State (State may run concurrently with State). The engine may
// change its state by other means at the same time and must guard that
// itself.
type Device interface {
	// State returns a snapshot of the configuration and statistics. The
	// Server only reads the result and does not keep it.
	State() (*State, error)

	// Apply applies a validated change as a whole: if it returns an error,
	// nothing of c has been applied. Return an *Error to choose the errno
	// (ErrnoPortInUse when the listen port or fwmark cannot be bound,
	// ErrnoInvalid for values the engine rejects). c is borrowed for the call.
	Apply(c *Change) error
}

// State is what "get=1" reports, and with Drops what "get=warren" reports.
type State struct {
	PrivateKey crypto.PrivateKey // zero: none (the line is omitted)
	ListenPort uint16            // 0: omitted
	FwMark     uint32            // 0: omitted
	Peers      []PeerState       // in the order to report
	Drops      []Drop            // warren only, never in a "get=1" reply; zero counts are omitted
	Extras     []Extra           // warren only, never in a "get=1" reply (see Server.Extras)
}

// Extra is one line of warren's extension that the process, not the
// engine, supplies (see the package doc and Server.Extras): a key of the
// form warren_[a-z0-9_]+ that is not a drop counter's, and a value of
// printable characters. A reply leaves out an Extra that breaks this.
type Extra struct {
	Key   string
	Value string
}

// isExtra reports whether e can go on the wire as an extra line.
func isExtra(e Extra) bool {
	name, ok := strings.CutPrefix(e.Key, "warren_")
	if !ok || !isReason(name) || strings.HasPrefix(e.Key, dropPrefix) {
		return false
	}
	for _, c := range []byte(e.Value) {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// Drop is one of the engine's drop counters (warren's extension, see the
// package doc): how many packets it discarded for one reason.
type Drop struct {
	Reason string // a word of [a-z0-9_], such as "no_route"
	Count  uint64
}

// isReason reports whether s can name a drop counter on the wire.
func isReason(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// PeerState is one peer in a State.
type PeerState struct {
	PublicKey           crypto.PublicKey
	PresharedKey        crypto.PresharedKey // zero: none (still reported, as zeros)
	Endpoint            netip.AddrPort      // invalid (zero): none, omitted
	LastHandshake       time.Time           // zero: never (reported as 0 and 0)
	TxBytes             uint64              // bytes sent, including WireGuard overhead
	RxBytes             uint64              // bytes received, including WireGuard overhead
	PersistentKeepalive uint16              // seconds; 0: off
	AllowedIPs          []netip.Prefix      // in the order to report (as inserted)
	Extras              []Extra             // warren only, never in a "get=1" reply (see Server.Extras)
}

// Change is a parsed "set=1" request: what to change, in request order. The
// engine applies it as a whole, in this order, with wireguard-go's meaning:
//
//  1. PrivateKey (if not nil and not the current key): set it; a zero key
//     removes it. The device's own public key becomes the key's public key
//     (for the zero key, that of the clamped zero scalar, as wireguard-go
//     computes it), and a peer with that public key is removed.
//  2. ListenPort, FwMark (if not nil): rebind; failure is ErrnoPortInUse.
//  3. ReplacePeers: remove every existing peer.
//  4. Peers, in order (a public key may occur more than once; each entry
//     acts on the state left by the ones before it). An entry whose public
//     key equals the device's own public key is ignored; until a private key
//     has first been set, the own public key is all zeros.
type Change struct {
	PrivateKey   *crypto.PrivateKey // nil: unchanged; zero: remove the key
	ListenPort   *uint16            // nil: unchanged; 0: pick a random port
	FwMark       *uint32            // nil: unchanged; 0: clear the mark
	ReplacePeers bool
	Peers        []PeerChange
}

// PeerChange is the part of a Change about one peer, identified by its public
// key. The engine applies it as follows:
//
//   - Remove: remove the peer if it exists (with its allowed IPs). A Remove
//     entry has no other field set.
//   - UpdateOnly: if the peer does not exist, ignore the whole entry.
//     Otherwise (and without UpdateOnly) create the peer if needed, then:
//   - PresharedKey, Endpoint, PersistentKeepalive: set each one that is not
//     nil. Turning persistent keepalive on from off sends a keepalive at once.
//   - ReplaceAllowedIPs: remove all of the peer's allowed IPs first.
//   - AllowedIPs, in order: insert each prefix for this peer (moving it from
//     any other peer), or with Remove delete it if it belongs to this peer.
//
// The parser folds the order of the request into this shape, keeping
// wireguard-go's effect: lines of a peer before remove=true become an entry
// of their own ahead of the Remove entry; an allowed_ip line before
// replace_allowed_ips=true becomes an insert followed by a removal (the
// prefix was taken from its owner, then dropped). Lines after remove=true
// are checked but not recorded. One difference remains: wireguard-go applies
// the lines before update_only=true to a peer it then drops (keeping the
// allowed IPs it took from others), where warren ignores the whole entry.
type PeerChange struct {
	PublicKey           crypto.PublicKey
	Remove              bool
	UpdateOnly          bool
	PresharedKey        *crypto.PresharedKey // nil: unchanged; zero: none
	Endpoint            *netip.AddrPort      // nil: unchanged
	PersistentKeepalive *uint16              // seconds; nil: unchanged; 0: off
	ReplaceAllowedIPs   bool
	AllowedIPs          []AllowedIPChange
}

// AllowedIPChange adds or (with Remove, from "allowed_ip=-prefix") deletes
// one prefix of a peer. Prefix is as written: host bits may be set, and the
// allowed-IPs table clears them.
type AllowedIPChange struct {
	Prefix netip.Prefix
	Remove bool
}
