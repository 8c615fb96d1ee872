package tunnel

import (
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// Protocol constants (whitepaper section 6, RELIABILITY.md section 3). The
// message limits live in package crypto (crypto.RekeyAfterMessages).
const (
	RekeyAfterTime      = 120 * time.Second                    // initiator rekeys when sending past this age
	RejectAfterTime     = 180 * time.Second                    // keypair unusable after this age
	RekeyAttemptTime    = 90 * time.Second                     // handshake attempts give up after this
	RekeyTimeout        = 5 * time.Second                      // retry interval of a handshake
	RekeyTimeoutJitter  = 334 * time.Millisecond               // exclusive upper bound of the retry jitter
	KeepaliveTimeout    = 10 * time.Second                     // passive keepalive after receiving
	ZeroKeyMaterialTime = 3 * RejectAfterTime                  // key material wiped after this
	maxRetransmits      = int(RekeyAttemptTime / RekeyTimeout) // 18 retries + first + last = 20 initiations
	// rekeyOnReceiveTime is the age at which an initiator that receives
	// data starts one last handshake (whitepaper 6.2: 180-10-5 s).
	rekeyOnReceiveTime = RejectAfterTime - KeepaliveTimeout - RekeyTimeout
	// underLoadAfterTime is how long cookies stay demanded after the
	// handshake queue dropped below the threshold (RELIABILITY D6).
	underLoadAfterTime = time.Second
)

// Tuning values.
const (
	// Offset is where packets start in adapter buffers: the data message
	// header is written in front of the packet so that it is sealed in place.
	Offset = crypto.DataHeaderSize

	maxPacketSize      = 65535                                                                // largest inner packet, bytes
	bufferSize         = Offset + maxPacketSize + crypto.TagSize + crypto.PaddingMultiple - 1 // one pooled packet buffer, bytes
	maxStagedPackets   = 128                                                                  // per peer, oldest dropped (D9)
	handshakeQueueSize = 1024                                                                 // pending handshake messages
	// handshakeMAC2QueueSize is the queue of messages with a valid mac2
	// under load, which a flood without cookies cannot fill.
	handshakeMAC2QueueSize = 256
	// underLoadPerSecond is the handshake load above which cookies are
	// demanded (D6): valid-mac1 initiations and responses per second. At
	// 65 us of X25519 each, 1000/s is 7 % of a core.
	underLoadPerSecond = 1000
	defaultBatchSize   = 128                    // packets per batch when a side reports 0
	defaultTickEvery   = 100 * time.Millisecond // timer resolution of the engine
	logEvery           = 10 * time.Second       // at most one warning of a kind per interval
	batchStatsEvery    = 5 * time.Second        // debug log of the batch sizes
)

// Error handling of the loops (RELIABILITY L8).
const (
	maxReadFailures = 10                     // consecutive failures before a loop stops
	readRetryDelay  = 333 * time.Millisecond // wait between failed reads
)
