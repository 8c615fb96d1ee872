package tun

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/config"
)

// TAPBatchSize is the most frames one TAP Read returns or one Write takes.
const TAPBatchSize = 128 // frames

// TAP is a Linux TAP interface carrying Ethernet frames, opened with a
// virtio-net header (IFF_VNET_HDR) as the TUN is, so that the kernel's
// offloads can be on: one Read may return a frame holding a large TCP or UDP
// segment split into frames that each fit the MTU, and Write coalesces runs
// of frames of one TCP or UDP flow behind one Ethernet header back into one
// (GRO) before they reach the kernel (offload_eth.go). With offloads off the
// header stays, all zeros: frames go one by one, checksums done by the
// kernel.
//
// The device lives in the network namespace of the thread that opened it;
// its methods may be called from any thread afterwards.
type TAP struct {
	file *os.File
	rc   syscall.RawConn
	tio  *tunIO
	rmu  sync.Mutex // guards the read half of tio
	wmu  sync.Mutex // guards the write half of tio
	name string
	mtu  int // bytes, as set at open

	splitFn  splitFunc // t.splitFrame, bound once so that Read does not allocate
	coalesce bool      // Write coalesces: TCP offloads on
	offloads string    // what is on, for Offloads
	refused  error     // why the kernel refused offloads asked for

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// The offloads OpenTAP asks for, as the TUN does: checksums and TCP
// segmentation, and UDP segmentation where the kernel has it (Linux 6.2).
const (
	tapTCPOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
	tapUDPOffloads = unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// tapSetOffload sets the offloads of the TAP open at fd (TUNSETOFFLOAD);
// tests replace it to play a kernel that refuses some.
var tapSetOffload = func(fd, flags int) error { return unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags) }

// OpenTAP creates (or attaches to) the TAP interface name in the calling
// thread's network namespace and sets its MTU (the IP MTU: frames are up to
// MTU+EthernetOverhead bytes). It does not bring the link up. With offload
// it asks the kernel for checksum offload and TCP and UDP segmentation,
// falling back to fewer (or none) where the kernel refuses: Offloads says
// what is on and why. Without, every offload is off.
//
// warren opens the TAP itself rather than with github.com/songgao/water
// because water cannot set IFF_VNET_HDR, without which the kernel takes and
// gives no offloaded frames.
func OpenTAP(name string, mtu int, offload bool) (*TAP, error) {
	if err := checkMTU(mtu); err != nil {
		return nil, fmt.Errorf("creating TAP %s: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil || !config.ValidName(name) {
		return nil, fmt.Errorf("creating TAP %q: invalid interface name", name)
	}
	fd, err := unix.Open(tunClonePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openDeviceError("TAP", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, openDeviceError("TAP", name, err)
	}
	t := &TAP{name: name, mtu: mtu, offloads: "off"}
	udp := false
	if !offload {
		err = tapSetOffload(fd, 0)
	} else if uerr := tapSetOffload(fd, tapTCPOffloads|tapUDPOffloads); uerr == nil {
		t.coalesce, udp, t.offloads = true, true, "checksum, TSO, USO"
	} else if terr := tapSetOffload(fd, tapTCPOffloads); terr == nil {
		t.coalesce, t.offloads = true, "checksum, TSO"
		t.refused = fmt.Errorf("the kernel refused UDP segmentation offload (USO, Linux 6.2): %w", uerr)
	} else {
		t.refused = fmt.Errorf("the kernel refused checksum and TCP segmentation offloads: %w", terr)
		err = tapSetOffload(fd, 0)
	}
	if err == nil {
		// Non-blocking before the file meets the runtime poller, so that
		// Close wakes a blocked Read.
		err = unix.SetNonblock(fd, true)
	}
	if err == nil {
		err = setInterfaceMTU(name, mtu)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating TAP %s: %w", name, err)
	}
	t.file = os.NewFile(uintptr(fd), tunClonePath)
	if t.rc, err = t.file.SyscallConn(); err != nil {
		t.file.Close()
		return nil, fmt.Errorf("creating TAP %s: %w", name, err)
	}
	tio := &tunIO{
		udpGSO: udp,
		rbuf:   make([]byte, virtioNetHdrLen+maxGSOFrame),
		iovs:   make([]unix.Iovec, 0, TAPBatchSize+1),
	}
	tio.readFn, tio.writeFn = tio.doRead, tio.doWrite
	t.splitFn = t.splitFrame
	t.tio = tio
	return t, nil
}

// Offloads says which offloads are on ("checksum, TSO, USO", "checksum,
// TSO" or "off") and, where the kernel refused some that OpenTAP asked for,
// returns an error saying which.
func (t *TAP) Offloads() (string, error) { return t.offloads, t.refused }

// setInterfaceMTU sets the MTU of name in the calling thread's namespace.
func setInterfaceMTU(name string, mtu int) error {
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ctl)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(ctl, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("set MTU %d: %w", mtu, err)
	}
	return nil
}

// Read reads a batch of frames into bufs[i][offset:]. Each buffer must hold
// offset+MTU+EthernetOverhead bytes. Small frames already queued are
// gathered into one batch, up to half of len(bufs). Where bufs[0] holds
// offset+65557 bytes and offset is at least TUNHeadroom, the frame is read
// straight into it and the TUNHeadroom bytes in front of bufs[0][offset:]
// are overwritten.
//
// A frame holding a large GSO segment is split into frames that fit the
// MTU (splitFrame); where they outnumber len(bufs), Read returns those that
// fit and keeps the others for the next Read, which returns them without
// waiting.
//
// A frame the kernel hands over malformed (a virtio header that does not
// match it) or too large for its buffer is dropped: Read returns the frames
// of the batch so far with an error whose Dropped method reports true, and
// the device stays usable.
func (t *TAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.closed.Load() {
		return 0, net.ErrClosed
	}
	if len(bufs) == 0 || len(sizes) < len(bufs) || offset < 0 || offset > len(bufs[0]) {
		return 0, fmt.Errorf("read TAP %s: invalid batch", t.name)
	}
	bufs = bufs[:min(len(bufs), TAPBatchSize)]
	t.rmu.Lock()
	defer t.rmu.Unlock()
	n, err := t.readOne(bufs, sizes, offset, true)
	for last := n; err == nil && last == 1 && n < len(bufs)/2; n += last {
		if last, err = t.readOne(bufs[n:], sizes[n:], offset, false); last == 0 {
			break
		}
	}
	if n > 0 && !errors.Is(err, errDropped) {
		err = nil // a failed system call of a gathering read fails again on the next Read
	}
	return n, err
}

// readOne reads one frame into bufs, split if it holds a GSO packet, or
// splits the rest of the last one. Unless wait, it returns 0 and no error
// when no frame is queued.
func (t *TAP) readOne(bufs [][]byte, sizes []int, offset int, wait bool) (int, error) {
	n, ioErr, err := t.tio.readOne(t.rc, bufs, sizes, offset, maxGSOFrame, wait, t.splitFn)
	switch {
	case ioErr != nil:
		return 0, t.mapError("read", ioErr)
	case err != nil:
		return n, fmt.Errorf("read TAP %s: %w: %w", t.name, errDropped, err)
	}
	return n, nil
}

// splitFrame is splitFrame to the TAP's MTU.
func (t *TAP) splitFrame(h *virtioNetHdr, frame []byte, bufs [][]byte, sizes []int, offset int, rest []byte) (int, int, error) {
	return splitFrame(h, frame, bufs, sizes, offset, rest, t.mtu)
}

// Write writes the frames bufs[i][offset:]; offset must be at least
// TUNHeadroom. With offloads on, runs of consecutive frames of one TCP or
// UDP flow behind one Ethernet header are coalesced into one GSO frame,
// written without copying, so Write rewrites the first frame's headers as
// well as the headroom; a frame whose checksums are wrong is written alone
// (groRunLink). It returns how many frames were written and errors.Join of
// the failures; a failed write of a coalesced frame counts all the frames in
// it as failed.
func (t *TAP) Write(bufs [][]byte, offset int) (int, error) {
	if t.closed.Load() {
		return 0, net.ErrClosed
	}
	if offset < TUNHeadroom {
		return 0, fmt.Errorf("write TAP %s: offset %d below the %d-byte headroom", t.name, offset, TUNHeadroom)
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	tio := t.tio
	var errs error
	written := 0
	for i := 0; i < len(bufs); {
		var h virtioNetHdr
		end, skip := i+1, 0
		if t.coalesce && len(bufs[i]) > offset {
			h, end, skip = coalesceFrames(bufs, i, offset, tio.udpGSO)
		}
		h.encode(bufs[i][offset-virtioNetHdrLen:])
		err := tio.writeRun(t.rc, bufs[i][offset-virtioNetHdrLen:], bufs[i+1:end], offset+skip)
		switch {
		case err == nil:
			written += end - i
		case errors.Is(err, os.ErrClosed) || t.closed.Load():
			return written, t.mapError("write", err)
		default:
			errs = errors.Join(errs, fmt.Errorf("frames %d-%d: %w", i, end-1, err))
		}
		i = end
	}
	if errs != nil {
		return written, t.mapError("write", errs)
	}
	return written, nil
}

// mapError makes a closed device report net.ErrClosed, and one deleted from
// outside report ErrRemoved as well.
func (t *TAP) mapError(op string, err error) error {
	if t.closed.Load() {
		return net.ErrClosed
	}
	if errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADFD) || isDetached(t.file) {
		return fmt.Errorf("%s TAP %s: %w: %w", op, t.name, ErrRemoved, net.ErrClosed)
	}
	return fmt.Errorf("%s TAP %s: %w", op, t.name, err)
}

// BatchSize is TAPBatchSize.
func (t *TAP) BatchSize() int { return TAPBatchSize }

// MTU is the MTU set at open.
//
// TODO(tap): follow MTU changes made on the host, as TUN does.
func (t *TAP) MTU() int { return t.mtu }

// Name is the interface name.
func (t *TAP) Name() string { return t.name }

// Close removes the interface (unless another process holds it) and wakes a
// blocked Read. It is idempotent.
func (t *TAP) Close() error {
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		t.closeErr = t.file.Close()
	})
	return t.closeErr
}
