//go:build linux

package main

// `warren up` brings a tunnel up in the foreground, in this order; a failure
// at any step undoes the steps before it (the undo stack), and so does SIGINT
// or SIGTERM at the end:
//  1. load the config, resolve the peers' endpoints, run PreUp;
//  2. create the TUN (its MTU set);
//  3. bind the UDP port (with the fwmark the routes need);
//  4. start the engine with the keys and peers;
//  5. apply addresses, link state, routes, rules and sysctls (host.Host);
//  6. open the control socket (wg, warren show), DNS, PostUp, pid file;
//  7. wait for a signal, `warren down`, or the TUN vanishing;
//  8. PreDown, undo 6 to 2 in reverse, PostDown.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/device/host"
	"github.com/warrenvpn/warren/device/tun"
	"github.com/warrenvpn/warren/transport"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
)

// runDir holds one pid file per running tunnel, for `warren down`.
const runDir = "/run/warren"

// undoStack runs cleanups in reverse order and collects their errors.
type undoStack []func() error

func (u *undoStack) push(f func() error) { *u = append(*u, f) }

func (u *undoStack) run() error {
	var errs []error
	for i := len(*u) - 1; i >= 0; i-- {
		if err := (*u)[i](); err != nil {
			errs = append(errs, err)
		}
	}
	*u = nil
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
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
	return up(ctx, cfg, log)
}

// up runs the tunnel cfg describes until ctx is done, then removes everything
// it added to the host.
func up(ctx context.Context, cfg *config.Config, log *slog.Logger) (err error) {
	if cfg.Interface.Mode != config.ModeTUN {
		return fmt.Errorf("%s: Mode = %s: not supported yet, only tun", cfg.Name, cfg.Interface.Mode)
	}
	name := cfg.Name
	var undo undoStack
	defer func() {
		if uerr := undo.run(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", uerr))
		}
	}()

	// 1. Endpoints and PreUp.
	peers, err := enginePeers(ctx, cfg)
	if err != nil {
		return err
	}
	if err := runHooks(ctx, "PreUp", cfg.Interface.PreUp, name, log); err != nil {
		return err
	}

	if err := recoverCrashed(name, log); err != nil {
		return err
	}

	// 2. TUN.
	dev, err := tun.OpenTUN(name, cfg.Interface.MTU)
	if err != nil {
		return err
	}
	closeTUN := func() error { return dev.Close() }
	undo.push(func() error { return closeTUN() })

	// 3. UDP, marked so that a default route through the tunnel spares it.
	var allowed []netip.Prefix
	for _, p := range cfg.Peers {
		allowed = append(allowed, p.AllowedIPs...)
	}
	plan := host.PlanRoutes(host.RouteOptions{
		Table:   cfg.Interface.Table,
		FwMark:  cfg.Interface.FwMark,
		Allowed: allowed,
	})
	udp, err := transport.Listen(transport.Options{
		Port:   cfg.Interface.ListenPort,
		FwMark: plan.FwMark,
		Logger: log,
	})
	if err != nil {
		return err
	}

	// 4. Engine: it owns the TUN and the UDP socket from here on.
	eng := tunnel.New(dev, udp, tunnel.Options{Logger: log, Rebind: rebinder(log)})
	closeTUN = func() error { return nil }
	undo.push(func() error { return closeEngine(eng) })
	if err := eng.SetConfig(tunnel.Config{
		PrivateKey: cfg.Interface.PrivateKey,
		ListenPort: udp.Port(),
		FwMark:     plan.FwMark,
		Peers:      peers,
	}); err != nil {
		return err
	}

	// 5. Host state.
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	undo.push(func() error { nl.Close(); return nil }) // after host.Undo
	undo.push(func() error { return removeJournal(name) })
	hm := host.NewManager(nl, host.ProcSys{})
	undo.push(hm.Undo)
	_, err = hm.Apply(host.State{
		Link:      name,
		MTU:       cfg.Interface.MTU,
		Up:        true,
		Addresses: cfg.Interface.Addresses,
		Routes:    plan.Routes,
		Rules:     plan.Rules,
		Sysctls:   plan.Sysctls,
	})
	if jerr := writeJournal(name, hm.Journal()); jerr != nil {
		log.Warn("crash journal not written: a kill -9 would leave rules and sysctls behind", "err", jerr)
	}
	if err != nil {
		return fmt.Errorf("configure %s: %w", name, err)
	}
	if err := eng.Up(); err != nil {
		return err
	}

	// 6. Control socket, DNS, PostUp, pid file.
	_, removed, err := serveControl(name, eng, log, &undo)
	if err != nil {
		return err
	}
	if len(cfg.Interface.DNS) > 0 || len(cfg.Interface.DNSSearch) > 0 {
		if err := setDNS(ctx, name, cfg.Interface.DNS, cfg.Interface.DNSSearch); err != nil {
			log.Warn("DNS not applied", "err", err)
		} else {
			undo.push(func() error { return unsetDNS(name) })
		}
	}
	if len(cfg.Interface.PreDown) > 0 {
		undo.push(func() error { return runHooks(context.Background(), "PreDown", cfg.Interface.PreDown, name, log) })
	}
	if err := runHooks(ctx, "PostUp", cfg.Interface.PostUp, name, log); err != nil {
		return err
	}
	pidFile, err := writePidFile(name)
	if err != nil {
		return err
	}
	undo.push(func() error { return removeIfOurs(pidFile) })

	log.Info("up", "interface", name, "listen_port", udp.Port(), "peers", len(peers), "mtu", cfg.Interface.MTU)

	// 7. Wait.
	gone := watchLink(ctx, name)
	select {
	case <-ctx.Done():
		log.Info("shutting down", "interface", name)
	case <-gone:
		log.Info("interface removed from outside, shutting down", "interface", name)
	case <-removed:
		log.Info("control socket removed, shutting down", "interface", name)
	}

	// 8. PostDown runs after everything else is undone.
	if len(cfg.Interface.PostDown) > 0 {
		postDown := undo
		undo = undoStack{func() error {
			err := postDown.run()
			return errors.Join(err, runHooks(context.Background(), "PostDown", cfg.Interface.PostDown, name, log))
		}}
	}
	return nil
}

