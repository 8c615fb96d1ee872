package tunnel

import (
	"encoding/binary"
	"errors"
	"sync"
)

// indexEntry is what a local 32-bit index names: a peer's pending
// handshake (kp == nil) or one of its keypairs.
type indexEntry struct {
	peer *peer
	kp   *keypair
}

// indexTable maps the receiver indices we hand out to handshakes and
// keypairs. Indices are random nonzero 32-bit values (P13); a collision is
// retried.
type indexTable struct {
	mu      sync.RWMutex // guards entries
	entries map[uint32]indexEntry
}

func (t *indexTable) init() { t.entries = make(map[uint32]indexEntry) }

var errIndexSpace = errors.New("no free receiver index")

// newIndex registers ent under a fresh random index.
func (t *indexTable) newIndex(ent indexEntry, readRand func([]byte) error) (uint32, error) {
	var b [4]byte
	for range 64 {
		if err := readRand(b[:]); err != nil {
			return 0, err
		}
		idx := binary.LittleEndian.Uint32(b[:])
		if idx == 0 {
			continue // 0 means "none" in the engine's bookkeeping
		}
		t.mu.Lock()
		if _, taken := t.entries[idx]; !taken {
			t.entries[idx] = ent
			t.mu.Unlock()
			return idx, nil
		}
		t.mu.Unlock()
	}
	return 0, errIndexSpace
}

// swap replaces the entry at idx (a handshake becoming a keypair) if it
// still belongs to peer.
func (t *indexTable) swap(idx uint32, ent indexEntry) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.entries[idx]
	if !ok || old.peer != ent.peer {
		return false
	}
	t.entries[idx] = ent
	return true
}

func (t *indexTable) lookup(idx uint32) (indexEntry, bool) {
	t.mu.RLock()
	ent, ok := t.entries[idx]
	t.mu.RUnlock()
	return ent, ok
}

func (t *indexTable) remove(idx uint32) {
	t.mu.Lock()
	delete(t.entries, idx)
	t.mu.Unlock()
}

func (t *indexTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.entries)
}
