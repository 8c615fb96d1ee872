package crypto

import (
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// HandshakeInitiationRate is the minimum time between two initiations
// accepted from one peer (the kernel's and wireguard-go's flood guard).
const HandshakeInitiationRate = 20 * time.Millisecond

// Drop reasons for handshake messages. Callers compare with ==.
var (
	ErrDecrypt           = errors.New("authentication failed")
	ErrUnknownPeer       = errors.New("unknown peer")
	ErrReplayedTimestamp = errors.New("initiation timestamp not newer than the last accepted")
	ErrFlood             = errors.New("initiations from the peer too frequent")
	ErrState             = errors.New("handshake not in the state for this message")
	ErrIndex             = errors.New("receiver index does not match the handshake")
	ErrInvalidPublicKey  = errors.New("peer public key yields no shared secret")
)

// handshakeState is where a Handshake stands (whitepaper 5.4).
type handshakeState uint8

const (
	stateZeroed handshakeState = iota
	stateInitiationCreated
	stateInitiationConsumed
	stateResponseCreated
	stateResponseConsumed
)

// Handshake is the Noise_IKpsk2 handshake state with one peer, together
// with the initiator side of the cookie mechanism for that peer. It is safe
// for concurrent use.
//
// The flow, initiator on the left, responder on the right:
//
//	CreateInitiation  ──type 1──▶  Identity.ConsumeInitiation
//	                                CreateResponse
//	ConsumeResponse   ◀──type 2──
//	BeginSession                    BeginSession
//
// A Handshake whose remote key is a low-order point is valid but never
// completes: every step returns ErrInvalidPublicKey.
type Handshake struct {
	// Fixed at construction.
	remoteStatic    PublicKey
	remoteMAC1Key   [hashSize]byte // MAC1 key for messages we send to the peer
	remoteCookieKey [hashSize]byte // decrypts the peer's cookie replies

	// mu guards everything below.
	mu  sync.Mutex
	id  *Identity
	psk PresharedKey
	// staticStatic is DH(our static, remote static), computed at the
	// first handshake that needs it rather than at construction, so that
	// adding a peer costs no X25519 (100,000 peers in one set).
	staticStatic    [hashSize]byte
	staticStaticSet bool // staticStatic and staticStaticOK are computed
	staticStaticOK  bool // false for a low-order remote key

	state           handshakeState
	hash            [hashSize]byte
	chainKey        [hashSize]byte
	localEphemeral  *ecdh.PrivateKey // nil when none
	remoteEphemeral PublicKey
	localIndex      uint32
	remoteIndex     uint32

	lastTimestamp     Timestamp // newest initiation timestamp accepted
	lastInitiation    time.Time // when it was accepted, for the flood guard
	hasLastInitiation bool

	// Initiator side of cookies (whitepaper 5.4.7).
	cookie      [macSize]byte
	cookieSet   time.Time
	hasCookie   bool
	lastMAC1    [macSize]byte // mac1 of the last message we sent
	hasLastMAC1 bool          // cleared when a cookie reply for it is consumed
}

// NewHandshake returns the handshake state for the peer with public key
// remote, optionally with a preshared key (zero for none).
func NewHandshake(id *Identity, remote PublicKey, psk PresharedKey) *Handshake {
	h := &Handshake{remoteStatic: remote, psk: psk}
	macKeys(&h.remoteMAC1Key, &h.remoteCookieKey, &remote)
	h.setIdentityLocked(id)
	return h
}

// RemoteStatic returns the peer's public key.
func (h *Handshake) RemoteStatic() PublicKey { return h.remoteStatic }

// SetPresharedKey replaces the preshared key (zero for none). It applies to
// the next handshake.
func (h *Handshake) SetPresharedKey(psk PresharedKey) {
	h.mu.Lock()
	h.psk = psk
	h.mu.Unlock()
}

// SetIdentity switches to a new local identity (after a private key change)
// and abandons any handshake in flight.
func (h *Handshake) SetIdentity(id *Identity) {
	h.mu.Lock()
	h.setIdentityLocked(id)
	h.clearLocked()
	h.mu.Unlock()
}

// setIdentityLocked sets id and forgets the static-static secret of the
// previous one. h.mu must be held (or h not yet shared).
func (h *Handshake) setIdentityLocked(id *Identity) {
	h.id = id
	clear(h.staticStatic[:])
	h.staticStaticSet, h.staticStaticOK = false, false
}

// staticStaticLocked computes the static-static secret if it is not yet
// and reports whether it is usable. h.mu must be held.
func (h *Handshake) staticStaticLocked() bool {
	if !h.staticStaticSet {
		h.staticStatic, h.staticStaticOK = sharedSecret(h.id.private, &h.remoteStatic)
		h.staticStaticSet = true
	}
	return h.staticStaticOK
}

// Wipe zeroes every secret h holds (the static-static secret, the
// preshared key, the handshake in flight and any cookie) and leaves h
// unable to complete a handshake until SetIdentity. The engine calls it when
// the peer is removed or the engine closed. Go gives no guarantee that no
// copy of them survives elsewhere (RELIABILITY P18).
func (h *Handshake) Wipe() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clearLocked()
	clear(h.staticStatic[:])
	h.staticStaticSet, h.staticStaticOK = true, false
	clear(h.psk[:])
	clear(h.cookie[:])
	h.hasCookie = false
	clear(h.lastMAC1[:])
	h.hasLastMAC1 = false
}

