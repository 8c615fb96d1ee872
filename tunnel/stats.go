package tunnel

import (
	"encoding/base64"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// DropReason says why the engine discarded a packet. Each reason has its own
// counter (see Engine.Drops).
type DropReason int

// Drop reasons, outbound first.
const (
	DropNoRoute            DropReason = iota // outbound destination matches no peer's allowed IPs
	DropNoEndpoint                           // peer has no known endpoint yet
	DropStagedOverflow                       // staged queue full: oldest packet dropped (D9)
	DropStagedPurged                         // staged packets discarded on give-up, Down or removal
	DropDown                                 // engine is down
	DropSendError                            // the transport failed to send
	DropShort                                // datagram shorter than any message (M1)
	DropUnknownType                          // unknown type, reserved bits set or wrong size (M2-M4)
	DropUnknownIndex                         // data for an unknown receiver index (M5)
	DropAuthFailed                           // data failed to authenticate (M6)
	DropReplay                               // data counter already seen or outside the window (R4)
	DropExpired                              // data under a keypair older than Reject-After-Time (R7)
	DropFrameError                           // authenticated inner packet is neither IPv4 nor IPv6 (M7)
	DropLengthError                          // inner IP length inconsistent with the payload (M8)
	DropSourceCheck                          // inner source not in the sender's allowed IPs (M9, N6)
	DropHandshakeQueueFull                   // handshake queue full (D4)
	DropBadMAC                               // handshake message with a bad mac1 or, under load, mac2
	DropHandshakeInvalid                     // handshake message that fails to authenticate or is stale (P10, R8)
	DropWriteError                           // the adapter failed to write
	DropRateLimited                          // handshake over the per-source limit under load (D1)
	DropAdapterMalformed                     // the adapter read a malformed packet and discarded it
	DropCookieReply                          // under load, a handshake message without a valid mac2, answered with a cookie reply (D5)
	DropCookieRateLimited                    // under load, a handshake message without a valid mac2 over its source's cookie limit (D1)
	DropModeMismatch                         // layer 2 mode: an IP packet from a peer in TUN mode (T3)
	DropFrameSize                            // layer 2 mode: a frame read from the TAP shorter than an Ethernet header or longer than the MTU allows (T4)
	DropEtherType                            // layer 2 mode: a frame from a peer with an EtherType other than IPv4, IPv6 and ARP (T5)
	DropSpoofedMAC                           // layer 2 mode: a source MAC outside the peer's AllowedMACs, listed in another peer's, or a group address (T1)
	DropMACTableFull                         // layer 2 mode: the source MAC could not be learned, the MAC table or the peer's share of it being full
	DropSplitHorizon                         // layer 2 mode: a frame from a peer for a MAC behind another peer, without Forward
	DropLocalDestination                     // layer 2 mode: a frame read from the TAP for a MAC on this side
	DropPathMTU                              // outbound packet over the peer's path MTU, answered with ICMP where the RFCs allow (pmtu.go)
	numDropReasons
)

var dropNames = [numDropReasons]string{
	"no_route", "no_endpoint", "staged_overflow", "staged_purged", "down", "send_error",
	"short", "unknown_type", "unknown_index", "auth_failed", "replay", "expired",
	"frame_error", "length_error", "source_check", "handshake_queue_full", "bad_mac",
	"handshake_invalid", "write_error", "rate_limited", "adapter_malformed",
	"cookie_reply", "cookie_rate_limited", "mode_mismatch", "frame_size", "ethertype",
	"spoofed_mac", "mac_table_full", "split_horizon", "local_destination",
	"path_mtu",
}

// String returns the reason as a snake_case word.
func (r DropReason) String() string {
	if r < 0 || r >= numDropReasons {
		return "unknown"
	}
	return dropNames[r]
}

// dropCounters counts drops by reason; the zero value is ready.
type dropCounters [numDropReasons]atomic.Uint64

func (d *dropCounters) add(r DropReason, n uint64) { d[r].Add(n) }

// PeerStats is a snapshot of one peer for `warren show` and UAPI get.
type PeerStats struct {
	PublicKey     crypto.PublicKey
	Endpoint      netip.AddrPort // zero when unknown
	LastHandshake time.Time      // wall time of the latest completed handshake; zero if none
	TxBytes       uint64         // UDP payload bytes sent, as wg counts them
	RxBytes       uint64         // UDP payload bytes received and authenticated
}

// rateLimitedLog logs at most once per logEvery per key so that a flood of
// bad input cannot flood the log.
type rateLimitedLog struct {
	log   *slog.Logger
	clock Clock
	mu    sync.Mutex // guards last
	last  map[string]time.Duration
}

func (r *rateLimitedLog) warn(key, msg string, args ...any) {
	now := r.clock.Now()
	r.mu.Lock()
	t, ok := r.last[key]
	if ok && now-t < logEvery {
		r.mu.Unlock()
		return
	}
	r.last[key] = now
	r.mu.Unlock()
	r.log.Warn(msg, args...)
}

// logLimit lets one log line of a kind through per logEvery, for one peer;
// the zero value is ready. It is lock-free so that it costs nothing where
// it is never reached.
type logLimit struct {
	last atomic.Int64 // Clock.Now of the last line let through, plus 1; 0: none yet
}

// allow reports whether a line may be logged at now, and if so records it.
func (l *logLimit) allow(now time.Duration) bool {
	for {
		last := l.last.Load()
		if last != 0 && now-time.Duration(last-1) < logEvery {
			return false
		}
		if l.last.CompareAndSwap(last, int64(now)+1) {
			return true
		}
	}
}

// shortKey is pk as wireguard-go abbreviates it in logs: the first and
// last four characters of its base64 form.
func shortKey(pk crypto.PublicKey) string {
	var b [44]byte
	base64.StdEncoding.Encode(b[:], pk[:])
	return string(b[:4]) + "…" + string(b[39:43])
}