// closeEngine closes the engine; an engine already closed is not an error.
func closeEngine(eng *tunnel.Engine) error {
	if err := eng.Close(); err != nil && !errors.Is(err, tunnel.ErrClosed) {
		return fmt.Errorf("close engine: %w", err)
	}
	return nil
}

// serveControl opens the interface's UAPI socket (wg, warren show) and
// serves it until the undo stack runs. The returned channel is closed when
// the socket file is deleted from outside: like wireguard-go, warren takes
// that as a request to shut down (RELIABILITY L5).
func serveControl(name string, eng *tunnel.Engine, log *slog.Logger, undo *undoStack) (*uapi.Listener, <-chan struct{}, error) {
	ln, err := uapi.Listen(name)
	if err != nil {
		return nil, nil, fmt.Errorf("control socket for %s: %w", name, err)
	}
	srv := uapi.NewServer(eng, log)
	removed := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, uapi.ErrRemoved) {
			close(removed)
			err = nil
		}
		served <- err
	}()
	undo.push(func() error {
		ln.Close()
		return <-served
	})
	return ln, removed, nil
}

// rebinder lets `wg set listen-port` or `fwmark` move the engine to a new
// socket.
func rebinder(log *slog.Logger) func(port uint16, mark uint32) (tunnel.Transport, error) {
	return func(port uint16, mark uint32) (tunnel.Transport, error) {
		return transport.Listen(transport.Options{Port: port, FwMark: mark, Logger: log})
	}
}

