package tun

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestChecksumLong checks checksum against the byte-by-byte reference on
// long, unaligned and all-ones buffers (the most carries) and large
// initial sums, past the two-chain loop's 64-byte blocks and every
// remainder after them.
func TestChecksumLong(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 65536+7)
	for _, fill := range []string{"random", "ones"} {
		for i := range buf {
			if fill == "ones" {
				buf[i] = 0xff
			} else {
				buf[i] = byte(r.Uint32())
			}
		}
		for _, n := range []int{63, 64, 65, 95, 96, 127, 128, 129, 1439, 1440, 1500, 4096 + 33, 9001, 65535} {
			for _, off := range []int{0, 1, 3, 7} {
				b := buf[off : off+n]
				for _, initial := range []uint32{0, 0xffff, 0x1fffe} {
					got, want := checksum(b, uint64(initial)), referenceChecksum(b, initial)
					if got != want && !(got%0xffff == 0 && want%0xffff == 0) {
						t.Fatalf("%s len %d offset %d initial %#x: checksum = %#04x, want %#04x", fill, n, off, initial, got, want)
					}
				}
			}
		}
	}
}

var checksumSink uint16

// BenchmarkChecksum measures the checksum of a segment's TCP payload and
// of a large GSO packet.
func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{40, 1440, 65000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			buf := make([]byte, n)
			for i := range buf {
				buf[i] = byte(i * 7)
			}
			b.SetBytes(int64(n))
			for b.Loop() {
				checksumSink += checksum(buf, 0)
			}
		})
	}
}
