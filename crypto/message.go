package crypto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MessageType is the first byte of every WireGuard message. The three bytes
// after it are reserved and must be zero, so the header reads as one
// little-endian uint32.
type MessageType uint8

// Message types (whitepaper section 5.4).
const (
	MessageInitiation  MessageType = 1
	MessageResponse    MessageType = 2
	MessageCookieReply MessageType = 3
	MessageData        MessageType = 4
)

// String returns the message type's name.
func (t MessageType) String() string {
	switch t {
	case MessageInitiation:
		return "initiation"
	case MessageResponse:
		return "response"
	case MessageCookieReply:
		return "cookie reply"
	case MessageData:
		return "data"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Message sizes and offsets (whitepaper section 5.4).
//
// Initiation (type 1):
//
//	0       4         8                   40                  88           116     132     148
//	+-------+---------+-------------------+-------------------+------------+-------+-------+
//	| 1 000 | sender  | ephemeral         | static (AEAD)     | timestamp  | mac1  | mac2  |
//	+-------+---------+-------------------+-------------------+------------+-------+-------+
//
// Response (type 2):
//
//	0       4        8          12                  44         60     76     92
//	+-------+--------+----------+-------------------+----------+------+------+
//	| 2 000 | sender | receiver | ephemeral         | empty    | mac1 | mac2 |
//	+-------+--------+----------+-------------------+----------+------+------+
//
// Cookie reply (type 3):
//
//	0       4          8                  32                        64
//	+-------+----------+------------------+-------------------------+
//	| 3 000 | receiver | nonce (24)       | cookie (16) + tag (16)  |
//	+-------+----------+------------------+-------------------------+
//
// Data (type 4):
//
//	0       4          8          16                          len-16   len
//	+-------+----------+----------+---------------------------+--------+
//	| 4 000 | receiver | counter  | padded plaintext (AEAD)   | tag    |
//	+-------+----------+----------+---------------------------+--------+
const (
	InitiationSize  = 148 // bytes
	ResponseSize    = 92  // bytes
	CookieReplySize = 64  // bytes
	DataHeaderSize  = 16  // bytes before the ciphertext of a data message
	TagSize         = 16  // bytes, Poly1305 tag
	DataOverhead    = DataHeaderSize + TagSize
	KeepaliveSize   = DataOverhead // a data message with an empty payload
	PaddingMultiple = 16           // bytes

	macSize = 16 // bytes, mac1 and mac2 (BLAKE2s-128)
)

// Drop reasons for message parsing. Callers compare with ==.
var (
	ErrShort    = errors.New("message too short")
	ErrSize     = errors.New("wrong size for message type")
	ErrType     = errors.New("unknown message type")
	ErrReserved = errors.New("non-zero reserved bytes")
)

// Parse checks the framing of a received message: its type, its reserved
// bytes and its size for that type. It does no cryptography.
func Parse(msg []byte) (MessageType, error) {
	if len(msg) < 4 {
		return 0, ErrShort
	}
	header := binary.LittleEndian.Uint32(msg)
	t := MessageType(header)
	var want int
	switch t {
	case MessageInitiation:
		want = InitiationSize
	case MessageResponse:
		want = ResponseSize
	case MessageCookieReply:
		want = CookieReplySize
	case MessageData:
		if len(msg) < DataOverhead {
			return 0, ErrShort
		}
	default:
		if header > 0xff {
			return 0, ErrReserved
		}
		return 0, ErrType
	}
	if header>>8 != 0 {
		return 0, ErrReserved
	}
	if want != 0 && len(msg) != want {
		return 0, ErrSize
	}
	return t, nil
}

// ReceiverIndex returns the receiver index of a response, cookie reply or
// data message that passed Parse: the index the engine chose for itself. It
// returns 0 for other or short input.
func ReceiverIndex(msg []byte) uint32 {
	if len(msg) < 12 {
		return 0
	}
	switch MessageType(msg[0]) {
	case MessageResponse:
		return binary.LittleEndian.Uint32(msg[8:])
	case MessageCookieReply, MessageData:
		return binary.LittleEndian.Uint32(msg[4:])
	}
	return 0
}

// SenderIndex returns the sender index of an initiation or response that
// passed Parse: the index the remote chose. It returns 0 for other or short
// input.
func SenderIndex(msg []byte) uint32 {
	if len(msg) < 8 {
		return 0
	}
	switch MessageType(msg[0]) {
	case MessageInitiation, MessageResponse:
		return binary.LittleEndian.Uint32(msg[4:])
	}
	return 0
}

// RandomIndex draws a sender index: 32 uniformly random bits from rand,
// with no fixed bits (RELIABILITY P13). The engine draws a fresh one for
// every handshake message and retries on a collision in its index table.
func RandomIndex(rand io.Reader) (uint32, error) {
	var b [4]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}
