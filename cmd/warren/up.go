//go:build linux

package main

// `warren up` brings a tunnel up in the foreground (package lifecycle does
// the work, in numbered steps with an undo stack), waits for a signal,
// `warren down`, the TUN or its control socket deleted from outside, or a
// failure of the engine, and then undoes everything in reverse. SIGHUP
// (`warren reload`) re-reads the config file and applies the difference.
// `warren down` signals the pid in the pid file if it is still warren's, and
// otherwise restores what a dead instance left (its crash journal). Under
// systemd (dist/warren@.service, Type=notify) it sends READY=1 once traffic
// can flow, RELOADING=1 and READY=1 around a reload, STOPPING=1, and a
// STATUS= line with each.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/internal/gomaxprocs"
	"github.com/warrenvpn/warren/internal/sdnotify"
	"github.com/warrenvpn/warren/lifecycle"
)

// newLogger returns the logger of a tunnel command: text or JSON lines on
// w at level. A failed write (stderr closed, or a pipe nobody reads) is
// dropped: logging never stops or kills warren.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	return newLoggerFormat(w, level, "text")
}

func newLoggerFormat(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q: want text or json", errUsage, format)
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	// Hidden, for performance work: a CPU profile of the whole run.
	cpuProfile := fs.String("cpuprofile", "", "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: up: %v", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: up takes one config file or interface name", errUsage)
	}
	log, err := newLoggerFormat(stderr, *level, *format)
	if err != nil {
		return err
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
	path, _, err := config.PathFor(fs.Arg(0))
	if err != nil {
		return err
	}
	warnWorldAccessible(path, stderr)
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	ctx, stop := stopSignals(ctx)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	retries, err := endpointRetries(os.Getenv("WG_ENDPOINT_RESOLUTION_RETRIES"))
	if err != nil {
		return err
	}
	opts := lifecycle.Options{Step: pauseAt(os.Getenv("WARREN_PAUSE_AT"), stderr), EndpointRetries: retries}
	return upReloading(ctx, cfg, path, hup, log, opts)
}

// endpointRetries reads WG_ENDPOINT_RESOLUTION_RETRIES as wg does: a
// number of retries of an endpoint name that does not resolve, or
// "infinity"; unset means lifecycle.DefaultEndpointRetries (15, about 72 s).
// warren retries in the background, with the tunnel up.
func endpointRetries(v string) (int, error) {
	switch v {
	case "":
		return 0, nil
	case "infinity":
		return math.MaxInt, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("WG_ENDPOINT_RESOLUTION_RETRIES=%q: want a number of retries or infinity", v)
	}
	if n == 0 {
		return -1, nil // lifecycle: none
	}
	return n, nil
}

// warnWorldAccessible prints wg-quick's warning when others may read the
// file (others' bits set on it and on its directory): it holds the private
// key.
func warnWorldAccessible(path string, w io.Writer) {
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return
	}
	if fi.Mode().Perm()&di.Mode().Perm()&0o007 != 0 {
		fmt.Fprintf(w, "Warning: `%s' is world accessible\n", path)
	}
}

// stopSignals returns ctx cancelled also by SIGQUIT (SIGINT and SIGTERM are
// main's), so that every way of asking warren to stop undoes what it added;
// and it makes SIGPIPE harmless: a write to a closed pipe on stdout or
// stderr then fails with EPIPE instead of killing the process. Standard
// descriptors that are closed are opened on /dev/null first, so that no
// file warren opens (the TUN, a socket) takes their number and receives
// its log lines.
func stopSignals(ctx context.Context) (context.Context, context.CancelFunc) {
	for fd := range 3 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == unix.EBADF {
			if null, err := unix.Open("/dev/null", unix.O_RDWR, 0); err == nil && null != fd {
				unix.Dup2(null, fd)
				unix.Close(null)
			}
		}
	}
	signal.Ignore(syscall.SIGPIPE)
	return signal.NotifyContext(ctx, syscall.SIGQUIT)
}

// pauseAt returns a lifecycle step hook that stops start-up for good at
// point (as lifecycle.Options.Step names them, "step 8" or "journal"),
// at its n-th occurrence when point ends in "#n", after printing "paused
// at POINT" on stderr. It is for the crash tests, which kill warren there;
// "" pauses nowhere.
func pauseAt(point string, stderr io.Writer) func(string) {
	if point == "" {
		return nil
	}
	want, n := point, 1
	if i := strings.LastIndexByte(point, '#'); i >= 0 {
		if v, err := strconv.Atoi(point[i+1:]); err == nil {
			want, n = point[:i], v
		}
	}
	seen := 0
	return func(p string) {
		if p != want {
			return
		}
		seen++
		if seen == n {
			fmt.Fprintf(stderr, "paused at %s\n", point)
			select {}
		}
	}
}

// up runs the tunnel cfg describes until ctx is done, the interface or its
// control socket is deleted from outside, or the engine fails, then removes
// everything it added to the host. Only a failure is an error.
func up(ctx context.Context, cfg *config.Config, log *slog.Logger, opts lifecycle.Options) error {
	return upReloading(ctx, cfg, "", nil, log, opts)
}

