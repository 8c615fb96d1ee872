package tun

import (
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tunIO is the state of the raw reads and writes of a TUN, used by one
// reader and one writer at a time. The packet work around them (split,
// coalesce, checksums) is portable and lives in offload.go.
type tunIO struct {
	udpGSO bool // the kernel takes UDP GSO packets (USO, Linux 6.2)

	// Read.
	rbuf   []byte // virtioNetHdrLen+maxGSOPacket: reads where bufs[0] is too small, and remainders
	readFn func(fd uintptr) bool
	rdst   []byte
	rwait  bool // wait for a packet rather than answer EAGAIN
	rn     int
	rerr   unix.Errno
	// The segments of a GSO packet that did not fit the last Read's
	// buffers: a packet of rest bytes at rbuf[virtioNetHdrLen:], to be
	// split by the next Read before anything else is read.
	rest    int // bytes; 0: none
	restHdr virtioNetHdr
	// hdr is the header of the packet being split: a field, not a local,
	// because split is called through a function value and would move a
	// local to the heap on every read.
	hdr virtioNetHdr

	// Write.
	iovs    []unix.Iovec
	writeFn func(fd uintptr) bool
	werr    unix.Errno
}

func newTunIO(batch int, udpGSO bool) *tunIO {
	tio := &tunIO{
		udpGSO: udpGSO,
		rbuf:   make([]byte, virtioNetHdrLen+maxGSOPacket),
		iovs:   make([]unix.Iovec, 0, batch+1),
	}
	tio.readFn = tio.doRead
	tio.writeFn = tio.doWrite
	return tio
}

// doRead runs inside RawConn.Read; false waits for readability.
func (tio *tunIO) doRead(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&tio.rdst[0])), uintptr(len(tio.rdst)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if !tio.rwait {
				tio.rn, tio.rerr = 0, e
				return true
			}
			return false
		case 0:
			tio.rn, tio.rerr = int(n), 0
		default:
			tio.rn, tio.rerr = 0, e
		}
		return true
	}
}

// doWrite runs inside RawConn.Write; false waits for writability.
func (tio *tunIO) doWrite(fd uintptr) bool {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&tio.iovs[0])), uintptr(len(tio.iovs)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		tio.werr = e
		return true
	}
}

// addIov appends b to the iovecs of the next write.
func (tio *tunIO) addIov(b []byte) {
	tio.iovs = append(tio.iovs, unix.Iovec{Base: &b[0]})
	tio.iovs[len(tio.iovs)-1].SetLen(len(b))
}

// clearIovs drops the references to the caller's buffers.
func (tio *tunIO) clearIovs() {
	clear(tio.iovs)
	tio.iovs = tio.iovs[:0]
}

// writeRun writes one packet or coalesced run as a single writev: head
// (the virtio-net header and the first packet) and then each of rest from
// its byte skip on (the headers that the first packet's stand for). EBADFD
// (the queue was detached) reads as os.ErrClosed.
func (tio *tunIO) writeRun(rc syscall.RawConn, head []byte, rest [][]byte, skip int) error {
	tio.addIov(head)
	for _, b := range rest {
		tio.addIov(b[skip:])
	}
	tio.werr = 0
	err := rc.Write(tio.writeFn)
	tio.clearIovs()
	if err == nil && tio.werr != 0 {
		err = tio.werr
		if err == unix.EBADFD {
			err = os.ErrClosed
		}
	}
	return err
}

// readRaw reads one virtio-net header and packet into dst, waiting for one
// if wait. queued is false when none was waiting and wait was not set. A
// detached queue (EBADFD) reads as os.ErrClosed.
func (tio *tunIO) readRaw(rc syscall.RawConn, dst []byte, wait bool) (n int, queued bool, err error) {
	tio.rdst, tio.rwait = dst, wait
	err = rc.Read(tio.readFn)
	tio.rdst = nil
	switch {
	case err != nil:
		return 0, true, err
	case tio.rerr == unix.EAGAIN:
		return 0, false, nil
	case tio.rerr == unix.EBADFD:
		return 0, true, os.ErrClosed
	case tio.rerr != 0:
		return 0, true, tio.rerr
	}
	return tio.rn, true, nil
}

// splitFunc splits one packet read with its virtio-net header h into bufs
// (split for the TUN, TAP.splitFrame for the TAP), keeping what does not
// fit at the start of rest.
type splitFunc func(h *virtioNetHdr, in []byte, bufs [][]byte, sizes []int, offset int, rest []byte) (n, restLen int, err error)

// readOne reads one packet of up to maxPacket bytes into bufs and splits it
// with split, or splits the rest of the last one first. Unless wait, it
// returns 0 and no error when no packet is queued. ioErr is a failed read,
// for the caller to map; err a packet read and dropped (malformed, or too
// large for its buffers).
func (tio *tunIO) readOne(rc syscall.RawConn, bufs [][]byte, sizes []int, offset, maxPacket int, wait bool, split splitFunc) (n int, ioErr, err error) {
	h := &tio.hdr
	var in []byte
	if tio.rest > 0 {
		*h, in = tio.restHdr, tio.rbuf[virtioNetHdrLen:virtioNetHdrLen+tio.rest]
		tio.rest = 0
	} else {
		dst := tio.rbuf
		if offset >= virtioNetHdrLen && len(bufs[0])-offset >= maxPacket {
			dst = bufs[0][offset-virtioNetHdrLen : offset+maxPacket]
		}
		n, queued, err := tio.readRaw(rc, dst, wait)
		switch {
		case err != nil:
			return 0, err, nil
		case !queued:
			return 0, nil, nil
		case n < virtioNetHdrLen || n > len(dst):
			return 0, nil, errVirtio
		}
		h.decode(dst)
		in = dst[virtioNetHdrLen:n]
	}
	n, rest, err := split(h, in, bufs, sizes, offset, tio.rbuf[virtioNetHdrLen:])
	if err == nil && rest > 0 {
		tio.rest, tio.restHdr = rest, *h
	}
	return n, nil, err
}