// enginePeers resolves endpoints and converts the config's peers.
func enginePeers(ctx context.Context, cfg *config.Config) ([]tunnel.PeerConfig, error) {
	peers := make([]tunnel.PeerConfig, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ep, err := p.ResolveEndpoint(rctx, nil)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", p.PublicKey, err)
		}
		peers = append(peers, tunnel.PeerConfig{
			PublicKey:           p.PublicKey,
			PresharedKey:        p.PresharedKey,
			Endpoint:            ep,
			AllowedIPs:          p.AllowedIPs,
			PersistentKeepalive: p.PersistentKeepalive,
		})
	}
	return peers, nil
}

// runHooks runs wg-quick hook commands with bash, %i replaced by the
// interface name, as wg-quick does.
func runHooks(ctx context.Context, what string, cmds []string, iface string, log *slog.Logger) error {
	for _, c := range cmds {
		c = strings.ReplaceAll(c, "%i", iface)
		log.Info("hook", "hook", what, "cmd", c)
		cmd := exec.CommandContext(ctx, "bash", "-c", c)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %q: %w", what, c, err)
		}
	}
	return nil
}

// setDNS hands the servers and search domains to resolvconf, as wg-quick does.
func setDNS(ctx context.Context, iface string, servers, search []string) error {
	if _, err := exec.LookPath("resolvconf"); err != nil {
		return errors.New("resolvconf not found: install openresolv or resolvconf to apply DNS")
	}
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	cmd := exec.CommandContext(ctx, "resolvconf", "-a", "tun."+iface, "-m", "0", "-x")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("resolvconf: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func unsetDNS(iface string) error {
	if out, err := exec.Command("resolvconf", "-d", "tun."+iface, "-f").CombinedOutput(); err != nil {
		return fmt.Errorf("resolvconf -d: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// watchLink returns a channel closed when the interface disappears (deleted
// from outside, RELIABILITY L4).
func watchLink(ctx context.Context, name string) <-chan struct{} {
	gone := make(chan struct{})
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		return gone // no watch: only signals end the tunnel
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				if u.Header.Type == syscall.RTM_DELLINK && u.Attrs().Name == name {
					close(gone)
					return
				}
			}
		}
	}()
	return gone
}

func pidPath(name string) string { return filepath.Join(runDir, name+".pid") }

func journalPath(name string) string { return filepath.Join(runDir, name+".host") }

// writeJournal records the host changes that would outlive a crash.
func writeJournal(name string, j host.Journal) error {
	if j.IsEmpty() {
		return removeJournal(name)
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(journalPath(name), b, 0o600)
}

func removeJournal(name string) error {
	if err := os.Remove(journalPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// recoverCrashed refuses to start a second instance of name, and restores
// what an instance killed without cleanup left behind (RELIABILITY L6).
func recoverCrashed(name string, log *slog.Logger) error {
	if b, err := os.ReadFile(pidPath(name)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("%s is already up (pid %d)", name, pid)
		}
		os.Remove(pidPath(name))
	}
	b, err := os.ReadFile(journalPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var j host.Journal
	if err := json.Unmarshal(b, &j); err != nil {
		log.Warn("ignoring a malformed crash journal", "file", journalPath(name), "err", err)
		return removeJournal(name)
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer nl.Close()
	if err := host.RestoreJournal(nl, host.ProcSys{}, j); err != nil {
		return fmt.Errorf("restore what a crashed warren left for %s (%s): %w", name, journalPath(name), err)
	}
	log.Info("restored the rules and sysctls a crashed warren left behind", "interface", name, "rules", len(j.Rules), "sysctls", len(j.Sysctls))
	return removeJournal(name)
}

func writePidFile(name string) (string, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return "", err
	}
	p := pidPath(name)
	if err := os.WriteFile(p, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// removeIfOurs removes the pid file unless another instance has replaced it.
func removeIfOurs(p string) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	if strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		return os.Remove(p)
	}
	return nil
}

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
