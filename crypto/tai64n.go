package crypto

import (
	"encoding/binary"
	"time"
)

// TimestampSize is the size of a TAI64N timestamp in bytes.
const TimestampSize = 12

const (
	tai64Base    = uint64(0x400000000000000a) // TAI64 label of 1970 with 10 leap seconds
	whitenerMask = uint32(1<<24 - 1)          // 2^24 ns ≈ 16.78 ms
)

// Timestamp is a TAI64N timestamp as carried in handshake initiations: 8
// bytes of seconds and 4 bytes of nanoseconds, big-endian, so that byte
// order is time order.
type Timestamp [TimestampSize]byte

// TAI64N returns the timestamp of t with the nanoseconds rounded down to a
// multiple of 2^24 ns, so that the stamp does not leak a precise clock
// (whitepaper 5.1; the kernel and wireguard-go do the same).
func TAI64N(t time.Time) Timestamp {
	var ts Timestamp
	binary.BigEndian.PutUint64(ts[:], tai64Base+uint64(t.Unix()))
	binary.BigEndian.PutUint32(ts[8:], uint32(t.Nanosecond())&^whitenerMask)
	return ts
}

// After reports whether t is strictly later than o.
func (t Timestamp) After(o Timestamp) bool {
	// Byte-wise comparison, big-endian; not secret, but keep it branch-light.
	for i := range t {
		if t[i] != o[i] {
			return t[i] > o[i]
		}
	}
	return false
}

// Time returns t as a time.Time (for logs).
func (t Timestamp) Time() time.Time {
	return time.Unix(int64(binary.BigEndian.Uint64(t[:])-tai64Base), int64(binary.BigEndian.Uint32(t[8:])))
}
