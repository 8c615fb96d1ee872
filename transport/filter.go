package transport

import (
	"math"

	"golang.org/x/net/bpf"
)

// Message sizes the socket filter knows (package crypto's, repeated here so
// that transport stays free of the protocol's packages).
const (
	filterInitiationSize = 148
	filterResponseSize   = 92
	filterCookieSize     = 64
	filterMinDataSize    = 32 // header and tag of an empty (keepalive) data message
)

// wireGuardFilter is the classic BPF program Options.WireGuardOnly attaches
// to the socket: it keeps a datagram only if it begins like a WireGuard
// message, a type of 1 to 4 followed by three zero bytes, and is at least
// as long as a message of that type (an initiation 148 bytes, a response
// 92, a cookie reply 64, data 32). The kernel drops everything else in
// softirq, before it queues the datagram, wakes a receiver and copies it
// out: a reflection flood (DNS, NTP answers) or random datagrams aimed at
// the port cost the tunnel little more than the kernel's drop.
//
// It checks no more than that because the kernel may hand it a GRO train,
// consecutive datagrams of one flow merged (the last one may be shorter,
// a keepalive after a response, a response after data): it sees only the
// first message's header and the train's total length, so exact sizes or
// multiples would drop such trains. The engine checks every message as
// before. A socket filter sees the datagram from its UDP header on, and the
// length it loads counts the header's 8 bytes.
func wireGuardFilter() []bpf.Instruction {
	const (
		udpHeader = 8
		keep      = math.MaxInt32 // bytes to keep: all (and positive in an int on 32-bit systems)
	)
	// Skips count the instructions jumped over; the comments give the
	// index each one lands on (keep: 17, drop: 18).
	return []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtLen},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpLessThan, Val: udpHeader + filterMinDataSize, SkipTrue: 16}, // 18: shorter than any message
		/* 2 */ bpf.TAX{}, // X = the length
		/* 3 */ bpf.LoadAbsolute{Off: udpHeader, Size: 4}, // type and reserved bytes, big-endian
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x00ffffff, SkipTrue: 13}, // 18: reserved bytes set
		/* 5 */ bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 24},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4, SkipTrue: 10}, // 17: data, at least 32 bytes as checked
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: 3}, // 11
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 2, SkipTrue: 4}, // 13
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 3, SkipTrue: 5}, // 15
		/* 10 */ bpf.RetConstant{Val: 0},
		/* 11 */ bpf.TXA{}, // an initiation
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: udpHeader + filterInitiationSize, SkipTrue: 4, SkipFalse: 5}, // 17, 18
		/* 13 */ bpf.TXA{}, // a response
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: udpHeader + filterResponseSize, SkipTrue: 2, SkipFalse: 3}, // 17, 18
		/* 15 */ bpf.TXA{}, // a cookie reply
		/* 16 */ bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: udpHeader + filterCookieSize, SkipFalse: 1}, // 17, 18
		/* 17 */ bpf.RetConstant{Val: keep},
		/* 18 */ bpf.RetConstant{Val: 0},
	}
}
