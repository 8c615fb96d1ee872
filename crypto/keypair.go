package crypto

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Message limits of a keypair (whitepaper 6.1).
const (
	RekeyAfterMessages  = 1 << 60           // messages sent before the initiator rekeys
	RejectAfterMessages = 1<<64 - 1<<13 - 1 // counters at or past this are never sent or accepted
)

// Drop reasons and errors for transport data. Callers compare with ==.
var (
	ErrCounter             = errors.New("data counter past the message limit")
	ErrRejectAfterMessages = errors.New("keypair exhausted: rekey required")
)

// Keypair is one transport session: a send and a receive key, the send
// counter and the replay window. Seal, Open and AcceptCounter are safe for
// concurrent use. The exported fields are set at creation and read-only.
//
// The keys live inside x/crypto AEAD values and cannot be wiped; drop every
// reference to an expired Keypair.
type Keypair struct {
	LocalIndex  uint32    // our index: data to us carries it as receiver
	RemoteIndex uint32    // the peer's index: written into data we send
	Created     time.Time // the now passed to BeginSession
	IsInitiator bool      // whether we sent the initiation

	sendCounter atomic.Uint64 // next nonce; 64-bit atomics are aligned on 386 too
	send        cipher.AEAD
	recv        cipher.AEAD
	replay      ReplayWindow
}

func newKeypair(send, recv *[hashSize]byte, now time.Time, initiator bool, local, remote uint32) *Keypair {
	k := &Keypair{LocalIndex: local, RemoteIndex: remote, Created: now, IsInitiator: initiator}
	k.send, _ = chacha20poly1305.New(send[:])
	k.recv, _ = chacha20poly1305.New(recv[:])
	return k
}

// PaddedSize returns the length a plaintext of n bytes is padded to: the
// next multiple of PaddingMultiple, but never past mtu unless n itself is
// larger. An mtu of 0 or less means no cap.
func PaddedSize(n, mtu int) int {
	p := (n + PaddingMultiple - 1) &^ (PaddingMultiple - 1)
	if mtu > 0 && p > mtu {
		p = max(n, mtu)
	}
	return p
}

// Seal turns the plaintext at buf[DataHeaderSize:DataHeaderSize+n] into a
// data message in place: it pads (PaddedSize), encrypts, appends the tag and
// writes the header. buf must hold DataOverhead+PaddedSize(n, mtu) bytes. It
// returns the message length. A keepalive is n = 0. Once the counter reaches
// RejectAfterMessages it returns ErrRejectAfterMessages and sends nothing.
func (k *Keypair) Seal(buf []byte, n, mtu int) (int, error) {
	if n < 0 || len(buf) < DataOverhead+PaddedSize(n, mtu) {
		return 0, ErrBufferTooSmall // before a counter is taken
	}
	counter, _, err := k.ReserveCounters(1)
	if err != nil {
		return 0, err
	}
	return k.SealCounter(buf, n, mtu, counter)
}

// ReserveCounters takes up to n consecutive send counters for SealCounter:
// first, first+1, ..., first+got-1, all below RejectAfterMessages and
// never handed out again. got is n, or fewer with ErrRejectAfterMessages
// when the keypair runs out (got 0 once it has run out). The counter never
// moves past RejectAfterMessages, so NeedsRekey and later calls see exactly
// what was taken. One compare-and-swap when uncontended; a batch of
// packets takes its counters with one call instead of one atomic add each.
func (k *Keypair) ReserveCounters(n int) (first uint64, got int, err error) {
	if n <= 0 {
		return 0, 0, nil
	}
	for {
		cur := k.sendCounter.Load()
		if cur >= RejectAfterMessages {
			return 0, 0, ErrRejectAfterMessages
		}
		take := min(uint64(n), RejectAfterMessages-cur)
		if k.sendCounter.CompareAndSwap(cur, cur+take) {
			if take < uint64(n) {
				err = ErrRejectAfterMessages
			}
			return cur, int(take), err
		}
	}
}

// SealCounter is Seal with a counter taken by ReserveCounters; each
// reserved counter must be sealed with at most once. It fails only for a
// short buf or a counter at or past RejectAfterMessages (then nothing is
// written). Calls with distinct counters may run concurrently.
func (k *Keypair) SealCounter(buf []byte, n, mtu int, counter uint64) (int, error) {
	if n < 0 {
		return 0, ErrBufferTooSmall
	}
	padded := PaddedSize(n, mtu)
	total := DataOverhead + padded
	if len(buf) < total {
		return 0, ErrBufferTooSmall
	}
	if counter >= RejectAfterMessages {
		return 0, ErrRejectAfterMessages
	}
	clear(buf[DataHeaderSize+n : DataHeaderSize+padded])
	// The nonce is 4 zero bytes and the little-endian counter: build it in
	// the header itself (receiver field zeroed for now), so that no nonce
	// array escapes to the heap through the AEAD interface.
	binary.LittleEndian.PutUint32(buf[4:], 0)
	binary.LittleEndian.PutUint64(buf[8:], counter)
	k.send.Seal(buf[DataHeaderSize:DataHeaderSize], buf[4:16], buf[DataHeaderSize:DataHeaderSize+padded], nil)
	binary.LittleEndian.PutUint32(buf, uint32(MessageData))
	binary.LittleEndian.PutUint32(buf[4:], k.RemoteIndex)
	return total, nil
}

// Open authenticates and decrypts the data message msg in place. It returns
// the padded plaintext (a borrowed sub-slice of msg; empty for a keepalive)
// and the message counter. It does not touch the replay window: after
// success the caller must call AcceptCounter(counter) and drop the packet
// if that reports false. On failure the bytes of msg are unspecified.
func (k *Keypair) Open(msg []byte) ([]byte, uint64, error) {
	if len(msg) < DataOverhead {
		return nil, 0, ErrShort
	}
	if binary.LittleEndian.Uint32(msg) != uint32(MessageData) {
		return nil, 0, ErrType
	}
	if binary.LittleEndian.Uint32(msg[4:]) != k.LocalIndex {
		return nil, 0, ErrIndex
	}
	counter := binary.LittleEndian.Uint64(msg[8:])
	if counter >= RejectAfterMessages {
		return nil, 0, ErrCounter
	}
	binary.LittleEndian.PutUint32(msg[4:], 0) // nonce in place, see Seal
	pt, err := k.recv.Open(msg[DataHeaderSize:DataHeaderSize], msg[4:16], msg[DataHeaderSize:], nil)
	binary.LittleEndian.PutUint32(msg[4:], k.LocalIndex)
	if err != nil {
		return nil, 0, ErrDecrypt
	}
	return pt, counter, nil
}

// AcceptCounter records counter in the replay window and reports whether
// it was new. Call it only for a counter that Open authenticated.
func (k *Keypair) AcceptCounter(counter uint64) bool { return k.replay.Accept(counter) }

// AcceptCounters is AcceptCounter for a batch under one lock of the
// replay window (ReplayWindow.AcceptBatch): for each i with ok[i] it sets
// ok[i] to AcceptCounter(counters[i]), in order.
func (k *Keypair) AcceptCounters(counters []uint64, ok []bool) { k.replay.AcceptBatch(counters, ok) }

// NeedsRekey reports whether more than RekeyAfterMessages messages were
// sent under k, so the initiator should start a new handshake.
func (k *Keypair) NeedsRekey() bool { return k.sendCounter.Load() > RekeyAfterMessages }

// PresetSendCounter sets the send counter. It exists for tests of the
// message limits (R6); never call it on a keypair in use.
func (k *Keypair) PresetSendCounter(n uint64) { k.sendCounter.Store(n) }
