package tunnel

import (
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
	numDropReasons
)

var dropNames = [numDropReasons]string{
	"no_route", "no_endpoint", "staged_overflow", "staged_purged", "down", "send_error",
	"short", "unknown_type", "unknown_index", "auth_failed", "replay", "expired",
	"frame_error", "length_error", "source_check", "handshake_queue_full", "bad_mac",
	"handshake_invalid", "write_error", "rate_limited", "adapter_malformed",
	"cookie_reply", "cookie_rate_limited",
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
