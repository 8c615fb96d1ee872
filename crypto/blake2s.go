package crypto

import (
	"encoding/binary"
	"math/bits"
)

// keyed BLAKE2s-128 (RFC 7693) for mac1, mac2 and cookies. x/crypto's
// blake2s.New128 returns a heap-allocated hash.Hash; this one works on the
// stack, so checking a MAC allocates nothing (RELIABILITY D11).

var blake2sIV = [8]uint32{
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

var blake2sSigma = [10][16]uint8{
	{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	{14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
	{11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
	{7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
	{9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
	{2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
	{12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
	{13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
	{6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
	{10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
}

// blake2sCompress processes one 64-byte block; counter is the number of
// bytes hashed so far including this block.
func blake2sCompress(h *[8]uint32, block []byte, counter uint64, last bool) {
	var m [16]uint32
	for i := range m {
		m[i] = binary.LittleEndian.Uint32(block[4*i:])
	}
	var v [16]uint32
	copy(v[:8], h[:])
	copy(v[8:], blake2sIV[:])
	v[12] ^= uint32(counter)
	v[13] ^= uint32(counter >> 32)
	if last {
		v[14] = ^v[14]
	}
	g := func(a, b, c, d int, x, y uint32) {
		v[a] += v[b] + x
		v[d] = bits.RotateLeft32(v[d]^v[a], -16)
		v[c] += v[d]
		v[b] = bits.RotateLeft32(v[b]^v[c], -12)
		v[a] += v[b] + y
		v[d] = bits.RotateLeft32(v[d]^v[a], -8)
		v[c] += v[d]
		v[b] = bits.RotateLeft32(v[b]^v[c], -7)
	}
	for r := range 10 {
		s := &blake2sSigma[r]
		g(0, 4, 8, 12, m[s[0]], m[s[1]])
		g(1, 5, 9, 13, m[s[2]], m[s[3]])
		g(2, 6, 10, 14, m[s[4]], m[s[5]])
		g(3, 7, 11, 15, m[s[6]], m[s[7]])
		g(0, 5, 10, 15, m[s[8]], m[s[9]])
		g(1, 6, 11, 12, m[s[10]], m[s[11]])
		g(2, 7, 8, 13, m[s[12]], m[s[13]])
		g(3, 4, 9, 14, m[s[14]], m[s[15]])
	}
	for i := range h {
		h[i] ^= v[i] ^ v[i+8]
	}
}

// mac sets out = BLAKE2s-128 keyed with key (at most 32 bytes) over msg.
func mac(out *[macSize]byte, key []byte, msg []byte) {
	h := blake2sIV
	h[0] ^= 0x01010000 ^ uint32(len(key))<<8 ^ macSize
	var block [blake2sBlockSize]byte
	var counter uint64
	if len(key) > 0 {
		copy(block[:], key)
		counter = blake2sBlockSize
		blake2sCompress(&h, block[:], counter, len(msg) == 0)
		if len(msg) == 0 {
			putMAC(out, &h)
			return
		}
	}
	for len(msg) > blake2sBlockSize {
		counter += blake2sBlockSize
		blake2sCompress(&h, msg[:blake2sBlockSize], counter, false)
		msg = msg[blake2sBlockSize:]
	}
	clear(block[:])
	copy(block[:], msg)
	counter += uint64(len(msg))
	blake2sCompress(&h, block[:], counter, true)
	putMAC(out, &h)
}

const blake2sBlockSize = 64

func putMAC(out *[macSize]byte, h *[8]uint32) {
	for i := range macSize / 4 {
		binary.LittleEndian.PutUint32(out[4*i:], h[i])
	}
}
