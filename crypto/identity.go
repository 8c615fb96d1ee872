package crypto

import (
	"crypto/ecdh"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
)

// Cookie timing (whitepaper 5.4.7; the kernel's cookie.c).
const (
	CookieSecretMaxAge = 120 * time.Second // the responder's secret rotates after this
	CookieMaxAge       = 115 * time.Second // an initiator uses a cookie for less than this (120 s - 5 s latency)
)

// Drop reasons for MACs and cookies. Callers compare with ==.
var (
	ErrMAC1            = errors.New("bad mac1")
	ErrNoCookieRequest = errors.New("cookie reply with no message outstanding")
	ErrBufferTooSmall  = errors.New("buffer too small")
)

// Identity is our static key pair with what derives from it: the MAC1 key
// and cookie encryption key for messages sent to us, and the responder's
// cookie secret. It is safe for concurrent use.
type Identity struct {
	private   *ecdh.PrivateKey
	public    PublicKey
	mac1Key   [hashSize]byte // HASH("mac1----" || public)
	cookieKey [hashSize]byte // HASH("cookie--" || public), XChaCha20-Poly1305 key

	// mu guards the cookie secret.
	mu        sync.RWMutex
	secret    [hashSize]byte
	secretSet time.Time
	hasSecret bool
}

// NewIdentity returns the identity of the private key priv.
func NewIdentity(priv PrivateKey) *Identity {
	key := ecdhKey(&priv)
	id := &Identity{private: key, public: PublicKey(key.PublicKey().Bytes())}
	macKeys(&id.mac1Key, &id.cookieKey, &id.public)
	return id
}

// macKeys derives the MAC1 and cookie keys of the holder of pub.
func macKeys(mac1Key, cookieKey *[hashSize]byte, pub *PublicKey) {
	var buf [8 + KeySize]byte
	copy(buf[8:], pub[:])
	copy(buf[:], labelMAC1)
	*mac1Key = blake2s.Sum256(buf[:])
	copy(buf[:], labelCookie)
	*cookieKey = blake2s.Sum256(buf[:])
}

// PublicKey returns our public key.
func (id *Identity) PublicKey() PublicKey { return id.public }

// Wipe zeroes the cookie secret; cookies given out no longer validate and
// the next cookie reply draws a new secret. The private key itself lives in
// a crypto/ecdh value, which keeps its own copy that cannot be wiped. The
// engine calls Wipe when it replaces the identity and on Close.
func (id *Identity) Wipe() {
	id.mu.Lock()
	clear(id.secret[:])
	id.hasSecret = false
	id.mu.Unlock()
}

// CheckMAC1 reports whether the handshake message msg (type 1 or 2, already
// through Parse) carries a valid mac1 for our public key. It costs one
// BLAKE2s over the message and must come before any Curve25519 work.
func (id *Identity) CheckMAC1(msg []byte) bool {
	if len(msg) < 2*macSize {
		return false
	}
	off := len(msg) - 2*macSize
	var m [macSize]byte
	mac(&m, id.mac1Key[:], msg[:off])
	return equal(m[:], msg[off:off+macSize])
}

// CheckMAC2 reports whether msg carries a valid mac2, made with a cookie we
// gave to src (address and port) under the current secret. A secret older
// than CookieSecretMaxAge at now validates nothing.
func (id *Identity) CheckMAC2(msg []byte, src netip.AddrPort, now time.Time) bool {
	if len(msg) < 2*macSize {
		return false
	}
	var cookie [macSize]byte
	id.mu.RLock()
	ok := id.cookieLocked(&cookie, src, now)
	id.mu.RUnlock()
	if !ok {
		return false
	}
	off := len(msg) - macSize
	var m [macSize]byte
	mac(&m, cookie[:], msg[:off])
	return equal(m[:], msg[off:])
}

// cookieLocked computes the cookie for src from the current secret and
// reports whether the secret is still valid at now. id.mu must be held.
func (id *Identity) cookieLocked(cookie *[macSize]byte, src netip.AddrPort, now time.Time) bool {
	if !id.hasSecret || now.Sub(id.secretSet) >= CookieSecretMaxAge || now.Before(id.secretSet) {
		return false
	}
	// The cookie binds the source IP and UDP port (big-endian), as the kernel.
	var b [18]byte
	a := src.Addr().Unmap()
	var n int
	if a.Is4() {
		a4 := a.As4()
		n = copy(b[:], a4[:])
	} else {
		a16 := a.As16()
		n = copy(b[:], a16[:])
	}
	binary.BigEndian.PutUint16(b[n:], src.Port())
	mac(cookie, id.secret[:], b[:n+2])
	return true
}

// CreateCookieReply writes into dst[:CookieReplySize] the cookie reply to
// the handshake message msg (type 1 or 2, with a valid mac1) received from
// src. It rotates the cookie secret, drawn from rand, when it is older than
// CookieSecretMaxAge.
func (id *Identity) CreateCookieReply(dst, msg []byte, src netip.AddrPort, now time.Time, rand io.Reader) error {
	if len(dst) < CookieReplySize {
		return ErrBufferTooSmall
	}
	if len(msg) < 8+2*macSize {
		return ErrShort
	}
	dst = dst[:CookieReplySize]
	var cookie [macSize]byte
	id.mu.RLock()
	ok := id.cookieLocked(&cookie, src, now)
	id.mu.RUnlock()
	if !ok {
		id.mu.Lock()
		if !id.cookieLocked(&cookie, src, now) {
			if _, err := io.ReadFull(rand, id.secret[:]); err != nil {
				id.mu.Unlock()
				return err
			}
			id.secretSet = now
			id.hasSecret = true
			id.cookieLocked(&cookie, src, now)
		}
		id.mu.Unlock()
	}
	binary.LittleEndian.PutUint32(dst, uint32(MessageCookieReply))
	binary.LittleEndian.PutUint32(dst[4:], SenderIndex(msg))
	nonce := dst[8:32]
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return err
	}
	off := len(msg) - 2*macSize
	aead, _ := chacha20poly1305.NewX(id.cookieKey[:])
	aead.Seal(dst[32:32], nonce, cookie[:], msg[off:off+macSize])
	return nil
}
