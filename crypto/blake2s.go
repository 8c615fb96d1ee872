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
// bytes hashed so far including this block. The rounds are written out
// with locals so that the compiler keeps the state in registers.
func blake2sCompress(h *[8]uint32, block []byte, counter uint64, last bool) {
	var m [16]uint32
	for i := range m {
		m[i] = binary.LittleEndian.Uint32(block[4*i:])
	}
	v0, v1, v2, v3, v4, v5, v6, v7 := h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
	v8, v9, v10, v11 := blake2sIV[0], blake2sIV[1], blake2sIV[2], blake2sIV[3]
	v12 := blake2sIV[4] ^ uint32(counter)
	v13 := blake2sIV[5] ^ uint32(counter>>32)
	v14, v15 := blake2sIV[6], blake2sIV[7]
	if last {
		v14 = ^v14
	}
	for r := range 10 {
		s := &blake2sSigma[r]
		v0 += v4 + m[s[0]&15]
		v12 = bits.RotateLeft32(v12^v0, -16)
		v8 += v12
		v4 = bits.RotateLeft32(v4^v8, -12)
		v0 += v4 + m[s[1]&15]
		v12 = bits.RotateLeft32(v12^v0, -8)
		v8 += v12
		v4 = bits.RotateLeft32(v4^v8, -7)
		v1 += v5 + m[s[2]&15]
		v13 = bits.RotateLeft32(v13^v1, -16)
		v9 += v13
		v5 = bits.RotateLeft32(v5^v9, -12)
		v1 += v5 + m[s[3]&15]
		v13 = bits.RotateLeft32(v13^v1, -8)
		v9 += v13
		v5 = bits.RotateLeft32(v5^v9, -7)
		v2 += v6 + m[s[4]&15]
		v14 = bits.RotateLeft32(v14^v2, -16)
		v10 += v14
		v6 = bits.RotateLeft32(v6^v10, -12)
		v2 += v6 + m[s[5]&15]
		v14 = bits.RotateLeft32(v14^v2, -8)
		v10 += v14
		v6 = bits.RotateLeft32(v6^v10, -7)
		v3 += v7 + m[s[6]&15]
		v15 = bits.RotateLeft32(v15^v3, -16)
		v11 += v15
		v7 = bits.RotateLeft32(v7^v11, -12)
		v3 += v7 + m[s[7]&15]
		v15 = bits.RotateLeft32(v15^v3, -8)
		v11 += v15
		v7 = bits.RotateLeft32(v7^v11, -7)
		v0 += v5 + m[s[8]&15]
		v15 = bits.RotateLeft32(v15^v0, -16)
		v10 += v15
		v5 = bits.RotateLeft32(v5^v10, -12)
		v0 += v5 + m[s[9]&15]
		v15 = bits.RotateLeft32(v15^v0, -8)
		v10 += v15
		v5 = bits.RotateLeft32(v5^v10, -7)
		v1 += v6 + m[s[10]&15]
		v12 = bits.RotateLeft32(v12^v1, -16)
		v11 += v12
		v6 = bits.RotateLeft32(v6^v11, -12)
		v1 += v6 + m[s[11]&15]
		v12 = bits.RotateLeft32(v12^v1, -8)
		v11 += v12
		v6 = bits.RotateLeft32(v6^v11, -7)
		v2 += v7 + m[s[12]&15]
		v13 = bits.RotateLeft32(v13^v2, -16)
		v8 += v13
		v7 = bits.RotateLeft32(v7^v8, -12)
		v2 += v7 + m[s[13]&15]
		v13 = bits.RotateLeft32(v13^v2, -8)
		v8 += v13
		v7 = bits.RotateLeft32(v7^v8, -7)
		v3 += v4 + m[s[14]&15]
		v14 = bits.RotateLeft32(v14^v3, -16)
		v9 += v14
		v4 = bits.RotateLeft32(v4^v9, -12)
		v3 += v4 + m[s[15]&15]
		v14 = bits.RotateLeft32(v14^v3, -8)
		v9 += v14
		v4 = bits.RotateLeft32(v4^v9, -7)
	}
	h[0] ^= v0 ^ v8
	h[1] ^= v1 ^ v9
	h[2] ^= v2 ^ v10
	h[3] ^= v3 ^ v11
	h[4] ^= v4 ^ v12
	h[5] ^= v5 ^ v13
	h[6] ^= v6 ^ v14
	h[7] ^= v7 ^ v15
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
