//go:build linux

package main

// `warren up` brings a tunnel up in the foreground (package lifecycle does
// the work, in numbered steps with an undo stack), waits for a signal,
// `warren down`, the TUN or its control socket deleted from outside, or a
// failure of the engine, and then undoes everything in reverse. `warren down`
// signals the pid in the pid file.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/lifecycle"
)

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // main prints the error, once
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	// Hidden, for performance work: a CPU profile of the whole run.
	cpuProfile := fs.String("cpuprofile", "", "")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: warren up [--log-level L] FILE.conf|NAME")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage != "" {
				fmt.Fprintf(stderr, "  -%s\n    \t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
			}
		})
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("%w: up takes one config file or interface name", errUsage)
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	path, _, err := config.PathFor(fs.Arg(0))
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	return up(ctx, cfg, log, lifecycle.Options{})
}

// up runs the tunnel cfg describes until ctx is done, the interface or its
// control socket is deleted from outside, or the engine fails, then removes
// everything it added to the host. Only a failure is an error.
func up(ctx context.Context, cfg *config.Config, log *slog.Logger, opts lifecycle.Options) error {
	opts.Logger = log
	t, err := lifecycle.Up(ctx, cfg, opts)
	if err != nil {
		return err
	}
	log.Info("up", "interface", cfg.Name, "listen_port", t.ListenPort(), "peers", len(cfg.Peers), "mtu", cfg.Interface.MTU)
	return waitAndClose(ctx, t, log)
}

// waitAndClose waits until t stops, says why in one line and closes it. A
// removed interface needs no line of ours: the engine has logged it.
func waitAndClose(ctx context.Context, t *lifecycle.Tunnel, log *slog.Logger) error {
	err := t.Wait(ctx)
	switch {
	case err == nil:
		log.Info("shutting down", "interface", t.Name())
	case errors.Is(err, lifecycle.ErrSocketRemoved):
		log.Info("control socket removed, shutting down", "interface", t.Name())
	}
	if lifecycle.IsNormalStop(err) {
		err = nil
	}
	if cerr := t.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
	}
	return err
}

// pidPath is the pid file of name that `warren down` reads.
func pidPath(name string) string { return lifecycle.PIDFile(lifecycle.DefaultRunDir, name) }

func runDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: warren down NAME", errUsage)
	}
	_, name, err := config.PathFor(args[0])
	if err != nil {
		return err
	}
	b, err := os.ReadFile(pidPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s is not up (no %s)", name, pidPath(name))
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("%s: malformed pid file", pidPath(name))
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			os.Remove(pidPath(name))
			return fmt.Errorf("%s is not up (stale pid file removed)", name)
		}
		return fmt.Errorf("stop %s (pid %d): %w", name, pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s (pid %d) did not stop within 10 s", name, pid)
}
