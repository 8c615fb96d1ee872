// Package vmlab boots a small Linux guest under qemu for tests that need a
// full kernel: the kernel's own WireGuard, ipvlan, dummy links and netem,
// which the machines running the tests may lack.
//
// The guest is Debian's kernel (linux-image-amd64) with an initramfs built at
// boot time from the guestinit command (a static Go init), the kernel modules
// it needs, resolved with their dependencies from modules.dep, and any files
// the caller adds (the warren binary). It has one virtio NIC on a TAP inside
// a network namespace the caller owns, so the guest is one more host on the
// caller's lab network, and takes commands over a virtio-serial port (see
// package vmwire). There is no disk image and no network access.
//
// Package vmlab is test tooling: only tests import it.
package vmlab
