package vmlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/vmlab/vmwire"
)

// Boot and shutdown bounds.
const (
	bootTimeout     = 90 * time.Second // boot under software emulation takes about 10 s
	poweroffTimeout = 10 * time.Second
)

// baseModules are loaded in every guest: the virtio PCI transport, the NIC
// and the serial port that carries the commands.
var baseModules = []string{"virtio_pci", "virtio_net", "virtio_console"}

// guestMAC is the guest NIC's address (locally administered, qemu's OUI).
const guestMAC = "52:54:00:77:61:01"

// QEMU is the emulator Boot runs.
const QEMU = "qemu-system-x86_64"

// Config describes a guest.
type Config struct {
	Kernel    *Kernel           // nil: FindKernel
	Modules   []string          // kernel modules to load at boot, beyond the virtio ones
	Files     map[string]string // guest path -> host file to copy into the initramfs (executable)
	Namespace *netlab.Namespace // where the TAP is created and qemu runs
	TAP       string            // name of the TAP in Namespace
	HostAddrs []netip.Prefix    // addresses of the TAP
	// GuestAddrs are the addresses of the guest's eth0.
	GuestAddrs []netip.Prefix
	MemoryMiB  int    // 0: 512
	CPUs       int    // 0: 2
	Accel      string // "kvm" or "tcg"; "" picks with Accel
}

// Guest is a running guest. Its methods may be called concurrently.
type Guest struct {
	cfg     Config
	dir     string
	cmd     *exec.Cmd
	qemuOut bytes.Buffer // qemu's own stdout and stderr, read after exit
	exited  chan struct{}
	exitErr error

	sock net.Conn
	conn *vmwire.Conn

	mu      sync.Mutex // guards the fields below
	nextID  uint64
	pending map[uint64]chan vmwire.Response
	readErr error

	readDone  chan struct{}
	closeOnce sync.Once
	closeErr  error

	// Release is the guest kernel's release, as its uname reports it.
	Release string
	// BootTime is from starting qemu to the guest's greeting.
	BootTime time.Duration
	// AccelUsed is the accelerator qemu was started with.
	AccelUsed string
}

// Probe reports why a guest cannot boot on this machine, or nil: qemu, a
// kernel with its modules, and the go command (to build the guest's init)
// must be installed, and the caller must be able to create namespaces.
func Probe() error {
	if err := netlab.Probe(); err != nil {
		return err
	}
	if _, err := exec.LookPath(QEMU); err != nil {
		return fmt.Errorf("%s not installed (Debian package qemu-system-x86)", QEMU)
	}
	if _, err := exec.LookPath("go"); err != nil {
		return errors.New("no go command to build the guest's init")
	}
	_, err := FindKernel()
	return err
}

// Accel returns the accelerator Boot uses by default: $WARREN_VMLAB_ACCEL
// if it is "kvm" or "tcg"; with "auto", "kvm" where KVMUsable says so; else
// "tcg". Software emulation is the default because a nested /dev/kvm can
// answer every probe and still not run a guest: on the machines this was
// written on, KVM_CREATE_VM succeeds but the guest never reaches its init
// within 90 s, while emulation boots it in about 10 s.
func Accel() string {
	switch a := os.Getenv("WARREN_VMLAB_ACCEL"); a {
	case "kvm", "tcg":
		return a
	case "auto":
		if KVMUsable() == nil {
			return "kvm"
		}
	}
	return "tcg"
}

// KVMUsable reports why /dev/kvm cannot run a guest, or nil if it answers
// KVM_GET_API_VERSION with 12 and creates a VM.
func KVMUsable() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	const (
		kvmGetAPIVersion = 0xAE00
		kvmCreateVM      = 0xAE01
	)
	v, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
	if errno != 0 {
		return fmt.Errorf("KVM_GET_API_VERSION: %w", errno)
	}
	if v != 12 {
		return fmt.Errorf("KVM API version %d, want 12", v)
	}
	vm, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), kvmCreateVM, 0)
	if errno != 0 {
		return fmt.Errorf("KVM_CREATE_VM: %w", errno)
	}
	unix.Close(int(vm))
	return nil
}

