package crypto

import (
	"crypto/ecdh"
	"crypto/subtle"
	"io"
	"sync/atomic"

	"golang.org/x/crypto/blake2s"
)

// Noise parameters and WireGuard's identifier strings (whitepaper 5.4).
const (
	noiseConstruction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
	wgIdentifier      = "WireGuard v1 zx2c4 Jason@zx2c4.com"
	labelMAC1         = "mac1----"
	labelCookie       = "cookie--"
)

const (
	hashSize  = blake2s.Size // 32 bytes
	blockSize = blake2s.BlockSize
)

var (
	initialChainKey [hashSize]byte // HASH(construction)
	initialHash     [hashSize]byte // HASH(chainKey || identifier)
	zeroNonce       [12]byte
)

func init() {
	initialChainKey = blake2s.Sum256([]byte(noiseConstruction))
	mixHash(&initialHash, &initialChainKey, []byte(wgIdentifier))
}

// mixHash sets dst = HASH(h || data). dst may alias h.
func mixHash(dst, h *[hashSize]byte, data []byte) {
	// The messages mix at most 48 bytes at a time; a stack buffer keeps this
	// free of allocations.
	var buf [hashSize + 64]byte
	if len(data) > 64 {
		d, _ := blake2s.New256(nil)
		d.Write(h[:])
		d.Write(data)
		d.Sum(dst[:0])
		return
	}
	n := copy(buf[:], h[:])
	n += copy(buf[n:], data)
	*dst = blake2s.Sum256(buf[:n])
	clear(buf[:])
}

// hmac sets sum = HMAC-BLAKE2s(key, in0 || in1) (RFC 2104), without
// allocating for the short inputs of the handshake.
func hmac(sum *[hashSize]byte, key, in0, in1 []byte) {
	var k [blockSize]byte
	if len(key) > blockSize {
		k2 := blake2s.Sum256(key)
		copy(k[:], k2[:])
	} else {
		copy(k[:], key)
	}
	var inner [hashSize]byte
	var buf [blockSize + 96]byte
	for i := range k {
		buf[i] = k[i] ^ 0x36
	}
	if len(in0)+len(in1) <= len(buf)-blockSize {
		n := blockSize + copy(buf[blockSize:], in0)
		n += copy(buf[n:], in1)
		inner = blake2s.Sum256(buf[:n])
	} else {
		d, _ := blake2s.New256(nil)
		d.Write(buf[:blockSize])
		d.Write(in0)
		d.Write(in1)
		d.Sum(inner[:0])
	}
	for i := range k {
		buf[i] = k[i] ^ 0x5c
	}
	copy(buf[blockSize:], inner[:])
	*sum = blake2s.Sum256(buf[:blockSize+hashSize])
	clear(buf[:])
	clear(k[:])
	clear(inner[:])
}

// kdf1, kdf2 and kdf3 are HKDF with HMAC-BLAKE2s, returning one, two or
// three 32-byte outputs (whitepaper 5.4 "KDF_n"). Outputs may alias key.
func kdf1(t0 *[hashSize]byte, key, input []byte) {
	var prk [hashSize]byte
	hmac(&prk, key, input, nil)
	hmac(t0, prk[:], []byte{1}, nil)
	clear(prk[:])
}

func kdf2(t0, t1 *[hashSize]byte, key, input []byte) {
	var prk [hashSize]byte
	hmac(&prk, key, input, nil)
	hmac(t0, prk[:], []byte{1}, nil)
	hmac(t1, prk[:], t0[:], []byte{2})
	clear(prk[:])
}

func kdf3(t0, t1, t2 *[hashSize]byte, key, input []byte) {
	var prk [hashSize]byte
	hmac(&prk, key, input, nil)
	hmac(t0, prk[:], []byte{1}, nil)
	hmac(t1, prk[:], t0[:], []byte{2})
	hmac(t2, prk[:], t1[:], []byte{3})
	clear(prk[:])
}

// x25519Ops counts the X25519 scalar multiplications of this package: the
// public key computed when a private key is parsed, and each shared secret.
var x25519Ops atomic.Uint64

// X25519Operations returns how many X25519 scalar multiplications the
// package has done since the process started. It lets a test show that a
// message cost none (RELIABILITY D5) and an operator see the handshake work.
func X25519Operations() uint64 { return x25519Ops.Load() }

// ecdhKey returns k as a crypto/ecdh key. Parsing computes the public key
// once; x/crypto's curve25519.ScalarMult would redo that on every call,
// doubling the cost of a handshake.
func ecdhKey(k *PrivateKey) *ecdh.PrivateKey {
	x25519Ops.Add(1)
	key, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil {
		panic("crypto: X25519 key of 32 bytes refused: " + err.Error()) // cannot happen
	}
	return key
}

// newEphemeral draws a clamped ephemeral key from rand.
func newEphemeral(rand io.Reader) (*ecdh.PrivateKey, PublicKey, error) {
	k, err := NewPrivateKey(rand)
	if err != nil {
		return nil, PublicKey{}, err
	}
	key := ecdhKey(&k)
	k.Zero()
	return key, PublicKey(key.PublicKey().Bytes()), nil
}

// sharedSecret returns X25519(priv, pub) and whether it is usable: a
// low-order pub yields all zeros, which the handshake refuses.
func sharedSecret(priv *ecdh.PrivateKey, pub *PublicKey) ([hashSize]byte, bool) {
	var ss [hashSize]byte
	p, err := ecdh.X25519().NewPublicKey(pub[:])
	if err != nil {
		return ss, false
	}
	x25519Ops.Add(1)
	out, err := priv.ECDH(p)
	if err != nil { // all-zero output: low-order point
		return ss, false
	}
	copy(ss[:], out)
	clear(out)
	return ss, true
}

// isZero reports whether b is all zeros, in constant time.
func isZero(b []byte) bool {
	var acc byte
	for _, x := range b {
		acc |= x
	}
	return subtle.ConstantTimeByteEq(acc, 0) == 1
}

// equal reports whether a and b are equal, in constant time.
func equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
