package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/warrenvpn/warren/internal/netlab"
	"golang.org/x/sys/unix"
)

// proc is a tunnel endpoint process running inside a namespace.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // of Wait, valid after done
}

// startProc starts bin with args inside ns. Canceling ctx stops it like stop.
func startProc(ctx context.Context, ns *netlab.Namespace, name string, env []string, bin string, args ...string) (*proc, error) {
	cmd := ns.Command(ctx, bin, args...)
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	// No Pdeathsig: it fires when the forking OS thread exits, and the
	// runtime ends threads (those locked into a namespace by netlab), which
	// killed endpoints in the middle of runs. Lab.Close kills what is left.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopTimeout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// failure describes how an exited process ended, with the end of its output.
func (p *proc) failure() error {
	<-p.done
	return fmt.Errorf("%v; output: %s", p.err, p.tail())
}

// tail is the end of the process's output.
func (p *proc) tail() string {
	s := strings.TrimSpace(p.out.String())
	if s == "" {
		return "(none)"
	}
	return s
}

// stop ends the process with SIGTERM, then SIGKILL after stopTimeout, and
// waits for it. A process that had already died reports why.
func (p *proc) stop() error {
	if p.exited() {
		return fmt.Errorf("%s died during the run: %w", p.name, p.failure())
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s ignored SIGTERM for %v", p.name, stopTimeout)
	}
	return nil
}

// cpu is the CPU time (user+system, all threads) the process has used.
func (p *proc) cpu() (time.Duration, error) {
	if p.exited() {
		return 0, fmt.Errorf("%s died: %w", p.name, p.failure())
	}
	return procCPU(p.cmd.Process.Pid)
}

// procCPU reads utime+stime of process pid from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// selfCPU is the CPU time of this process: in the veth scenario the traffic
// generators are the endpoints, and the kernel's work for the veth pair is
// charged to them.
func selfCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// tailBuffer keeps the last logTailBytes written to it; safe for
// concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

// Write appends b, dropping the oldest bytes beyond logTailBytes.
func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if n := len(t.buf) - logTailBytes; n > 0 {
		t.buf = append(t.buf[:0], t.buf[n:]...)
	}
	return len(b), nil
}

// String returns the bytes kept.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