// Boot builds the initramfs, starts qemu inside cfg.Namespace and waits for
// the guest's greeting. On error everything it started is gone again.
func Boot(ctx context.Context, cfg Config) (*Guest, error) {
	if cfg.Kernel == nil {
		k, err := FindKernel()
		if err != nil {
			return nil, err
		}
		cfg.Kernel = k
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 512
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.Accel == "" {
		cfg.Accel = Accel()
	}
	dir, err := os.MkdirTemp("", "vmlab-")
	if err != nil {
		return nil, err
	}
	g := &Guest{cfg: cfg, dir: dir, exited: make(chan struct{}), readDone: make(chan struct{}),
		pending: map[uint64]chan vmwire.Response{}, AccelUsed: cfg.Accel}
	if err := g.boot(ctx); err != nil {
		err = fmt.Errorf("boot guest: %w%s", err, g.diagnostics())
		g.Close()
		return nil, err
	}
	return g, nil
}

func (g *Guest) boot(ctx context.Context) error {
	initrd := filepath.Join(g.dir, "initrd.cpio")
	if err := g.buildInitramfs(initrd); err != nil {
		return err
	}
	var addrs []string
	for _, p := range g.cfg.GuestAddrs {
		addrs = append(addrs, p.String())
	}
	sock := filepath.Join(g.dir, "ctl.sock")
	// Under KVM the guest sees the host's CPU, less IA32_ARCH_CAPABILITIES,
	// which a nested hypervisor may refuse to set (qemu then aborts);
	// under emulation the most qemu can emulate (AVX2 for the kernel's
	// ChaCha20 and Poly1305).
	accel, cpu := g.cfg.Accel, "host,-arch-capabilities"
	if accel == "tcg" {
		accel, cpu = "tcg,thread=multi", "max"
	}
	args := []string{
		"-nodefaults", "-display", "none", "-no-reboot", "-no-user-config",
		"-accel", accel, "-cpu", cpu,
		"-m", fmt.Sprint(g.cfg.MemoryMiB), "-smp", fmt.Sprint(g.cfg.CPUs),
		"-kernel", g.cfg.Kernel.Image, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=4 vmlab.addr=" + strings.Join(addrs, ","),
		"-serial", "file:" + filepath.Join(g.dir, "console.log"),
		"-monitor", "none",
		"-chardev", "socket,id=ctl,path=" + sock + ",server=on,wait=off",
		"-device", "virtio-serial-pci,id=vs",
		"-device", "virtserialport,bus=vs.0,chardev=ctl,name=" + vmwire.PortName,
		"-netdev", "tap,id=n0,ifname=" + g.cfg.TAP + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + guestMAC,
	}
	start := time.Now()
	g.cmd = g.cfg.Namespace.Command(context.WithoutCancel(ctx), QEMU, args...)
	g.cmd.Stdout, g.cmd.Stderr = &g.qemuOut, &g.qemuOut
	// No Pdeathsig: it fires when the forking thread exits, and netlab's
	// namespace helpers end the threads they lock, so qemu would die at
	// random. Close, or the namespace's Close, ends qemu instead.
	if err := g.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", QEMU, err)
	}
	go func() {
		g.exitErr = g.cmd.Wait()
		close(g.exited)
	}()
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	if err := g.configureTAP(ctx); err != nil {
		return err
	}
	if err := g.dial(ctx, sock); err != nil {
		return err
	}
	hello := make(chan error, 1)
	go func() {
		var r vmwire.Response
		err := g.conn.Read(&r)
		if err == nil && !r.Ready {
			err = fmt.Errorf("first message %+v is not a greeting", r)
		}
		g.Release = r.Output
		hello <- err
	}()
	select {
	case err := <-hello:
		if err != nil {
			return err
		}
	case <-g.exited:
		return fmt.Errorf("qemu exited during boot: %v", g.exitErr)
	case <-ctx.Done():
		return fmt.Errorf("no greeting from the guest: %w", ctx.Err())
	}
	g.BootTime = time.Since(start)
	go g.readLoop()
	return nil
}

// buildInitramfs writes the guest's init, its modules and cfg.Files into a
// cpio archive at path.
func (g *Guest) buildInitramfs(path string) error {
	initBin := filepath.Join(g.dir, "init")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", initBin,
		"github.com/warrenvpn/warren/internal/vmlab/guestinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build guest init: %v\n%s", err, out)
	}
	mods, err := g.cfg.Kernel.ResolveModules(append(append([]string(nil), baseModules...), g.cfg.Modules...))
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	c := newCPIO(f)
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "bin", "lib", "lib/modules"} {
		c.Dir(d)
	}
	c.CharDev("dev/console", 5, 1)
	c.CopyFile("init", 0o755, initBin)
	var order []string
	for _, m := range mods {
		name := "lib/modules/" + filepath.Base(m)
		c.CopyFile(name, 0o644, m)
		order = append(order, "/"+name)
	}
	c.File("modules.order", 0o644, []byte(strings.Join(order, "\n")+"\n"))
	for dst, src := range g.cfg.Files {
		c.CopyFile(strings.TrimPrefix(dst, "/"), 0o755, src)
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return f.Close()
}

