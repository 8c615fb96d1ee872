package tun

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenDeviceError(t *testing.T) {
	tests := []struct {
		err    error
		want   string
		wantIs error
	}{
		{unix.ENOENT, "/dev/net/tun not found: load the tun module", os.ErrNotExist},
		{unix.ENODEV, "/dev/net/tun not found: load the tun module", unix.ENODEV},
		{unix.EPERM, "creating TUN wg0: permission denied: run as root or with CAP_NET_ADMIN", os.ErrPermission},
		{unix.EACCES, "creating TUN wg0: permission denied: run as root or with CAP_NET_ADMIN", os.ErrPermission},
		{unix.EBUSY, "creating TUN wg0: interface busy: another process holds it", unix.EBUSY},
		{unix.EMFILE, "creating TUN wg0: too many open files", unix.EMFILE},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			err := openDeviceError("TUN", "wg0", tc.err)
			if err.Error() != tc.want {
				t.Errorf("openDeviceError(%v) = %q, want %q", tc.err, err, tc.want)
			}
			if !errors.Is(err, tc.wantIs) {
				t.Errorf("openDeviceError(%v) is not %v", tc.err, tc.wantIs)
			}
		})
	}
}

// TestOpenTUNInvalid checks the arguments rejected before any system call
// (L10: MTU 0, negative and too large).
func TestOpenTUNInvalid(t *testing.T) {
	tests := []struct {
		name string
		mtu  int
		want string
	}{
		{"", 1420, "invalid interface name"},
		{"averyveryverylongname", 1420, "invalid interface name"},
		{"wg0", 0, "invalid MTU 0"},
		{"wg0", -1, "invalid MTU -1"},
		{"wg0", 65536, "invalid MTU 65536"},
	}
	for _, tc := range tests {
		_, err := OpenTUN(tc.name, tc.mtu)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenTUN(%q, %d) = %v, want error containing %q", tc.name, tc.mtu, err, tc.want)
		}
	}
}