// upReloading is up that also re-reads the config file at path and applies
// it (lifecycle.Tunnel.Reconfigure) at each value from hup (SIGHUP). A file
// that does not parse, or a change that fails, is logged and leaves the
// tunnel as it was.
func upReloading(ctx context.Context, cfg *config.Config, path string, hup <-chan os.Signal, log *slog.Logger, opts lifecycle.Options) error {
	opts.Logger = log
	t, err := lifecycle.Up(ctx, cfg, opts)
	if err != nil {
		if ctx.Err() != nil {
			// SIGINT or SIGTERM during start-up (a PostUp hook killed, a
			// step cut short): a stop asked for, not a failure; Up undid
			// what it had done, as after a stop once up.
			log.Info("stopped during start-up", "interface", cfg.Name, "err", err)
			return nil
		}
		return err
	}
	log.Info("up", "interface", cfg.Name, "listen_port", t.ListenPort(), "peers", len(cfg.Peers), "mtu", cfg.Interface.MTU)
	sd := sdnotify.New()
	sd.Ready(upStatus(t))
	done := make(chan struct{})
	var wg sync.WaitGroup
	if hup != nil && path != "" {
		wg.Go(func() { reloadLoop(ctx, t, path, hup, done, log, sd) })
	}
	stopGoverning := startGoverning(t, log)
	var saveErr error
	save := func() {
		if c := t.Config(); c != nil && c.Interface.SaveConfig && path != "" {
			if saveErr = t.SaveConfig(path); saveErr != nil {
				log.Error("running configuration not saved", "interface", t.Name(), "err", saveErr)
			}
		}
	}
	err = waitAndClose(ctx, t, log, done, sd, save)
	stopGoverning()
	wg.Wait()
	return errors.Join(err, saveErr)
}

// startGoverning runs a gomaxprocs.Governor for t until the function it
// returns is called (which waits for it): GOMAXPROCS stays at the cores
// t's data path keeps busy when each pipeline's directions share one
// (Tunnel.DataPathCores) while the process uses less than that, and is the
// machine's otherwise. A GOMAXPROCS set in the environment is left alone.
func startGoverning(t *lifecycle.Tunnel, log *slog.Logger) (stop func()) {
	if os.Getenv("GOMAXPROCS") != "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		governProcs(ctx, t.DataPathCores(), log)
	}()
	return func() {
		cancel()
		<-done
	}
}

// governProcs is startGoverning's goroutine.
func governProcs(ctx context.Context, cores int, log *slog.Logger) {
	g := gomaxprocs.Governor{
		Low:  cores,
		High: runtime.GOMAXPROCS(0),
		CPU: func() (time.Duration, error) {
			var ru unix.Rusage
			if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
				return 0, err
			}
			return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
		},
		Set: func(n int) { runtime.GOMAXPROCS(n) },
		Log: log,
	}
	g.Run(ctx)
}

// reloadLoop applies the config file at path at each SIGHUP, until done
// is closed.
func reloadLoop(ctx context.Context, t *lifecycle.Tunnel, path string, hup <-chan os.Signal, done <-chan struct{}, log *slog.Logger, sd *sdnotify.Notifier) {
	for {
		select {
		case <-done:
			return
		case <-hup:
		}
		log.Info("reloading", "interface", t.Name(), "file", path)
		sd.Reloading("reloading " + path)
		if err := reload(ctx, t, path); err != nil {
			log.Error("reload failed; the tunnel runs on unchanged", "interface", t.Name(), "err", err)
			sd.Ready(fmt.Sprintf("reload failed, running unchanged: %v", err))
			continue
		}
		sd.Ready(upStatus(t))
	}
}

// upStatus is the systemd status line of a running tunnel.
func upStatus(t *lifecycle.Tunnel) string {
	peers := 0
	if c := t.Config(); c != nil {
		peers = len(c.Peers)
	}
	return fmt.Sprintf("%s up: %d peers, UDP port %d", t.Name(), peers, t.ListenPort())
}

// reload reads the config file at path and applies it to t.
func reload(ctx context.Context, t *lifecycle.Tunnel, path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err // names file, line and key
	}
	if cfg.Name != t.Name() {
		return fmt.Errorf("%s names interface %q, not %q", path, cfg.Name, t.Name())
	}
	return t.Reconfigure(ctx, cfg)
}

// waitAndClose waits until t stops, says why in one line and closes it. A
// removed interface needs no line of ours: the engine has logged it.
func waitAndClose(ctx context.Context, t *lifecycle.Tunnel, log *slog.Logger, done chan<- struct{}, sd *sdnotify.Notifier, beforeClose func()) error {
	err := t.Wait(ctx)
	if done != nil {
		close(done)
	}
	if beforeClose != nil {
		beforeClose() // SaveConfig: before anything is taken down, as wg-quick
	}
	if err == nil {
		sd.Stopping("stopping: asked to")
	} else {
		sd.Stopping(fmt.Sprintf("stopping: %v", err))
	}
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

// runDown stops the running instance of NAME: SIGTERM to the process its
// pid file names, if that is still the process that wrote it (pid and start
// time), then up to 10 s for it to go. With no instance running it restores
// what a dead one left behind, as its crash journal records.
func runDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: warren down NAME", errUsage)
	}
	_, name, err := config.PathFor(args[0])
	if err != nil {
		return err
	}
	pid, ok := lifecycle.Running(lifecycle.DefaultRunDir, name)
	if !ok {
		log, _ := newLogger(stderr, "info")
		restored, err := lifecycle.Recover(name, lifecycle.Options{Logger: log})
		if err != nil {
			return err
		}
		if !restored {
			return fmt.Errorf("%s is not up", name)
		}
		fmt.Fprintf(stdout, "%s was not running; removed what it left behind\n", name)
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
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
