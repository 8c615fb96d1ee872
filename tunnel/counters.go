package tunnel

import "github.com/warrenvpn/warren/crypto"

// PeerCounters are a peer's warren-only counters, for metrics.
type PeerCounters struct {
	PublicKey  crypto.PublicKey
	Handshakes uint64 // handshakes completed, as initiator or responder
	Keepalives uint64 // keepalives sent: passive, persistent and key confirmation
}

// PeerCounters returns the counters of every peer, in no particular order.
// It reads atomics only: no peer lock is taken.
func (e *Engine) PeerCounters() []PeerCounters {
	ps := e.peerList()
	out := make([]PeerCounters, len(ps))
	for i, p := range ps {
		out[i] = PeerCounters{PublicKey: p.publicKey, Handshakes: p.handshakes.Load(), Keepalives: p.keepalives.Load()}
	}
	return out
}

// BatchCount is how many calls one step of the data path made and how
// many items (packets or datagrams) they carried in all, since Up.
type BatchCount struct {
	Calls, Items uint64
}

// BatchCounts are the engine's batch counters by step: adapter reads and
// writes (packets), transport sends and receives (datagrams).
type BatchCounts struct {
	AdapterRead, AdapterWrite, TransportSend, TransportReceive BatchCount
}

// BatchCounts returns a snapshot of the batch counters, read-only.
func (e *Engine) BatchCounts() BatchCounts {
	s := &e.batches
	return BatchCounts{
		AdapterRead:      s.adapterRead.count(),
		AdapterWrite:     s.adapterWrite.count(),
		TransportSend:    s.transportSend.count(),
		TransportReceive: s.transportReceive.count(),
	}
}

func (c *batchCounter) count() BatchCount {
	s := c.load()
	return BatchCount{Calls: s.calls, Items: s.items}
}
