package tun

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openDeviceError turns the errors of opening the clone device and TUNSETIFF
// into one line a user can act on. kind is "TUN" or "TAP".
func openDeviceError(kind, name string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return &openError{tunClonePath + " not found: load the tun module", err}
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return &openError{fmt.Sprintf("creating %s %s: permission denied: run as root or with CAP_NET_ADMIN", kind, name), err}
	case errors.Is(err, unix.EBUSY):
		return &openError{fmt.Sprintf("creating %s %s: interface busy: another process holds it", kind, name), err}
	case errors.Is(err, unix.EINVAL):
		return &openError{fmt.Sprintf("creating %s %s: an interface of another kind has that name", kind, name), err}
	}
	return fmt.Errorf("creating %s %s: %w", kind, name, err)
}

// isDetached reports whether the TUN or TAP interface behind f is gone: the
// kernel then answers TUNGETIFF with EBADFD. The runtime poller reports such
// a file as "not pollable" (EPOLLERR), which says nothing on its own.
func isDetached(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var ioctlErr error
	if rc.Control(func(fd uintptr) {
		var ifr *unix.Ifreq
		if ifr, ioctlErr = unix.NewIfreq(""); ioctlErr == nil {
			ioctlErr = unix.IoctlIfreq(int(fd), unix.TUNGETIFF, ifr)
		}
	}) != nil {
		return false
	}
	return errors.Is(ioctlErr, unix.EBADFD)
}

// interfaceMTU asks the kernel for the MTU of name through ctl, an AF_INET
// socket of the interface's namespace.
func interfaceMTU(ctl int, name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(ctl, unix.SIOCGIFMTU, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}
