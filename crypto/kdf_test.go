package crypto

import (
	"encoding/hex"
	"testing"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/curve25519"
)

// kdfVectors are the three vectors of wireguard-go's device/kdf_test.go
// (the kernel's selftest uses the same construction).
var kdfVectors = []struct {
	key, input, t0, t1, t2 string
}{
	{
		key:   "746573742d6b6579",
		input: "746573742d696e707574",
		t0:    "6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633",
		t1:    "df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a",
		t2:    "fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24",
	},
	{
		key:   "776972656775617264",
		input: "776972656775617264",
		t0:    "491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8",
		t1:    "1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f",
		t2:    "31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160",
	},
	{
		key:   "",
		input: "",
		t0:    "8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0",
		t1:    "58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e",
		t2:    "0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e",
	},
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKDF is P1: KDF1/2/3 on wireguard-go's vectors give the exact outputs.
func TestKDF(t *testing.T) {
	for _, tc := range kdfVectors {
		key, input := mustHex(t, tc.key), mustHex(t, tc.input)
		var t0, t1, t2 [hashSize]byte
		kdf3(&t0, &t1, &t2, key, input)
		got := [3]string{hex.EncodeToString(t0[:]), hex.EncodeToString(t1[:]), hex.EncodeToString(t2[:])}
		if want := [3]string{tc.t0, tc.t1, tc.t2}; got != want {
			t.Errorf("kdf3(%s, %s) = %v, want %v", tc.key, tc.input, got, want)
		}
		clear(t0[:])
		clear(t1[:])
		kdf2(&t0, &t1, key, input)
		if g := [2]string{hex.EncodeToString(t0[:]), hex.EncodeToString(t1[:])}; g != [2]string{tc.t0, tc.t1} {
			t.Errorf("kdf2(%s, %s) = %v", tc.key, tc.input, g)
		}
		clear(t0[:])
		kdf1(&t0, key, input)
		if g := hex.EncodeToString(t0[:]); g != tc.t0 {
			t.Errorf("kdf1(%s, %s) = %s, want %s", tc.key, tc.input, g, tc.t0)
		}
	}
}

// TestHMACLongInput checks the streaming fallbacks of hmac and mixHash
// (inputs longer than the stack buffers, keys longer than a block) against
// a plain construction.
func TestHMACLongInput(t *testing.T) {
	ref := func(key, data []byte) [hashSize]byte {
		var k [blockSize]byte
		if len(key) > blockSize {
			s := blake2s.Sum256(key)
			copy(k[:], s[:])
		} else {
			copy(k[:], key)
		}
		var ipad, opad []byte
		for _, b := range k {
			ipad = append(ipad, b^0x36)
			opad = append(opad, b^0x5c)
		}
		inner := blake2s.Sum256(append(ipad, data...))
		return blake2s.Sum256(append(opad, inner[:]...))
	}
	for _, n := range []int{0, 1, 32, 95, 96, 97, 200} {
		for _, kn := range []int{0, 32, 64, 65, 100} {
			key := make([]byte, kn)
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(i * 7)
			}
			for i := range key {
				key[i] = byte(i * 3)
			}
			var got [hashSize]byte
			hmac(&got, key, data, nil)
			if want := ref(key, data); got != want {
				t.Errorf("hmac(key %d bytes, data %d bytes) = %x, want %x", kn, n, got, want)
			}
		}
		var h, got [hashSize]byte
		h[0] = 9
		mixHash(&got, &h, make([]byte, n))
		if want := blake2s.Sum256(append(h[:], make([]byte, n)...)); got != want {
			t.Errorf("mixHash(%d bytes) = %x, want %x", n, got, want)
		}
	}
}

// TestDH is P2: X25519 agrees both ways; a low-order point yields no secret.
func TestDH(t *testing.T) {
	r := newTestRand(1)
	for range 10 {
		a, _ := NewPrivateKey(r)
		b, _ := NewPrivateKey(r)
		A, B := a.PublicKey(), b.PublicKey()
		s1, ok1 := sharedSecret(ecdhKey(&a), &B)
		s2, ok2 := sharedSecret(ecdhKey(&b), &A)
		if !ok1 || !ok2 || s1 != s2 {
			t.Fatalf("DH(a, B) = %x, %v; DH(b, A) = %x, %v", s1, ok1, s2, ok2)
		}
		var ref [32]byte
		curve25519.ScalarMult(&ref, (*[32]byte)(&a), (*[32]byte)(&B))
		if ref != s1 {
			t.Fatalf("sharedSecret differs from curve25519.ScalarMult")
		}
	}
	a, _ := NewPrivateKey(r)
	for _, p := range lowOrderPoints(t) {
		if _, ok := sharedSecret(ecdhKey(&a), &p); ok {
			t.Errorf("sharedSecret with low-order point %x: ok", p)
		}
	}
}

// lowOrderPoints returns the low-order points listed in the kernel's
// netns.sh (P11), as public keys.
func lowOrderPoints(t testing.TB) []PublicKey {
	t.Helper()
	var out []PublicKey
	for _, s := range []string{
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=",
		"X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc=",
		"7P///////////////////////////////////////38=",
		"7f///////////////////////////////////////38=",
		"7v///////////////////////////////////////38=",
	} {
		k, err := ParsePublicKey(s)
		if err != nil {
			t.Fatalf("ParsePublicKey(%q): %v", s, err)
		}
		out = append(out, k)
	}
	return out
}
