// Command guestinit is the init process of the vmlab guest: the kernel runs
// it as PID 1 from the initramfs. It
//  1. mounts /proc, /sys and /dev;
//  2. loads the kernel modules listed in /modules.order, in that order;
//  3. brings up lo and eth0 with the addresses in the kernel command line's
//     vmlab.addr= (comma-separated prefixes);
//  4. opens the virtio-serial port named vmwire.PortName, greets the host and
//     runs each request in its own goroutine until a poweroff request, then
//     powers the machine off.
//
// The guest has no userland: every command (see commands) is built in,
// except exec, which runs a file the host put into the initramfs.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/internal/vmlab/vmwire"
)

func main() {
	if err := boot(); err != nil {
		fmt.Fprintf(os.Stderr, "guestinit: %v\n", err)
	}
	port, err := openPort()
	if err != nil {
		fmt.Fprintf(os.Stderr, "guestinit: %v\n", err)
		poweroff()
	}
	serve(vmwire.NewConn(port))
	poweroff()
}

// boot does steps 1 to 3. Errors are reported but do not stop the guest:
// the host sees what is missing when its commands fail.
func boot() error {
	for _, m := range []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/tmp", "tmpfs"},
		{"tmpfs", "/run", "tmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fs, 0, ""); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	// Named namespaces live in /run/netns; some tools look in /var/run.
	os.MkdirAll("/var", 0o755)
	os.Symlink("/run", "/var/run")
	if err := loadModules("/modules.order"); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	var addrs []string
	for _, f := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(f, "vmlab.addr="); ok {
			addrs = strings.Split(v, ",")
		}
	}
	if err := linkUp("lo"); err != nil {
		return err
	}
	// eth0 appears once virtio_net has probed the device.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := netlink.LinkByName("eth0"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no eth0 after 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, a := range addrs {
		if err := addrChange(true, "eth0", a); err != nil {
			return err
		}
	}
	if err := linkUp("eth0"); err != nil {
		return err
	}
	// Packets sent before the carrier is up are dropped: wait for it.
	for {
		l, err := netlink.LinkByName("eth0")
		if err == nil && l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("eth0 has no carrier 20 s after boot")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// loadModules loads each module file listed in order; a module already
// present is fine.
func loadModules(order string) error {
	b, err := os.ReadFile(order)
	if err != nil {
		return err
	}
	for _, path := range strings.Fields(string(b)) {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("load %s: %w", path, err)
		}
	}
	return nil
}

// openPort waits for the control port to appear and opens it.
func openPort() (*os.File, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err == nil && strings.TrimSpace(string(b)) == vmwire.PortName {
				return os.OpenFile("/dev/"+filepath.Base(filepath.Dir(n)), os.O_RDWR, 0)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio-serial port named %s after 10 s", vmwire.PortName)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serve runs requests until poweroff or until the port fails.
func serve(c *vmwire.Conn) {
	var uname unix.Utsname
	unix.Uname(&uname)
	c.Write(vmwire.Response{Ready: true, Output: unix.ByteSliceToString(uname.Release[:])})
	var (
		mu      sync.Mutex
		cancels = map[uint64]context.CancelFunc{}
		wg      sync.WaitGroup
	)
	for {
		var req vmwire.Request
		if err := c.Read(&req); err != nil {
			fmt.Fprintf(os.Stderr, "guestinit: read request: %v\n", err)
			return
		}
		if req.Cancel != 0 {
			mu.Lock()
			if cancel := cancels[req.Cancel]; cancel != nil {
				cancel()
			}
			mu.Unlock()
			continue
		}
		if len(req.Args) == 1 && req.Args[0] == "poweroff" {
			mu.Lock()
			for _, cancel := range cancels {
				cancel()
			}
			mu.Unlock()
			wg.Wait()
			c.Write(vmwire.Response{ID: req.ID})
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		mu.Lock()
		cancels[req.ID] = cancel
		mu.Unlock()
		wg.Go(func() {
			out, err := run(ctx, req.Args)
			mu.Lock()
			delete(cancels, req.ID)
			mu.Unlock()
			cancel()
			resp := vmwire.Response{ID: req.ID, Output: out}
			if err != nil {
				resp.Err = err.Error()
			}
			c.Write(resp)
		})
	}
}

func poweroff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
