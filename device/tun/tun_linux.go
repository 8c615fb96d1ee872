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
	"golang.zx2c4.com/wireguard/tun"

	"github.com/warrenvpn/warren/config"
)

// tunClonePath is the TUN clone device.
const tunClonePath = "/dev/net/tun"

// The offloads wireguard-go's tun turns on: checksums and TCP segmentation
// always, UDP segmentation where the kernel has it (Linux 6.2).
const (
	tunTCPOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
	tunUDPOffloads = unix.TUN_F_USO4 | unix.TUN_F_USO6
)

// TUN is a Linux TUN interface carrying IP packets, with the kernel's
// offloads on: one Read may return a large TCP or UDP segment split into
// MTU-sized packets, and Write coalesces runs of TCP and UDP packets back
// (GRO) before they reach the kernel. wireguard-go's tun package creates the
// device and watches its link events; the reads and writes are warren's own
// (offload.go, offload_linux.go).
//
// The device lives in the network namespace of the thread that opened it;
// its methods may be called from any thread afterwards.
type TUN struct {
	dev   tun.Device
	rc    syscall.RawConn // the device's file, for the raw reads and writes
	tio   *tunIO
	rmu   sync.Mutex // guards the read half of tio
	wmu   sync.Mutex // guards the write half of tio
	name  string
	ctl   int          // AF_INET socket in the device's namespace, for MTU queries
	mtu   atomic.Int64 // bytes, refreshed on the kernel's link events
	batch int

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // eventLoop
}

// OpenTUN creates (or attaches to) the TUN interface name in the calling
// thread's network namespace and sets its MTU. It does not bring the link up:
// that is part of the host state. A missing /dev/net/tun and missing
// privileges give errors whose text tells the user what to do.
func OpenTUN(name string, mtu int) (*TUN, error) {
	return openTUN(name, mtu, 0)
}

// OpenTUNQueues creates the multi-queue TUN interface name with n queues,
// each its own Adapter, for independent pipelines (one UDP socket per queue
// with SO_REUSEPORT). The kernel spreads flows over the queues by hash, so a
// flow stays on one queue. The interface goes away when the last queue is
// closed.
func OpenTUNQueues(name string, mtu, n int) ([]*TUN, error) {
	if n < 1 {
		return nil, fmt.Errorf("creating TUN %s: %d queues", name, n)
	}
	queues := make([]*TUN, 0, n)
	for range n {
		q, err := openTUN(name, mtu, unix.IFF_MULTI_QUEUE)
		if err != nil {
			for _, q := range queues {
				q.Close()
			}
			return nil, err
		}
		queues = append(queues, q)
	}
	return queues, nil
}

// openTUN opens one queue of the TUN name with offloads and the extra flags.
func openTUN(name string, mtu int, flags uint16) (*TUN, error) {
	if err := checkMTU(mtu); err != nil {
		return nil, fmt.Errorf("creating TUN %s: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil || !config.ValidName(name) {
		return nil, fmt.Errorf("creating TUN %q: invalid interface name", name)
	}
	fd, err := unix.Open(tunClonePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openDeviceError("TUN", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR | flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, openDeviceError("TUN", name, err)
	}
	// Non-blocking before the file meets the runtime poller, so that Close
	// wakes a blocked Read.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating TUN %s: %w", name, err)
	}
	ctl, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating TUN %s: control socket: %w", name, err)
	}
	file := os.NewFile(uintptr(fd), tunClonePath)
	dev, err := tun.CreateTUNFromFile(file, mtu)
	if err != nil {
		file.Close()
		unix.Close(ctl)
		return nil, fmt.Errorf("creating TUN %s: %w", name, err)
	}
	rc, err := file.SyscallConn()
	if err != nil {
		dev.Close()
		unix.Close(ctl)
		return nil, fmt.Errorf("creating TUN %s: %w", name, err)
	}
	// wireguard-go turned the offloads on; asking again tells whether the
	// kernel takes UDP GSO packets too.
	var udpGSO bool
	rc.Control(func(fd uintptr) {
		udpGSO = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, tunTCPOffloads|tunUDPOffloads) == nil
	})
	t := &TUN{dev: dev, rc: rc, name: name, ctl: ctl, batch: dev.BatchSize()}
	t.tio = newTunIO(t.batch, udpGSO)
	if n, err := t.queryMTU(); err == nil {
		t.mtu.Store(int64(n))
	} else {
		t.mtu.Store(int64(mtu))
	}
	t.wg.Go(t.eventLoop)
	return t, nil
}

// eventLoop drains the device's events until Close, refreshing the MTU when
// the kernel reports a link change. It ends when wireguard-go's listeners
// have stopped and closed the channel.
func (t *TUN) eventLoop() {
	for ev := range t.dev.Events() {
		if ev&tun.EventMTUUpdate != 0 {
			if n, err := t.queryMTU(); err == nil {
				t.mtu.Store(int64(n))
			}
		}
	}
}

// queryMTU asks the kernel for the interface's MTU, through a socket of the
// device's own namespace.
func (t *TUN) queryMTU() (int, error) { return interfaceMTU(t.ctl, t.name) }

