package crypto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func TestKeyText(t *testing.T) {
	for range 20 {
		priv, err := NewPrivateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub := priv.PublicKey()
		psk, err := NewPresharedKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ParsePrivateKey(priv.String()); err != nil || !got.Equal(priv) {
			t.Errorf("ParsePrivateKey(%q) = %v, %v", priv, got, err)
		}
		if got, err := ParsePrivateKeyHex(priv.Hex()); err != nil || !got.Equal(priv) {
			t.Errorf("ParsePrivateKeyHex(%q) = %v, %v", priv.Hex(), got, err)
		}
		if got, err := ParsePublicKey(pub.String()); err != nil || !got.Equal(pub) {
			t.Errorf("ParsePublicKey(%q) = %v, %v", pub, got, err)
		}
		if got, err := ParsePublicKeyHex(pub.Hex()); err != nil || !got.Equal(pub) {
			t.Errorf("ParsePublicKeyHex(%q) = %v, %v", pub.Hex(), got, err)
		}
		if got, err := ParsePresharedKey(psk.String()); err != nil || !got.Equal(psk) {
			t.Errorf("ParsePresharedKey(%q) = %v, %v", psk, got, err)
		}
		if got, err := ParsePresharedKeyHex(psk.Hex()); err != nil || !got.Equal(psk) {
			t.Errorf("ParsePresharedKeyHex(%q) = %v, %v", psk.Hex(), got, err)
		}
		if priv[0]&7 != 0 || priv[31]&0xc0 != 0x40 {
			t.Errorf("NewPrivateKey = %x: not clamped", priv[:])
		}
	}
}

// TestClampOnParse is P14: a private key whose base64 starts with "/" reads
// back starting with "+" (low three bits cleared).
func TestClampOnParse(t *testing.T) {
	in := "/" + strings.Repeat("A", 42) + "="
	k, err := ParsePrivateKey(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.String(); got[0] != '+' {
		t.Errorf("ParsePrivateKey(%q).String() = %q, want a leading '+'", in, got)
	}
	if got := k.String(); !strings.HasSuffix(got, "EA=") {
		t.Errorf("ParsePrivateKey(%q).String() = %q, want bit 6 of the last byte set", in, got)
	}
	hk, err := ParsePrivateKeyHex("ff" + strings.Repeat("00", 31))
	if err != nil || hk.Hex() != "f8"+strings.Repeat("00", 30)+"40" {
		t.Errorf("ParsePrivateKeyHex clamping = %s, %v", hk.Hex(), err)
	}
}

func TestKeyParseErrors(t *testing.T) {
	valid := strings.Repeat("A", 43) + "="
	validHex := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		in   string
		hex  bool
	}{
		{name: "empty", in: ""},
		{name: "short", in: valid[:43]},
		{name: "long", in: valid + "A"},
		{name: "bad char", in: "*" + valid[1:]},
		{name: "no padding", in: strings.Repeat("A", 44)},
		// Strict decoding refuses non-zero bits after the 32nd byte.
		{name: "non-canonical", in: strings.Repeat("A", 42) + "B="},
		{name: "hex empty", in: "", hex: true},
		{name: "hex short", in: validHex[:62], hex: true},
		{name: "hex upper", in: strings.ToUpper(validHex), hex: true},
		{name: "hex bad", in: "zz" + validHex[2:], hex: true},
		{name: "hex base64", in: valid, hex: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var errs []error
			if tc.hex {
				_, e1 := ParsePrivateKeyHex(tc.in)
				_, e2 := ParsePublicKeyHex(tc.in)
				_, e3 := ParsePresharedKeyHex(tc.in)
				errs = []error{e1, e2, e3}
			} else {
				_, e1 := ParsePrivateKey(tc.in)
				_, e2 := ParsePublicKey(tc.in)
				_, e3 := ParsePresharedKey(tc.in)
				errs = []error{e1, e2, e3}
			}
			for _, err := range errs {
				if !errors.Is(err, ErrKeyFormat) {
					t.Errorf("parse(%q) error = %v, want ErrKeyFormat", tc.in, err)
				}
			}
		})
	}
}

func TestKeyZeroEqual(t *testing.T) {
	var k PrivateKey
	if !k.IsZero() {
		t.Error("zero PrivateKey: IsZero() = false")
	}
	k, _ = NewPrivateKey(rand.Reader)
	if k.IsZero() || k.PublicKey().IsZero() {
		t.Error("random key reports IsZero")
	}
	k2 := k
	k2[5] ^= 1
	if k.Equal(k2) || !k.Equal(k) {
		t.Error("PrivateKey.Equal wrong")
	}
	k.Zero()
	if !k.IsZero() {
		t.Error("PrivateKey.Zero left bytes")
	}
	p, _ := NewPresharedKey(rand.Reader)
	p.Zero()
	if !p.IsZero() {
		t.Error("PresharedKey.Zero left bytes")
	}
	if _, err := NewPrivateKey(bytes.NewReader(nil)); err == nil {
		t.Error("NewPrivateKey on empty reader: no error")
	}
}
