package crypto

import (
	"testing"

	"golang.org/x/crypto/blake2s"
)

// TestMACMatchesXCrypto compares our keyed BLAKE2s-128 with x/crypto's for
// every key length and many message lengths.
func TestMACMatchesXCrypto(t *testing.T) {
	r := newTestRand(5)
	for kl := 1; kl <= 32; kl++ {
		for _, ml := range []int{0, 1, 63, 64, 65, 116, 127, 128, 129, 200} {
			key := make([]byte, kl)
			msg := make([]byte, ml)
			r.Read(key)
			r.Read(msg)
			d, err := blake2s.New128(key)
			if err != nil {
				t.Fatal(err)
			}
			d.Write(msg)
			want := d.Sum(nil)
			var got [macSize]byte
			mac(&got, key, msg)
			if string(got[:]) != string(want) {
				t.Fatalf("mac(key %d, msg %d) = %x, want %x", kl, ml, got, want)
			}
		}
	}
}

func BenchmarkMAC(b *testing.B) {
	key := make([]byte, 32)
	msg := make([]byte, InitiationSize-2*macSize)
	b.Run("ours", func(b *testing.B) {
		var out [macSize]byte
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			mac(&out, key, msg)
		}
	})
	b.Run("x-crypto", func(b *testing.B) {
		var out [macSize]byte
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			d, _ := blake2s.New128(key)
			d.Write(msg)
			d.Sum(out[:0])
		}
	})
}