// Read reads a batch of packets into bufs[i][offset:]. Each buffer must hold
// offset+MTU bytes. Small packets already queued are gathered into one batch,
// up to half of len(bufs). Where bufs[0] holds offset+65535 bytes and offset
// is at least TUNHeadroom, the packet is read straight into it and the
// TUNHeadroom bytes in front of bufs[0][offset:] are overwritten.
//
// A large GSO segment is split into packets; where they outnumber len(bufs),
// Read returns those that fit and keeps the others for the next Read, which
// returns them without waiting. No packet is dropped for want of buffers.
//
// A packet the kernel hands over malformed (a virtio header that does not
// match it) or too large for its buffer is dropped, not delivered in part:
// Read returns the packets of the batch so far with an error that says so.
// The device stays usable; the engine counts the error as a failed read and
// reads on.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.closed.Load() {
		return 0, net.ErrClosed
	}
	if len(bufs) == 0 || len(sizes) < len(bufs) || offset < 0 || offset > len(bufs[0]) {
		return 0, fmt.Errorf("read TUN %s: invalid batch", t.name)
	}
	t.rmu.Lock()
	defer t.rmu.Unlock()
	n, err := t.readOne(bufs, sizes, offset, true)
	// Small packets come one per read: gather those already queued, so
	// that the engine seals and sends them in one batch (one GSO send
	// instead of one per packet). Half the batch stays free for a GSO
	// packet.
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

// errDropped marks a Read error for a packet that was read and dropped.
// Its Dropped method tells the engine (which does not import this package)
// to count a drop and read on, rather than treat it as a failing adapter.
var errDropped error = droppedError{}

// droppedError is the type of errDropped.
type droppedError struct{}

func (droppedError) Error() string { return "packet dropped" }

// Dropped reports true: one malformed packet was read and discarded.
func (droppedError) Dropped() bool { return true }

// readOne reads one packet into bufs, split if it is a GSO packet, or
// splits the rest of the last one. Unless wait, it returns 0 and no error
// when no packet is queued.
func (t *TUN) readOne(bufs [][]byte, sizes []int, offset int, wait bool) (int, error) {
	n, ioErr, err := t.tio.readOne(t.rc, bufs, sizes, offset, maxGSOPacket, wait, split)
	switch {
	case ioErr != nil:
		return 0, t.mapError("read", ioErr)
	case err != nil:
		return n, fmt.Errorf("read TUN %s: %w: %w", t.name, errDropped, err)
	}
	return n, nil
}

// Write writes the packets bufs[i][offset:]; offset must be at least
// TUNHeadroom. Runs of consecutive packets of one TCP or UDP flow are
// coalesced into one GSO packet, written without copying (offload.go), so
// Write rewrites the first packet's headers as well as the headroom. It
// returns how many packets were written and errors.Join of the failures. A
// failed write of a coalesced packet counts all the packets in it as failed:
// the kernel takes or refuses it whole.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) {
	if t.closed.Load() {
		return 0, net.ErrClosed
	}
	if offset < TUNHeadroom {
		return 0, fmt.Errorf("write TUN %s: offset %d below the %d-byte headroom", t.name, offset, TUNHeadroom)
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	tio := t.tio
	var errs error
	written := 0
	for i := 0; i < len(bufs); {
		end, segment, total, hdrLen := groRun(bufs, i, offset, tio.udpGSO)
		var h virtioNetHdr
		if end-i > 1 {
			h = coalesceHead(bufs, i, end, offset, segment, total)
		}
		h.encode(bufs[i][offset-virtioNetHdrLen:])
		err := tio.writeRun(t.rc, bufs[i][offset-virtioNetHdrLen:], bufs[i+1:end], offset+hdrLen)
		switch {
		case err == nil:
			written += end - i
		case errors.Is(err, os.ErrClosed) || t.closed.Load():
			return written, t.mapError("write", err)
		default:
			errs = errors.Join(errs, fmt.Errorf("packets %d-%d: %w", i, end-1, err))
		}
		i = end
	}
	if errs != nil {
		return written, t.mapError("write", errs)
	}
	return written, nil
}

// mapError makes a closed device report net.ErrClosed, and one deleted from
// outside report ErrRemoved as well. The poller reports a deleted device as
// "not pollable" (EPOLLERR), so the device itself is asked.
func (t *TUN) mapError(op string, err error) error {
	if t.closed.Load() {
		return net.ErrClosed
	}
	if errors.Is(err, os.ErrClosed) || t.isDetached() {
		return fmt.Errorf("%s TUN %s: %w: %w", op, t.name, ErrRemoved, net.ErrClosed)
	}
	return fmt.Errorf("%s TUN %s: %w", op, t.name, err)
}

// isDetached reports whether the interface behind the file is gone.
func (t *TUN) isDetached() bool { return isDetached(t.dev.File()) }

// BatchSize is the most packets one Read returns or one Write takes: 128
// with offloads, 1 without.
func (t *TUN) BatchSize() int { return t.batch }

// MTU is the interface's current MTU, following changes made on the host.
func (t *TUN) MTU() int { return int(t.mtu.Load()) }

// Name is the interface name.
func (t *TUN) Name() string { return t.name }

// Close removes the interface (unless another process holds it), wakes a
// blocked Read, and returns once the device's goroutines have ended. It is
// idempotent.
func (t *TUN) Close() error {
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		t.closeErr = t.dev.Close()
		t.wg.Wait()
		unix.Close(t.ctl)
	})
	return t.closeErr
}
