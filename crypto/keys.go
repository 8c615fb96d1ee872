package crypto

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/curve25519"
)

// KeySize is the size of every key type in bytes.
const KeySize = 32

// PrivateKey is a clamped Curve25519 private key.
type PrivateKey [KeySize]byte

// PublicKey is a Curve25519 public key. Low-order points are valid values
// here; they merely never complete a handshake.
type PublicKey [KeySize]byte

// PresharedKey is the optional symmetric key mixed into the handshake
// (Noise psk2). The zero value means "no preshared key".
type PresharedKey [KeySize]byte

// ErrKeyFormat is wrapped by every key parser on malformed input.
var ErrKeyFormat = errors.New("invalid key")

// NewPrivateKey reads 32 bytes from rand and clamps them.
func NewPrivateKey(rand io.Reader) (PrivateKey, error) {
	var k PrivateKey
	if _, err := io.ReadFull(rand, k[:]); err != nil {
		return PrivateKey{}, fmt.Errorf("generate private key: %w", err)
	}
	k.clamp()
	return k, nil
}

// NewPresharedKey reads 32 random bytes from rand.
func NewPresharedKey(rand io.Reader) (PresharedKey, error) {
	var k PresharedKey
	if _, err := io.ReadFull(rand, k[:]); err != nil {
		return PresharedKey{}, fmt.Errorf("generate preshared key: %w", err)
	}
	return k, nil
}

// clamp applies the Curve25519 clamping (RFC 7748 section 5), as wg does.
func (k *PrivateKey) clamp() {
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
}

// PublicKey returns the public key of k.
func (k PrivateKey) PublicKey() PublicKey {
	var p PublicKey
	curve25519.ScalarBaseMult((*[32]byte)(&p), (*[32]byte)(&k))
	return p
}

// ParsePrivateKey parses the 44-character base64 form used by wg and clamps
// the result, so a key written with unclamped bits reads back clamped.
func ParsePrivateKey(s string) (PrivateKey, error) {
	var k PrivateKey
	if err := parseBase64(k[:], s); err != nil {
		return PrivateKey{}, err
	}
	k.clamp()
	return k, nil
}

// ParsePublicKey parses the 44-character base64 form used by wg.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	err := parseBase64(k[:], s)
	return k, err
}

// ParsePresharedKey parses the 44-character base64 form used by wg.
func ParsePresharedKey(s string) (PresharedKey, error) {
	var k PresharedKey
	err := parseBase64(k[:], s)
	return k, err
}

// ParsePrivateKeyHex parses the 64-character lowercase hex form of the UAPI
// and clamps the result.
func ParsePrivateKeyHex(s string) (PrivateKey, error) {
	var k PrivateKey
	if err := parseHex(k[:], s); err != nil {
		return PrivateKey{}, err
	}
	k.clamp()
	return k, nil
}

// ParsePublicKeyHex parses the 64-character lowercase hex form of the UAPI.
func ParsePublicKeyHex(s string) (PublicKey, error) {
	var k PublicKey
	err := parseHex(k[:], s)
	return k, err
}

// ParsePresharedKeyHex parses the 64-character lowercase hex form of the UAPI.
func ParsePresharedKeyHex(s string) (PresharedKey, error) {
	var k PresharedKey
	err := parseHex(k[:], s)
	return k, err
}

func parseBase64(dst []byte, s string) error {
	if len(s) != base64.StdEncoding.EncodedLen(KeySize) {
		return fmt.Errorf("%w: want 44 base64 characters, got %d characters", ErrKeyFormat, len(s))
	}
	var buf [KeySize + 2]byte
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil || n != KeySize {
		return fmt.Errorf("%w: not valid base64", ErrKeyFormat)
	}
	copy(dst, buf[:KeySize])
	clear(buf[:])
	return nil
}

func parseHex(dst []byte, s string) error {
	if len(s) != hex.EncodedLen(KeySize) {
		return fmt.Errorf("%w: want 64 hex characters, got %d characters", ErrKeyFormat, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w: not lowercase hex", ErrKeyFormat)
		}
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("%w: not lowercase hex", ErrKeyFormat)
	}
	return nil
}

// String returns the base64 form used by wg.
func (k PrivateKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// String returns the base64 form used by wg.
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// String returns the base64 form used by wg.
func (k PresharedKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex returns the lowercase hex form used by the UAPI.
func (k PrivateKey) Hex() string { return hex.EncodeToString(k[:]) }

// Hex returns the lowercase hex form used by the UAPI.
func (k PublicKey) Hex() string { return hex.EncodeToString(k[:]) }

// Hex returns the lowercase hex form used by the UAPI.
func (k PresharedKey) Hex() string { return hex.EncodeToString(k[:]) }

var zeroKey [KeySize]byte

// IsZero reports whether k is all zeros (unset), in constant time.
func (k PrivateKey) IsZero() bool { return subtle.ConstantTimeCompare(k[:], zeroKey[:]) == 1 }

// IsZero reports whether k is all zeros (unset), in constant time.
func (k PublicKey) IsZero() bool { return subtle.ConstantTimeCompare(k[:], zeroKey[:]) == 1 }

// IsZero reports whether k is all zeros (no preshared key), in constant time.
func (k PresharedKey) IsZero() bool { return subtle.ConstantTimeCompare(k[:], zeroKey[:]) == 1 }

// Equal reports whether k and o are equal, in constant time.
func (k PrivateKey) Equal(o PrivateKey) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// Equal reports whether k and o are equal, in constant time.
func (k PublicKey) Equal(o PublicKey) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// Equal reports whether k and o are equal, in constant time.
func (k PresharedKey) Equal(o PresharedKey) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// Zero overwrites k with zeros.
func (k *PrivateKey) Zero() { clear(k[:]) }

// Zero overwrites k with zeros.
func (k *PresharedKey) Zero() { clear(k[:]) }
