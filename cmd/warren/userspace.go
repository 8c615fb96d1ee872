//go:build linux

package main

// `warren userspace [-f] IFACE` behaves like `wireguard-go [-f] IFACE`: it
// creates the TUN and the control socket and nothing else, and waits to be
// configured with `wg` (keys, port, peers) and `ip` (addresses, routes). That
// is what wg-quick expects of a userspace implementation:
//
//	WG_QUICK_USERSPACE_IMPLEMENTATION=warren wg-quick up wg0
//
// wg-quick starts it as `warren wg0`, so a bare interface name is accepted as
// the command when that variable is set. Without -f (or
// WG_PROCESS_FOREGROUND=1) it detaches and returns once the socket is ready;
// the detached process then logs to /run/warren/IFACE.log (emptied at each
// start, removed after a normal stop, kept after a failure), in the
// foreground to stderr.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/internal/sdnotify"
	"github.com/warrenvpn/warren/lifecycle"
)

// isWGQuickInvocation reports whether args look like wg-quick starting a
// userspace implementation: a lone interface name, with wg-quick's variable
// in the environment (so that a mistyped command never creates a device).
func isWGQuickInvocation(args []string) bool {
	if os.Getenv("WG_QUICK_USERSPACE_IMPLEMENTATION") == "" {
		return false
	}
	if len(args) == 2 && (args[0] == "-f" || args[0] == "--foreground") {
		args = args[1:]
	}
	return len(args) == 1 && config.ValidName(args[0])
}

func runUserspace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userspace", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // main prints the error, once
	fg := fs.Bool("f", false, "stay in the foreground")
	fs.BoolVar(fg, "foreground", false, "stay in the foreground")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 1 || !config.ValidName(fs.Arg(0)) {
		return fmt.Errorf("%w: warren userspace [-f] IFACE (IFACE: %s)", errUsage, config.NameRule)
	}
	name := fs.Arg(0)
	if !*fg && os.Getenv("WG_PROCESS_FOREGROUND") != "1" {
		return detach(ctx, name)
	}
	log, err := newLoggerFormat(stderr, *level, *format)
	if err != nil {
		return err
	}
	ctx, stop := stopSignals(ctx)
	defer stop()
	signal.Ignore(syscall.SIGHUP) // nothing to reload; never die without cleanup
	err = serveUserspace(ctx, name, log, lifecycle.Options{})
	if f := os.Getenv("WARREN_LOG_FILE"); f != "" && err == nil {
		os.Remove(f) // a normal stop leaves nothing to read
	}
	return err
}

// detach starts this command again in the foreground in a session of its
// own, and returns once its control socket answers.
func detach(ctx context.Context, name string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logFile, err := openUserspaceLog(name)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(exe, "userspace", "-f", name)
	cmd.Env = append(os.Environ(), "WG_PROCESS_FOREGROUND=1", "WARREN_LOG_FILE="+logFile.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := getState(name); err == nil {
			return nil
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logFile.Name())
			return fmt.Errorf("warren userspace %s exited: %v\n%s", name, err, out)
		case <-deadline:
			cmd.Process.Kill()
			return fmt.Errorf("warren userspace %s: control socket not ready within 10 s (log: %s)", name, logFile.Name())
		case <-ctx.Done():
			cmd.Process.Kill()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// userspaceLog is where a detached `warren userspace NAME` logs: a person
// reads it there (README), and it lives as long as the run directory.
func userspaceLog(name string) string {
	return filepath.Join(lifecycle.DefaultRunDir, name+".log")
}

// openUserspaceLog opens the detached device's log file, emptied, readable
// by its owner only; where the run directory cannot be written (not root),
// a temporary file instead.
func openUserspaceLog(name string) (*os.File, error) {
	if err := os.MkdirAll(lifecycle.DefaultRunDir, 0o755); err == nil {
		if f, err := os.OpenFile(userspaceLog(name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err == nil {
			return f, nil
		}
	}
	return os.CreateTemp("", "warren-"+name+"-*.log")
}

// serveUserspace runs the bare device name until ctx is done, the
// interface is deleted (wg-quick down deletes it), its control socket is
// deleted, or the engine fails.
func serveUserspace(ctx context.Context, name string, log *slog.Logger, opts lifecycle.Options) error {
	opts.Logger = log
	t, err := lifecycle.UpDevice(ctx, name, opts)
	if err != nil {
		return err
	}
	log.Info("userspace device ready", "interface", name, "socket", t.ControlAddr())
	sd := sdnotify.New()
	sd.Ready(name + " ready for wg and ip: " + t.ControlAddr())
	stop := startGoverning(t, log)
	defer stop()
	return waitAndClose(ctx, t, log, nil, sd, nil)
}
