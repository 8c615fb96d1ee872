// Package crypto owns everything cryptographic in the WireGuard protocol:
// keys and their text forms, the Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s
// handshake, MAC1/MAC2 and cookies, transport keypairs with their nonce
// counters, the replay window and TAI64N timestamps.
//
// It is pure: it does no I/O, starts no goroutines and reads no clock. Time
// (now time.Time) and randomness (rand io.Reader, crypto/rand.Reader in
// production) are passed in, so tests are deterministic. Every function that
// takes bytes from the network accepts arbitrary input: bad input returns
// one of the Err* sentinel values below (a drop reason, compare with ==),
// never panics and never changes state.
//
// # Overview for the engine
//
// Keys (keys.go):
//
//	type PrivateKey, PublicKey, PresharedKey [32]byte
//	NewPrivateKey(rand) / NewPresharedKey(rand); (PrivateKey).PublicKey()
//	ParsePrivateKey/ParsePublicKey/ParsePresharedKey(base64), ...Hex(UAPI hex)
//	String() (base64), Hex(), IsZero(), Equal() (constant time), Zero()
//
// Messages (message.go): sizes, types and the first dispatch step.
//
//	type MessageType: MessageInitiation (1), MessageResponse (2),
//	    MessageCookieReply (3), MessageData (4)
//	InitiationSize 148, ResponseSize 92, CookieReplySize 64,
//	DataHeaderSize 16, TagSize 16, DataOverhead 32 (= KeepaliveSize)
//	Parse(msg) (MessageType, error)      // size, type, reserved bytes; no crypto
//	ReceiverIndex(msg) uint32            // types 2, 3, 4, after Parse
//	SenderIndex(msg) uint32              // types 1, 2, after Parse
//	RandomIndex(rand) (uint32, error)    // a fresh sender index (P13)
//
// Identity (identity.go): our static key, the MAC1 key for messages sent to
// us and the responder's cookie state. Safe for concurrent use. Create a new
// Identity when the private key changes and hand it to every Handshake with
// SetIdentity.
//
//	NewIdentity(PrivateKey) *Identity; (id).PublicKey()
//	(id).CheckMAC1(msg) bool                         // cheap, before any X25519
//	(id).CheckMAC2(msg, src netip.AddrPort, now) bool
//	(id).CreateCookieReply(dst, msg, src, now, rand) error   // dst[:64]
//	(id).ConsumeInitiation(msg, now, lookup func(PublicKey) *Handshake) (*Handshake, error)
//
// Handshake (handshake.go): the per-peer handshake state machine plus the
// initiator side of the cookie mechanism (the last cookie received and the
// MAC1 of the last message sent). Safe for concurrent use (internally
// locked). The engine owns the index table: it picks a fresh random sender
// index for every message it creates and passes it in as localIndex.
//
//	NewHandshake(id, remote PublicKey, psk PresharedKey) *Handshake
//	(h).RemoteStatic() PublicKey; (h).SetPresharedKey(psk); (h).SetIdentity(id)
//	(h).CreateInitiation(dst, now, rand, localIndex) error    // dst[:148], MACs added
//	(h).CreateResponse(dst, now, rand, localIndex) error      // dst[:92], after ConsumeInitiation
//	(h).ConsumeResponse(msg) error                            // after CreateInitiation
//	(h).BeginSession(now) (*Keypair, error)                   // after CreateResponse or ConsumeResponse
//	(h).ConsumeCookieReply(msg, now) error                    // for the last message we sent, once
//	(h).Clear()                                               // wipe ephemeral state
//
// The engine's receive path for handshake messages, in order: Parse; for
// types 1 and 2 CheckMAC1 (drop on false, before any X25519); under load,
// CheckMAC2 and, if it fails, CreateCookieReply to the source and stop;
// then ConsumeInitiation (type 1, then CreateResponse and BeginSession),
// ConsumeResponse (type 2, found by ReceiverIndex, then BeginSession) or
// ConsumeCookieReply (type 3, found by ReceiverIndex). Only a nil error
// may move timers or the endpoint.
//
// "now" passed to CreateInitiation is the wall clock: it becomes the TAI64N
// timestamp. All other "now" values only measure ages (cookie 115 s, cookie
// secret 120 s, initiation flood 20 ms) and may come from any clock that is
// consistent across calls.
//
// Keypair (keypair.go): one transport session.
//
//	LocalIndex, RemoteIndex uint32; Created time.Time; IsInitiator bool
//	(k).Seal(buf, n, mtu) (int, error)     // plaintext at buf[16:16+n], in place, 0 allocs
//	(k).Open(msg) ([]byte, uint64, error)   // in place; does NOT touch the replay window
//	(k).AcceptCounter(counter) bool          // replay window, only after Open succeeded
//	(k).NeedsRekey() bool                    // send counter past RekeyAfterMessages
//	(k).PresetSendCounter(n)                 // tests of the message limits only
//
// PaddedSize(n, mtu) gives the padded length; Seal pads the plaintext with zeros to a multiple of 16 bytes, but never
// past mtu (mtu <= 0 means no cap); so buf needs DataHeaderSize + padded
// length + TagSize bytes. It returns ErrRejectAfterMessages once the counter
// is exhausted; the engine must then stop using the keypair and handshake.
//
// Protocol constants: RekeyAfterMessages (2^60), RejectAfterMessages
// (2^64 - 2^13 - 1), CookieSecretMaxAge (120 s), CookieMaxAge (115 s),
// HandshakeInitiationRate (20 ms), ReplayWindowSize (8128). The timers of
// the whitepaper (Rekey-After-Time and so on) belong to the engine.
//
// Secrets held in crypto/ecdh keys and x/crypto AEADs (static key,
// ephemerals, transport keys) cannot be wiped in place; drop references
// to them (Handshake.Clear, discarding a Keypair) as soon as possible.
//
// Replay window (replay.go): ReplayWindow, RFC 6479 with an 8192-bit ring and
// an 8128-counter window, safe for concurrent use; Keypair.AcceptCounter uses
// one.
//
// TAI64N (tai64n.go): Timestamp, TAI64N(time.Time) Timestamp whitened to
// 2^24 ns, (Timestamp).After.
//
// KDF (kdf.go, unexported): HMAC-BLAKE2s and KDF1/2/3 of the whitepaper.
//
// # Drop reasons
//
// ErrShort, ErrSize, ErrType, ErrReserved (Parse); ErrMAC1 (cookie checks;
// CheckMAC2 answers with a bool); ErrDecrypt (any AEAD failure);
// ErrUnknownPeer, ErrReplayedTimestamp, ErrFlood, ErrState, ErrIndex,
// ErrInvalidPublicKey (handshake);
// ErrNoCookieRequest (cookie reply with no message outstanding);
// ErrCounter (a data counter at or past RejectAfterMessages);
// ErrRejectAfterMessages (Seal); ErrBufferTooSmall (programmer error by the
// caller, not a network drop).
package crypto
