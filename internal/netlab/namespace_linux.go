package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// runDir is where `ip netns` looks for named namespaces.
const runDir = "/run/netns"

// killTimeout bounds how long Close waits for killed processes to leave.
const killTimeout = 5 * time.Second

// Namespace is a named network namespace, bind-mounted at /run/netns/NAME so
// that `ip netns exec NAME` enters it.
type Namespace struct {
	name   string
	ns     netns.NsHandle
	handle *netlink.Handle

	closeOnce sync.Once
	closeErr  error
}

// NewNamespace creates a network namespace named prefix followed by a dash
// and a random suffix, so that concurrent tests never collide, and brings its
// loopback up. Close removes it.
func NewNamespace(prefix string) (*Namespace, error) {
	name := uniqueName(prefix)
	type result struct {
		ns  netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The thread is left locked on purpose: it ends up in the new
		// namespace, and a goroutine that exits locked takes its thread
		// with it, so no other goroutine ever runs there.
		runtime.LockOSThread()
		ns, err := netns.NewNamed(name)
		if err != nil {
			// NewNamed leaves the file behind if the bind mount fails.
			os.Remove(filepath.Join(runDir, name))
		}
		done <- result{ns, err}
	}()
	r := <-done
	if r.err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, r.err)
	}
	n := &Namespace{name: name, ns: r.ns}
	h, err := netlink.NewHandleAt(r.ns)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("netlink handle in namespace %s: %w", name, err)
	}
	n.handle = h
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("loopback up in namespace %s: %w", name, err)
	}
	return n, nil
}

// Name is the namespace's name under /run/netns.
func (n *Namespace) Name() string { return n.name }

// Handle is a netlink handle bound to the namespace. It stays valid until
// Close; it must not be closed by the caller.
func (n *Namespace) Handle() *netlink.Handle { return n.handle }

// Do runs f on a locked OS thread inside the namespace and returns its error.
// Sockets and devices f creates belong to the namespace and stay there after
// Do returns. Goroutines f starts do not run inside the namespace.
func (n *Namespace) Do(f func() error) error {
	done := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it dies with the goroutine instead
		// of going back to the scheduler in the wrong namespace.
		runtime.LockOSThread()
		if err := netns.Set(n.ns); err != nil {
			done <- fmt.Errorf("enter namespace %s: %w", n.name, err)
			return
		}
		done <- f()
	}()
	return <-done
}

// Command returns a command that runs name with args inside the namespace via
// `ip netns exec`. Close kills it if it is still running then.
func (n *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
}

// localReadyTimeout bounds WaitLocal.
const localReadyTimeout = 5 * time.Second

// WaitLocal waits until the kernel delivers packets to addr locally. An IPv6
// address added before its link came up gets its local route from a work
// queue a little later, even without duplicate address detection.
func (n *Namespace) WaitLocal(addr netip.Addr) error {
	deadline := time.Now().Add(localReadyTimeout)
	for {
		routes, err := n.handle.RouteGet(addr.AsSlice())
		if err == nil && len(routes) > 0 && routes[0].Type == unix.RTN_LOCAL {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("address %v in namespace %s not local after %v: %v", addr, n.name, localReadyTimeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// Close kills every process still inside the namespace, then removes the
// namespace and, with it, every link in it. It is idempotent.
func (n *Namespace) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if err := n.killAll(); err != nil {
			errs = append(errs, err)
		}
		if n.handle != nil {
			n.handle.Close()
		}
		if err := netns.DeleteNamed(n.name); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", n.name, err))
		}
		if err := n.ns.Close(); err != nil {
			errs = append(errs, err)
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// killAll sends SIGKILL to every process in the namespace and waits until
// none is left (zombies have left their namespace already).
func (n *Namespace) killAll() error {
	var st unix.Stat_t
	if err := unix.Fstat(int(n.ns), &st); err != nil {
		return fmt.Errorf("stat namespace %s: %w", n.name, err)
	}
	deadline := time.Now().Add(killTimeout)
	for {
		pids := pidsIn(st.Dev, st.Ino)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s: processes %v still running", n.name, pids)
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pidsIn lists the processes whose network namespace is the nsfs inode
// (dev, ino), as `ip netns pids` does.
func pidsIn(dev, ino uint64) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Dev == dev && st.Ino == ino {
			pids = append(pids, pid)
		}
	}
	return pids
}