// configureTAP waits for qemu's TAP and gives it the host addresses.
func (g *Guest) configureTAP(ctx context.Context) error {
	h := g.cfg.Namespace.Handle()
	var link netlink.Link
	for {
		var err error
		if link, err = h.LinkByName(g.cfg.TAP); err == nil {
			break
		}
		if err := g.wait(ctx, 5*time.Millisecond); err != nil {
			return fmt.Errorf("TAP %s: %w", g.cfg.TAP, err)
		}
	}
	for _, p := range g.cfg.HostAddrs {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil {
			return fmt.Errorf("add %s to %s: %w", p, g.cfg.TAP, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", g.cfg.TAP, err)
	}
	return nil
}

// dial connects to qemu's control socket.
func (g *Guest) dial(ctx context.Context, path string) error {
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			g.sock = c
			g.conn = vmwire.NewConn(c)
			return nil
		}
		if err := g.wait(ctx, 5*time.Millisecond); err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
	}
}

// wait sleeps for d, or fails if qemu exits or ctx ends first.
func (g *Guest) wait(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-g.exited:
		return fmt.Errorf("qemu exited: %v", g.exitErr)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readLoop hands each response to the request waiting for it.
func (g *Guest) readLoop() {
	defer close(g.readDone)
	for {
		var r vmwire.Response
		err := g.conn.Read(&r)
		g.mu.Lock()
		if err != nil {
			g.readErr = err
			for id, ch := range g.pending {
				close(ch)
				delete(g.pending, id)
			}
			g.mu.Unlock()
			return
		}
		if ch := g.pending[r.ID]; ch != nil {
			ch <- r
			delete(g.pending, r.ID)
		}
		g.mu.Unlock()
	}
}

// Run runs a guest command (see guestinit) and returns its output. If ctx
// ends first, the guest is told to cancel the command and Run returns
// ctx's error at once.
func (g *Guest) Run(ctx context.Context, args ...string) (string, error) {
	ch := make(chan vmwire.Response, 1)
	g.mu.Lock()
	if g.readErr != nil {
		err := g.readErr
		g.mu.Unlock()
		return "", fmt.Errorf("guest connection: %w", err)
	}
	g.nextID++
	id := g.nextID
	g.pending[id] = ch
	g.mu.Unlock()
	if err := g.conn.Write(vmwire.Request{ID: id, Args: args}); err != nil {
		return "", fmt.Errorf("send %v: %w", args, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return "", fmt.Errorf("%v: guest connection lost%s", args, g.diagnostics())
		}
		if r.Err != "" {
			return r.Output, fmt.Errorf("guest %v: %s", args, r.Err)
		}
		return r.Output, nil
	case <-ctx.Done():
		g.conn.Write(vmwire.Request{Cancel: id})
		return "", fmt.Errorf("guest %v: %w", args, ctx.Err())
	}
}

// Console returns what the guest has written to its serial console so far.
func (g *Guest) Console() string {
	b, _ := os.ReadFile(filepath.Join(g.dir, "console.log"))
	return string(b)
}

// diagnostics is the console and qemu's output, for error messages.
func (g *Guest) diagnostics() string {
	var b strings.Builder
	if c := g.Console(); c != "" {
		fmt.Fprintf(&b, "\n--- guest console:\n%s", c)
	}
	select {
	case <-g.exited:
		if g.qemuOut.Len() > 0 {
			fmt.Fprintf(&b, "\n--- qemu:\n%s", g.qemuOut.String())
		}
	default:
	}
	return b.String()
}

// Close powers the guest off, kills qemu if it has not exited within 10 s,
// and removes the temporary files. The TAP goes with the caller's namespace.
// It is idempotent.
func (g *Guest) Close() error {
	g.closeOnce.Do(func() {
		if g.cmd != nil && g.cmd.Process != nil {
			if g.conn != nil {
				ctx, cancel := context.WithTimeout(context.Background(), poweroffTimeout)
				g.Run(ctx, "poweroff")
				cancel()
			}
			select {
			case <-g.exited:
			case <-time.After(poweroffTimeout):
				g.closeErr = errors.New("guest did not power off within 10 s; killed")
				g.cmd.Process.Kill()
				<-g.exited
			}
		}
		if g.sock != nil {
			g.sock.Close()
		}
		os.RemoveAll(g.dir)
	})
	return g.closeErr
}