// Clear wipes the ephemeral state of a handshake in flight. The replay
// guard (last timestamp) and any cookie survive.
func (h *Handshake) Clear() {
	h.mu.Lock()
	h.clearLocked()
	h.mu.Unlock()
}

// clearLocked wipes the in-flight state. h.mu must be held.
func (h *Handshake) clearLocked() {
	clear(h.hash[:])
	clear(h.chainKey[:])
	h.localEphemeral = nil
	clear(h.remoteEphemeral[:])
	h.localIndex, h.remoteIndex = 0, 0
	h.state = stateZeroed
}

// CreateInitiation writes a handshake initiation, MACs included, into
// dst[:InitiationSize]. now is the wall clock (it becomes the TAI64N
// timestamp) and dates the cookie used for mac2; rand provides the
// ephemeral key; localIndex is the sender index the engine chose.
func (h *Handshake) CreateInitiation(dst []byte, now time.Time, rand io.Reader, localIndex uint32) error {
	if len(dst) < InitiationSize {
		return ErrBufferTooSmall
	}
	msg := dst[:InitiationSize]
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.staticStaticLocked() {
		return ErrInvalidPublicKey
	}
	eph, ephPub, err := newEphemeral(rand)
	if err != nil {
		return err
	}
	var (
		hash     [hashSize]byte
		chainKey = initialChainKey
		key      [hashSize]byte
	)
	mixHash(&hash, &initialHash, h.remoteStatic[:])

	binary.LittleEndian.PutUint32(msg, uint32(MessageInitiation))
	binary.LittleEndian.PutUint32(msg[4:], localIndex)
	copy(msg[8:40], ephPub[:])
	kdf1(&chainKey, chainKey[:], ephPub[:])
	mixHash(&hash, &hash, ephPub[:])

	// Static key, encrypted under DH(ephemeral, remote static).
	ss, ok := sharedSecret(eph, &h.remoteStatic)
	if !ok {
		return ErrInvalidPublicKey
	}
	kdf2(&chainKey, &key, chainKey[:], ss[:])
	clear(ss[:])
	seal(msg[40:40], &key, nil, h.id.public[:], hash[:])
	mixHash(&hash, &hash, msg[40:88])

	// Timestamp, encrypted under DH(static, static).
	kdf2(&chainKey, &key, chainKey[:], h.staticStatic[:])
	ts := TAI64N(now)
	seal(msg[88:88], &key, nil, ts[:], hash[:])
	mixHash(&hash, &hash, msg[88:116])
	clear(key[:])

	h.createdLocked(msg, now, &hash, &chainKey, eph, localIndex, stateInitiationCreated)
	return nil
}

