package tun

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/config"
)

// TAPBatchSize is the most frames one TAP Read returns or one Write takes.
// Each frame still costs one system call: a TAP has no offloads here.
const TAPBatchSize = 128 // frames

// TAP is a Linux TAP interface carrying Ethernet frames, over
// github.com/songgao/water. Read takes the first frame blocking and then as
// many more as are ready without blocking; Write writes frame by frame.
//
// The device lives in the network namespace of the thread that opened it.
type TAP struct {
	ifce *water.Interface
	file *os.File
	raw  syscall.RawConn
	name string
	mtu  int // bytes, as set at open

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// OpenTAP creates (or attaches to) the TAP interface name in the calling
// thread's network namespace and sets its MTU (the IP MTU: frames are up to
// MTU+EthernetOverhead bytes). It does not bring the link up.
func OpenTAP(name string, mtu int) (*TAP, error) {
	if err := checkMTU(mtu); err != nil {
		return nil, fmt.Errorf("creating TAP %s: %w", name, err)
	}
	if !config.ValidName(name) {
		return nil, fmt.Errorf("creating TAP %q: invalid interface name", name)
	}
	ifce, err := water.New(water.Config{
		DeviceType:             water.TAP,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name},
	})
	if err != nil {
		return nil, openDeviceError("TAP", name, err)
	}
	file, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		ifce.Close()
		return nil, fmt.Errorf("creating TAP %s: unexpected device type %T", name, ifce.ReadWriteCloser)
	}
	// water opens without O_CLOEXEC. (file.Fd would make the file
	// blocking, and Close could no longer wake Read.)
	raw, err := file.SyscallConn()
	if err == nil {
		err = raw.Control(func(fd uintptr) { unix.CloseOnExec(int(fd)) })
	}
	if err == nil {
		err = setInterfaceMTU(name, mtu)
	}
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("creating TAP %s: %w", name, err)
	}
	return &TAP{ifce: ifce, file: file, raw: raw, name: ifce.Name(), mtu: mtu}, nil
}

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

// Read reads at least one frame into bufs[0][offset:], blocking, then fills
// the following buffers with the frames already queued, up to
// min(len(bufs), BatchSize). A frame larger than its buffer is truncated by
// the kernel; buffers should hold offset+MTU+EthernetOverhead bytes.
func (t *TAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.closed.Load() {
		return 0, net.ErrClosed
	}
	limit := min(len(bufs), TAPBatchSize)
	if limit == 0 {
		return 0, nil
	}
	n, err := t.file.Read(bufs[0][offset:])
	if err != nil {
		return 0, t.mapError("read", err)
	}
	sizes[0] = n
	count := 1
	for count < limit {
		var rerr error
		buf := bufs[count][offset:]
		err := t.raw.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return true // never wait: only take what is queued
		})
		if err != nil || rerr != nil || n <= 0 {
			break
		}
		sizes[count] = n
		count++
	}
	return count, nil
}

// Write writes each frame bufs[i][offset:] with one system call. It returns
// how many were written and errors.Join of the failures.
func (t *TAP) Write(bufs [][]byte, offset int) (int, error) {
	if t.closed.Load() {
		return 0, net.ErrClosed
	}
	var errs []error
	written := 0
	for _, b := range bufs {
		if _, err := t.file.Write(b[offset:]); err != nil {
			err = t.mapError("write", err)
			if errors.Is(err, net.ErrClosed) {
				return written, err
			}
			errs = append(errs, err)
			continue
		}
		written++
	}
	return written, errors.Join(errs...)
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
