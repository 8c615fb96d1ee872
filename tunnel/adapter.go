package tunnel

// Adapter is a batched packet device: a TUN carries IP packets, a TAP carries
// Ethernet frames. It has the shape of wireguard-go's tun.Device so that the
// TUN implementation is a thin wrapper.
//
// Read and Write may run concurrently with each other. Read is called by one
// goroutine at a time; Write may be called by several at once (the send path
// writes ICMP replies to packets over a peer's path MTU, pmtu.go, while the
// receive path writes packets). After Close, Read and Write return net.ErrClosed
// (possibly wrapped) and Close returns nil on later calls. When the host
// interface is deleted from outside, Read returns an error that wraps a
// value with a method Removed() bool reporting true (device/tun.ErrRemoved):
// the engine then stops and reports ErrAdapterRemoved. A Read error that
// wraps a value with a method Dropped() bool reporting true says a
// malformed packet was read and discarded: the engine counts it
// (DropAdapterMalformed) and reads on without pausing.
type Adapter interface {
	// Read reads up to len(bufs) packets, at most BatchSize. Packet i is
	// written to bufs[i][offset:] and its length to sizes[i]. Every buffer
	// must hold offset+MTU bytes (with TUN offloads one read may split a
	// large TCP segment into many packets). Read blocks until at least one
	// packet is ready and returns the number of packets; n > 0 may come with
	// a non-nil error. The buffers stay the caller's.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write writes the packets bufs[i][offset:]. The offset bytes in front of
	// each packet are headroom the adapter may overwrite (virtio headers).
	// Write may reorder or coalesce packets of one TCP flow (GRO). It returns
	// how many packets were written and errors.Join of the failures. The
	// buffers are borrowed for the duration of the call.
	Write(bufs [][]byte, offset int) (int, error)

	// BatchSize is the largest number of packets Read returns or Write takes
	// in one call.
	BatchSize() int

	// MTU is the adapter's MTU in bytes.
	MTU() int

	// Name is the interface name on the host.
	Name() string

	// Close releases the adapter. It is idempotent.
	Close() error
}