// ConsumeInitiation authenticates a handshake initiation addressed to id.
// lookup maps the initiator's public key to its Handshake (nil if unknown).
// On success the peer's Handshake is returned, ready for CreateResponse; on
// failure nothing changes. now is only compared with the previous accepted
// initiation of the peer (HandshakeInitiationRate).
func (id *Identity) ConsumeInitiation(msg []byte, now time.Time, lookup func(PublicKey) *Handshake) (*Handshake, error) {
	if t, err := Parse(msg); err != nil {
		return nil, err
	} else if t != MessageInitiation {
		return nil, ErrType
	}
	if !id.CheckMAC1(msg) {
		return nil, ErrMAC1
	}
	var (
		hash     [hashSize]byte
		chainKey = initialChainKey
		key      [hashSize]byte
		eph      PublicKey
		peerPub  PublicKey
		ts       Timestamp
	)
	copy(eph[:], msg[8:40])
	mixHash(&hash, &initialHash, id.public[:])
	kdf1(&chainKey, chainKey[:], eph[:])
	mixHash(&hash, &hash, eph[:])

	ss, ok := sharedSecret(id.private, &eph)
	if !ok {
		return nil, ErrInvalidPublicKey
	}
	kdf2(&chainKey, &key, chainKey[:], ss[:])
	clear(ss[:])
	if !open(peerPub[:0], &key, nil, msg[40:88], hash[:]) {
		return nil, ErrDecrypt
	}
	mixHash(&hash, &hash, msg[40:88])

	h := lookup(peerPub)
	if h == nil {
		return nil, ErrUnknownPeer
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.id != id {
		return nil, ErrUnknownPeer
	}
	if !h.staticStaticLocked() {
		return nil, ErrInvalidPublicKey
	}
	kdf2(&chainKey, &key, chainKey[:], h.staticStatic[:])
	if !open(ts[:0], &key, nil, msg[88:116], hash[:]) {
		return nil, ErrDecrypt
	}
	clear(key[:])
	mixHash(&hash, &hash, msg[88:116])

	if !ts.After(h.lastTimestamp) {
		return nil, ErrReplayedTimestamp
	}
	if h.hasLastInitiation {
		if d := now.Sub(h.lastInitiation); d >= 0 && d < HandshakeInitiationRate {
			return nil, ErrFlood
		}
	}

	h.hash, h.chainKey = hash, chainKey
	h.remoteEphemeral = eph
	h.remoteIndex = binary.LittleEndian.Uint32(msg[4:])
	h.localEphemeral = nil
	h.localIndex = 0
	h.lastTimestamp = ts
	h.lastInitiation, h.hasLastInitiation = now, true
	h.state = stateInitiationConsumed
	return h, nil
}

// CreateResponse writes the response to the initiation consumed last, MACs
// included, into dst[:ResponseSize]. now dates the cookie used for mac2;
// rand provides the ephemeral key; localIndex is the sender index the
// engine chose.
func (h *Handshake) CreateResponse(dst []byte, now time.Time, rand io.Reader, localIndex uint32) error {
	if len(dst) < ResponseSize {
		return ErrBufferTooSmall
	}
	msg := dst[:ResponseSize]
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state != stateInitiationConsumed {
		return ErrState
	}
	eph, ephPub, err := newEphemeral(rand)
	if err != nil {
		return err
	}
	hash, chainKey := h.hash, h.chainKey
	binary.LittleEndian.PutUint32(msg, uint32(MessageResponse))
	binary.LittleEndian.PutUint32(msg[4:], localIndex)
	binary.LittleEndian.PutUint32(msg[8:], h.remoteIndex)
	copy(msg[12:44], ephPub[:])
	mixHash(&hash, &hash, ephPub[:])
	kdf1(&chainKey, chainKey[:], ephPub[:])

	if !mixDH(&chainKey, eph, &h.remoteEphemeral) || !mixDH(&chainKey, eph, &h.remoteStatic) {
		return ErrInvalidPublicKey
	}
	key := mixPSK(&hash, &chainKey, &h.psk)
	seal(msg[44:44], &key, nil, nil, hash[:])
	mixHash(&hash, &hash, msg[44:60])
	clear(key[:])

	h.createdLocked(msg, now, &hash, &chainKey, eph, localIndex, stateResponseCreated)
	return nil
}

// ConsumeResponse authenticates a handshake response to our last
// initiation. The engine found h by ReceiverIndex(msg) and has checked mac1
// (it is checked again here). On failure nothing changes.
func (h *Handshake) ConsumeResponse(msg []byte) error {
	if t, err := Parse(msg); err != nil {
		return err
	} else if t != MessageResponse {
		return ErrType
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.id.CheckMAC1(msg) {
		return ErrMAC1
	}
	if h.state != stateInitiationCreated {
		return ErrState
	}
	if ReceiverIndex(msg) != h.localIndex {
		return ErrIndex
	}
	var eph PublicKey
	copy(eph[:], msg[12:44])
	hash, chainKey := h.hash, h.chainKey
	mixHash(&hash, &hash, eph[:])
	kdf1(&chainKey, chainKey[:], eph[:])

	if !mixDH(&chainKey, h.localEphemeral, &eph) || !mixDH(&chainKey, h.id.private, &eph) {
		return ErrInvalidPublicKey
	}
	key := mixPSK(&hash, &chainKey, &h.psk)
	ok := open(nil, &key, nil, msg[44:60], hash[:])
	clear(key[:])
	if !ok {
		return ErrDecrypt
	}
	mixHash(&hash, &hash, msg[44:60])

	h.hash, h.chainKey = hash, chainKey
	h.remoteIndex = SenderIndex(msg)
	h.state = stateResponseConsumed
	return nil
}

// BeginSession derives the transport keypair from a completed handshake
// (after ConsumeResponse as initiator, after CreateResponse as responder)
// and wipes the handshake state. now becomes Keypair.Created.
func (h *Handshake) BeginSession(now time.Time) (*Keypair, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var send, recv [hashSize]byte
	var initiator bool
	switch h.state {
	case stateResponseConsumed:
		kdf2(&send, &recv, h.chainKey[:], nil)
		initiator = true
	case stateResponseCreated:
		kdf2(&recv, &send, h.chainKey[:], nil)
	default:
		return nil, ErrState
	}
	kp := newKeypair(&send, &recv, now, initiator, h.localIndex, h.remoteIndex)
	clear(send[:])
	clear(recv[:])
	h.clearLocked()
	return kp, nil
}

// createdLocked commits the state of a message we created and adds its
// MACs. h.mu must be held.
func (h *Handshake) createdLocked(msg []byte, now time.Time, hash, chainKey *[hashSize]byte, eph *ecdh.PrivateKey, localIndex uint32, st handshakeState) {
	h.hash, h.chainKey = *hash, *chainKey
	h.localEphemeral = eph
	h.localIndex = localIndex
	h.state = st
	h.addMACsLocked(msg, now)
}

// addMACsLocked writes mac1 and mac2 into the handshake message msg and
// remembers mac1 for a cookie reply. h.mu must be held.
func (h *Handshake) addMACsLocked(msg []byte, now time.Time) {
	off1 := len(msg) - 2*macSize
	off2 := len(msg) - macSize
	var m [macSize]byte
	mac(&m, h.remoteMAC1Key[:], msg[:off1])
	copy(msg[off1:], m[:])
	h.lastMAC1, h.hasLastMAC1 = m, true
	if !h.hasCookie || now.Sub(h.cookieSet) >= CookieMaxAge || now.Before(h.cookieSet) {
		clear(msg[off2:])
		return
	}
	mac(&m, h.cookie[:], msg[:off2])
	copy(msg[off2:], m[:])
}

// ConsumeCookieReply stores the cookie from a cookie reply to the last
// handshake message we sent. Each such message accepts one cookie reply.
// now dates the cookie (it is used for CookieMaxAge).
func (h *Handshake) ConsumeCookieReply(msg []byte, now time.Time) error {
	if t, err := Parse(msg); err != nil {
		return err
	} else if t != MessageCookieReply {
		return ErrType
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.hasLastMAC1 {
		return ErrNoCookieRequest
	}
	var cookie [macSize]byte
	aead, _ := chacha20poly1305.NewX(h.remoteCookieKey[:])
	if _, err := aead.Open(cookie[:0], msg[8:32], msg[32:64], h.lastMAC1[:]); err != nil {
		return ErrDecrypt
	}
	h.cookie, h.cookieSet, h.hasCookie = cookie, now, true
	h.hasLastMAC1 = false
	return nil
}

// mixDH mixes DH(priv, pub) into chainKey and reports whether the result
// was usable (not the all-zero output of a low-order point).
func mixDH(chainKey *[hashSize]byte, priv *ecdh.PrivateKey, pub *PublicKey) bool {
	ss, ok := sharedSecret(priv, pub)
	if ok {
		kdf1(chainKey, chainKey[:], ss[:])
	}
	clear(ss[:])
	return ok
}

// mixPSK is the psk2 step of the response: it mixes the preshared key into
// chainKey and hash and returns the key for the empty AEAD.
func mixPSK(hash, chainKey *[hashSize]byte, psk *PresharedKey) [hashSize]byte {
	var tau, key [hashSize]byte
	kdf3(chainKey, &tau, &key, chainKey[:], psk[:])
	mixHash(hash, hash, tau[:])
	clear(tau[:])
	return key
}

// seal encrypts plaintext with ChaCha20-Poly1305 under key and appends the
// result to dst (handshake use: one key, one message).
func seal(dst []byte, key *[hashSize]byte, nonce []byte, plaintext, ad []byte) {
	aead, _ := chacha20poly1305.New(key[:])
	if nonce == nil {
		nonce = zeroNonce[:]
	}
	aead.Seal(dst, nonce, plaintext, ad)
}

// open decrypts ciphertext with ChaCha20-Poly1305 under key, appending to
// dst, and reports whether it authenticated.
func open(dst []byte, key *[hashSize]byte, nonce []byte, ciphertext, ad []byte) bool {
	aead, _ := chacha20poly1305.New(key[:])
	if nonce == nil {
		nonce = zeroNonce[:]
	}
	_, err := aead.Open(dst, nonce, ciphertext, ad)
	return err == nil
}
