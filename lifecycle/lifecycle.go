package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/device/firewall"
	"github.com/warrenvpn/warren/device/host"
	"github.com/warrenvpn/warren/metrics"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
)

// Why Wait returned, for the stops that come from outside and are not
// failures: the caller exits with status 0.
var (
	// ErrInterfaceRemoved: the interface was deleted from outside (`ip link
	// del`, which is how `wg-quick down` stops a userspace implementation).
	// The engine has logged it.
	ErrInterfaceRemoved = tunnel.ErrAdapterRemoved
	// ErrSocketRemoved: the control socket file was deleted, which asks the
	// daemon to stop, as it does wireguard-go (L5).
	ErrSocketRemoved = uapi.ErrRemoved
)

// IsNormalStop reports whether err, returned by Wait, is a normal stop: nil
// (the context is done), ErrInterfaceRemoved or ErrSocketRemoved.
func IsNormalStop(err error) bool {
	return err == nil || errors.Is(err, ErrInterfaceRemoved) || errors.Is(err, ErrSocketRemoved)
}

// resolveTimeout bounds the lookup of one peer's endpoint host name.
const resolveTimeout = 10 * time.Second

// Tunnel is one interface brought up by Up or UpDevice. Wait and Close may
// be called from different goroutines.
type Tunnel struct {
	name       string
	opts       Options // defaults filled in
	log        *slog.Logger
	eng        *tunnel.Engine // nil until step 7
	listenPort uint16
	pipelines  []tunnel.Pipeline // pipelines after the first (Threads; threads.go)
	netns      uint64            // the network namespace the run files are named after (rundir.go)
	preDown    []string          // PreDown hooks, run by the undo stack (Reconfigure may change them)
	postDown   []string          // PostDown hooks, run by Close after the undo stack

	// res holds the endpoint names resolveLoop follows (endpoints.go).
	// Lock order: Tunnel.cur, then res, then the engine's locks.
	res resolver

	// jr is the crash journal as last stored; see updateJournal.
	jr struct {
		sync.Mutex // serialises updates; taken under host.Manager's lock
		j          journal
	}

	// cur is what Up applied and Reconfigure changes; nil for UpDevice.
	cur struct {
		sync.Mutex                 // serialises Reconfigure with itself and with Close
		cfg        *config.Config  // the configuration now applied
		plan       host.RoutePlan  // its routes, rules, sysctls and fwmark
		hm         *host.Manager   // the host state; nil until step 9
		dns        bool            // whether DNS is set (Unset is due)
		fw         *firewall.Rules // the nftables table installed; nil: none
		closed     bool            // Close has begun: Reconfigure refuses
	}

	// undo holds the cleanups of the steps done so far; Close runs them.
	undo undoStack

	// ctl is the control socket, served by controlLoop until the undo
	// stack closes ln.
	ctl struct {
		ln   net.Listener
		srv  atomic.Pointer[uapi.Server] // atomic: the metrics' goroutines read it
		done chan struct{}               // closed when controlLoop returns
		err  error                       // what Serve returned; read after done
	}
	wg sync.WaitGroup // controlLoop; Close waits for it

	reported struct {
		sync.Mutex       // guards engine and control
		engine     error // the engine error Wait returned, not reported again by Close
		control    bool  // whether Wait returned the control socket's error
	}

	closeOnce sync.Once
	closeErr  error
}

// Up brings the interface cfg describes up with its whole host state, as
// `wg-quick up` does, in the steps of the package comment. On failure every
// step done is undone, in reverse, and the error says which step failed
// (joined with what could not be undone, if anything).
func Up(ctx context.Context, cfg *config.Config, opts Options) (_ *Tunnel, err error) {
	t := newTunnel(cfg.Name, opts)
	defer t.undoOnError(&err)
	if cfg, err = t.withTable(cfg); err != nil {
		return nil, err
	}
	ifc := &cfg.Interface
	t.usePaths(ifc)

	// 1. Endpoints.
	t.opts.Step("step 1")
	peers, err := t.enginePeers(ctx, cfg)
	if err != nil {
		return nil, err
	}

	// 2. PreUp.
	t.opts.Step("step 2")
	if err := t.runHooks(ctx, "PreUp", ifc.PreUp); err != nil {
		return nil, err
	}

	// 3. Netlink.
	t.opts.Step("step 3")
	nl, err := t.opts.OpenNetlink()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	t.undo.push(func() error { nl.Close(); return nil })

	// 4. A second instance, a crashed one.
	t.opts.Step("step 4")
	if err := t.recoverCrashed(nl); err != nil {
		return nil, err
	}

	// 5. Adapter; the pid file.
	t.opts.Step("step 5")
	open := t.opts.OpenAdapter
	if ifc.Mode == config.ModeTAP {
		open = func(name string, mtu int) (tunnel.Adapter, error) {
			return t.opts.OpenTAP(name, mtu, !ifc.OffloadOff)
		}
	}
	var adapter tunnel.Adapter
	if n := t.threads(ifc); n > 1 {
		adapter, err = t.openQueues(ifc.MTU, n)
	} else {
		adapter, err = t.openAdapter(open, ifc.MTU)
	}
	if err != nil {
		return nil, err
	}
	if err := t.claimPIDFile(); err != nil {
		return nil, err
	}

	// 6. Transport, marked so that a default route through the tunnel
	// spares it.
	t.opts.Step("step 6")
	plan := routePlan(cfg)
	listen := t.listen
	if len(t.pipelines) > 0 {
		listen = t.listenGroup
	}
	tr, err := listen(ifc.ListenPort, plan.FwMark)
	if err != nil {
		return nil, err
	}

	// 7. Engine, and the retries of endpoint names that did not resolve.
	t.opts.Step("step 7")
	t.startEngine(adapter, tr, layer2Options(cfg))
	t.startResolver()
	if err := t.eng.SetConfig(tunnel.Config{
		PrivateKey: ifc.PrivateKey,
		ListenPort: t.listenPort,
		FwMark:     plan.FwMark,
		Peers:      peers,
	}); err != nil {
		return nil, err
	}

	// 8. Engine up before the link comes up: a host that sends as soon as
	// it sees the link up (a ping, a TCP SYN) starts a handshake, where an
	// engine still down would drop the packet and no timer would retry.
	t.opts.Step("step 8")
	if err := t.eng.Up(); err != nil {
		return nil, err
	}

	// 9. Host state, the crash journal written before each change that
	// would outlive a crash.
	t.opts.Step("step 9")
	hm := host.NewManager(nl, t.opts.Sysctl)
	hm.SetJournal(func(hj host.Journal) error { return t.updateJournal(func(j *journal) { j.Journal = hj }) })
	t.cur.hm, t.cur.plan = hm, plan
	t.undo.push(func() error {
		held := hm.State()
		err := hm.Undo()
		if err == nil {
			t.logHost("removed", held)
		}
		return errors.Join(err, t.updateJournal(func(j *journal) { j.Journal = hm.Journal() }))
	})
	_, err = hm.Apply(hostState(t.name, cfg, plan))
	if jerr := t.updateJournal(func(j *journal) { j.Journal = hm.Journal() }); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil {
		return nil, fmt.Errorf("configure %s: %w", t.name, err)
	}
	t.logHost("added", hm.State())
	if ifc.Mode == config.ModeTAP && ifc.Bridge != "" {
		if err := t.joinBridge(nl, ifc); err != nil {
			return nil, err
		}
	}
	t.undo.push(t.removeFirewall)
	if err := t.applyFirewall(firewallRules(t.name, cfg, plan), ifc.FirewallOptional); err != nil {
		return nil, err
	}

	// 10. Control socket, and the metrics server if the config sets
	// MetricsListen.
	t.opts.Step("step 10")
	if err := t.serveControl(); err != nil {
		return nil, err
	}
	if addr := ifc.MetricsListen; addr.IsValid() {
		m, err := metrics.Serve(addr, t.name, t.metricsSource(), t.log)
		if err != nil {
			return nil, err
		}
		t.undo.push(m.Close)
		t.log.Info("serving metrics", "interface", t.name, "url", "http://"+addr.String()+"/metrics")
	}

	// 11. DNS.
	t.opts.Step("step 11")
	t.undo.push(t.unsetDNS)
	if err := t.setDNS(ctx, ifc); err != nil {
		return nil, err
	}

	// 12. PostUp; from here on a failure or Close runs PreDown.
	t.opts.Step("step 12")
	t.preDown = ifc.PreDown
	t.undo.push(func() error { return t.runHooks(context.Background(), "PreDown", t.preDown) })
	if err := t.runHooks(ctx, "PostUp", ifc.PostUp); err != nil {
		return nil, err
	}

	t.postDown = ifc.PostDown
	t.cur.cfg = cfg
	return t, nil
}

// hostState is the host state cfg asks for on link name, with plan its
// routes. In Mode = tap with a Bridge the addresses go on the bridge
// (joinBridge), not on the TAP.
func hostState(name string, cfg *config.Config, plan host.RoutePlan) host.State {
	if cfg.Interface.Mode == config.ModeTAP && cfg.Interface.Bridge != "" {
		return host.State{Link: name, MTU: cfg.Interface.MTU, Up: true}
	}
	return host.State{
		Link:      name,
		MTU:       cfg.Interface.MTU,
		Up:        true,
		Addresses: cfg.Interface.Addresses,
		Routes:    plan.Routes,
		Rules:     plan.Rules,
		Sysctls:   plan.Sysctls,
	}
}

// routePlan is wg-quick's route plan for cfg; none in Mode = tap, where
// allowed IPs filter senders inside frames and the hosts reach each other
// on the link.
func routePlan(cfg *config.Config) host.RoutePlan {
	if cfg.Interface.Mode == config.ModeTAP {
		return host.RoutePlan{}
	}
	var allowed []netip.Prefix
	for _, p := range cfg.Peers {
		allowed = append(allowed, p.AllowedIPs...)
	}
	return host.PlanRoutes(host.RouteOptions{Table: cfg.Interface.Table, FwMark: cfg.Interface.FwMark, Allowed: allowed})
}

// setDNS hands ifc's DNS servers and search domains to the resolver, the
// journal first. A failure is an error (fail closed), unless the config
// says DNSRequired = false: then it is logged.
func (t *Tunnel) setDNS(ctx context.Context, ifc *config.Interface) error {
	if len(ifc.DNS)+len(ifc.DNSSearch) == 0 {
		return nil
	}
	if err := t.updateJournal(func(j *journal) { j.DNS = true }); err != nil {
		return err
	}
	if err := t.opts.DNS.Set(ctx, t.name, ifc.DNS, ifc.DNSSearch); err != nil {
		if jerr := t.updateJournal(func(j *journal) { j.DNS = false }); jerr != nil {
			return jerr
		}
		if ifc.DNSOptional {
			t.log.Warn("DNS not applied; going on without it (DNSRequired = false)", "interface", t.name, "err", err)
			return nil
		}
		return fmt.Errorf("DNS not applied, names would resolve outside the tunnel (DNSRequired = false in [Interface] goes on without it): %w", err)
	}
	t.cur.dns = true
	t.log.Info("added DNS", "interface", t.name, "servers", ifc.DNS, "search", ifc.DNSSearch)
	return nil
}

// unsetDNS removes the DNS configuration if it is set.
func (t *Tunnel) unsetDNS() error {
	if !t.cur.dns {
		return nil
	}
	if err := t.opts.DNS.Unset(t.name); err != nil {
		return err
	}
	t.cur.dns = false
	t.log.Info("removed DNS", "interface", t.name)
	return t.updateJournal(func(j *journal) { j.DNS = false })
}

// firewallRules are the nftables protections cfg's full tunnel needs: one
// table per family with a default route through the tunnel (PlanRoutes'
// fwmark rules), none otherwise.
func firewallRules(name string, cfg *config.Config, plan host.RoutePlan) firewall.Rules {
	r := firewall.Rules{Interface: name, Addresses: cfg.Interface.Addresses, FwMark: plan.FwMark}
	for _, rule := range plan.Rules {
		if rule.IPv6 {
			r.IPv6 = true
		} else {
			r.IPv4 = true
		}
	}
	return r
}

// applyFirewall installs r's table (the journal first), replacing the one
// installed, or removes it if r is empty. If nftables refuses, the error
// says so, unless optional (FirewallRequired = false): then it is logged.
func (t *Tunnel) applyFirewall(r firewall.Rules, optional bool) error {
	if r.IsEmpty() {
		return t.removeFirewall()
	}
	if t.cur.fw != nil && rulesEqual(*t.cur.fw, r) {
		return nil
	}
	table := firewall.TableName(t.name)
	if err := t.updateJournal(func(j *journal) { j.Firewall = table }); err != nil {
		return err
	}
	if err := t.opts.Firewall.Apply(r); err != nil {
		if t.cur.fw == nil {
			if jerr := t.updateJournal(func(j *journal) { j.Firewall = "" }); jerr != nil {
				return jerr
			}
		}
		if optional {
			t.log.Warn("nftables unavailable; the full tunnel runs without its protections (FirewallRequired = false)", "interface", t.name, "err", err)
			return nil
		}
		return fmt.Errorf("the full tunnel's nftables protections (CVE-2019-14899) cannot be installed (FirewallRequired = false in [Interface] goes on without them): %w", err)
	}
	t.cur.fw = &r
	t.log.Info("added nft table", "table", table, "ipv4", r.IPv4, "ipv6", r.IPv6, "fwmark", r.FwMark)
	return nil
}

// removeFirewall removes warren's table if it installed one.
func (t *Tunnel) removeFirewall() error {
	if t.cur.fw == nil {
		return nil
	}
	table := firewall.TableName(t.name)
	if err := t.opts.Firewall.Remove(table); err != nil {
		return err
	}
	t.cur.fw = nil
	t.log.Info("removed nft table", "table", table)
	return t.updateJournal(func(j *journal) { j.Firewall = "" })
}

func rulesEqual(a, b firewall.Rules) bool {
	return a.Interface == b.Interface && a.FwMark == b.FwMark && a.IPv4 == b.IPv4 && a.IPv6 == b.IPv6 &&
		slices.Equal(a.Addresses, b.Addresses)
}

// logHost logs, at Info, what the host state s holds, which warren has
// just "added" or "removed".
func (t *Tunnel) logHost(verb string, s host.State) {
	for _, a := range s.Addresses {
		t.log.Info(verb+" address", "interface", t.name, "address", a)
	}
	for _, r := range s.Routes {
		t.log.Info(verb+" route", "interface", t.name, "route", r.String())
	}
	for _, r := range s.Rules {
		t.log.Info(verb+" rule", "rule", r.String())
	}
	for _, c := range s.Sysctls {
		if verb == "added" {
			t.log.Info("set sysctl", "key", c.Key, "value", c.Value)
		} else {
			t.log.Info("restored sysctl", "key", c.Key)
		}
	}
}

// UpDevice brings up the bare device name: the adapter (config.DefaultMTU),
// a transport on a random port, the engine without keys or peers, and the
// control socket. It changes nothing else on the host: `wg` and `ip`
// configure the rest, as they do wireguard-go's device under wg-quick. ctx
// is there for symmetry with Up: none of these steps waits.
func UpDevice(ctx context.Context, name string, opts Options) (_ *Tunnel, err error) {
	if !config.ValidName(name) {
		return nil, fmt.Errorf("%q: not a valid interface name", name)
	}
	t := newTunnel(name, opts)
	defer t.undoOnError(&err)
	adapter, err := t.openAdapter(t.opts.OpenAdapter, config.DefaultMTU)
	if err != nil {
		return nil, err
	}
	tr, err := t.listen(0, 0)
	if err != nil {
		return nil, err
	}
	t.startEngine(adapter, tr, nil)
	if err := t.eng.Up(); err != nil {
		return nil, err
	}
	if err := t.serveControl(); err != nil {
		return nil, err
	}
	return t, nil
}

func newTunnel(name string, opts Options) *Tunnel {
	opts.setDefaults()
	t := &Tunnel{name: name, opts: opts, log: opts.Logger, netns: CurrentNetns()}
	t.res.init()
	return t
}

// undoOnError runs the undo stack if *err is set, adding what could not be
// undone to *err.
func (t *Tunnel) undoOnError(err *error) {
	if *err == nil {
		return
	}
	if uerr := t.undo.run(); uerr != nil {
		*err = errors.Join(*err, fmt.Errorf("cleanup: %w", uerr))
	}
	t.wg.Wait()
}

// Name returns the interface name.
func (t *Tunnel) Name() string { return t.name }

// DataPathCores is tunnel.Engine.DataPathCores: the cores the data path
// keeps busy when each pipeline's directions share one.
func (t *Tunnel) DataPathCores() int { return t.eng.DataPathCores() }

// ListenPort returns the UDP port the transport was first opened on, if it
// reports one (transport.UDP does), else 0.
func (t *Tunnel) ListenPort() uint16 { return t.listenPort }

// ControlAddr returns the control socket's address (its path).
func (t *Tunnel) ControlAddr() string { return t.ctl.ln.Addr().String() }

// Wait blocks until the tunnel should stop and says why:
//   - nil: ctx is done (a signal);
//   - an error matching ErrInterfaceRemoved: the interface was deleted
//     from outside, a normal stop;
//   - an error matching ErrSocketRemoved: the control socket file was
//     deleted, a normal stop;
//   - any other error: the engine failed for good (its transport kept
//     failing, or a rebind could not restore its socket), or the control
//     socket stopped accepting connections.
//
// IsNormalStop tells the normal stops from the failures. Close must still be
// called.
func (t *Tunnel) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-t.eng.Done():
		err := t.eng.Err()
		if errors.Is(err, tunnel.ErrAdapterRemoved) {
			return err
		}
		t.reported.Lock()
		t.reported.engine = err
		t.reported.Unlock()
		return fmt.Errorf("%s stopped: %w", t.name, err)
	case <-t.ctl.done:
		err := t.ctl.err
		if err == nil || errors.Is(err, uapi.ErrRemoved) {
			return err // nil: Close has begun
		}
		t.reported.Lock()
		t.reported.control = true
		t.reported.Unlock()
		return fmt.Errorf("control socket of %s: %w", t.name, err)
	}
}

// Close runs PreDown, undoes every step of Up in reverse (the control socket,
// DNS, the host state and journal, the engine with its transport and
// adapter, the pid file) and runs PostDown last. It returns what could not
// be undone; an engine or control socket failure Wait returned is not
// returned again. It is idempotent.
func (t *Tunnel) Close() error {
	t.closeOnce.Do(func() {
		t.cur.Lock()
		t.cur.closed = true
		t.cur.Unlock()
		err := t.undo.run()
		if len(t.postDown) > 0 {
			err = errors.Join(err, t.runHooks(context.Background(), "PostDown", t.postDown))
		}
		t.closeErr = err
		t.wg.Wait()
		// The configuration applied holds our private key and the
		// preshared keys; nothing reads them once all is undone (P18).
		t.cur.Lock()
		if t.cur.cfg != nil {
			t.cur.cfg.WipeSecrets()
		}
		t.cur.Unlock()
	})
	return t.closeErr
}

// openAdapter is step 5. Until the engine owns the adapter, the undo stack
// closes it.
func (t *Tunnel) openAdapter(open func(name string, mtu int) (tunnel.Adapter, error), mtu int) (tunnel.Adapter, error) {
	a, err := open(t.name, mtu)
	if err != nil {
		return nil, err
	}
	t.undo.push(func() error {
		if t.eng != nil {
			return nil // the engine closed it
		}
		return a.Close()
	})
	return a, nil
}

// listen is step 6. Until the engine owns the transport, the undo stack
// closes it.
func (t *Tunnel) listen(port uint16, mark uint32) (tunnel.Transport, error) {
	tr, err := t.opts.Listen(port, mark)
	if err != nil {
		return nil, err
	}
	t.undo.push(func() error {
		if t.eng != nil {
			return nil // the engine closed it
		}
		return tr.Close()
	})
	if p, ok := tr.(interface{ Port() uint16 }); ok {
		t.listenPort = p.Port()
	}
	return tr, nil
}

// startEngine is step 7: the engine takes the adapter and the transport,
// and closing it closes both.
func (t *Tunnel) startEngine(a tunnel.Adapter, tr tunnel.Transport, l2 *tunnel.Layer2) {
	t.eng = tunnel.New(a, tr, tunnel.Options{
		Logger:       t.log,
		Clock:        t.opts.Clock,
		Layer2:       l2,
		Rebind:       func(port uint16, mark uint32) (tunnel.Transport, error) { return t.opts.Listen(port, mark) },
		PathMTUProbe: t.opts.PathMTUProbe,
		// Threads above 1 (threads.go): the other queues and sockets.
		Pipelines:       t.pipelines,
		RebindPipelines: t.opts.ListenGroup,
	})
	t.undo.push(t.closeEngine)
}

// usePaths lets the config's PathMTUProbe, ReresolveAfter and ReresolveMax
// (config/paths.go), where set, override the options'.
func (t *Tunnel) usePaths(ifc *config.Interface) {
	if ifc.PathMTUProbe != 0 {
		t.opts.PathMTUProbe = ifc.PathMTUProbe
	}
	if ifc.ReresolveAfter != 0 {
		t.opts.ReresolveAfter = ifc.ReresolveAfter
	}
	if ifc.ReresolveMax != 0 {
		t.opts.ReresolveMax = ifc.ReresolveMax
	}
}

// closeEngine closes the engine; an engine already closed, or a failure
// Wait already returned, is not an error.
func (t *Tunnel) closeEngine() error {
	err := t.eng.Close()
	if err == nil || errors.Is(err, tunnel.ErrClosed) {
		return nil
	}
	t.reported.Lock()
	reported := t.reported.engine
	t.reported.Unlock()
	if err == reported {
		return nil
	}
	return fmt.Errorf("close engine: %w", err)
}

// serveControl is step 10: it opens the interface's control socket and
// serves it until the undo stack runs.
func (t *Tunnel) serveControl() error {
	ln, err := t.opts.ListenControl(t.name)
	if err != nil {
		return fmt.Errorf("control socket for %s: %w", t.name, err)
	}
	t.ctl.ln = ln
	srv := uapi.NewServer(t.eng, t.log)
	srv.Extras = t.opts.Extras
	t.ctl.srv.Store(srv)
	t.ctl.done = make(chan struct{})
	t.wg.Go(t.controlLoop)
	t.undo.push(func() error {
		ln.Close()
		<-t.ctl.done
		t.reported.Lock()
		reported := t.reported.control
		t.reported.Unlock()
		if err := t.ctl.err; err != nil && !errors.Is(err, uapi.ErrRemoved) && !reported {
			return fmt.Errorf("control socket: %w", err)
		}
		return nil
	})
	return nil
}

// controlLoop serves the control socket until it is closed, deleted or
// fails.
func (t *Tunnel) controlLoop() {
	defer close(t.ctl.done)
	t.ctl.err = t.ctl.srv.Load().Serve(t.ctl.ln)
}

// enginePeers resolves endpoints and converts the config's peers. A name
// that does not resolve leaves its peer without an endpoint, to be retried
// in the background; every name is followed (endpoints.go).
func (t *Tunnel) enginePeers(ctx context.Context, cfg *config.Config) ([]tunnel.PeerConfig, error) {
	peers := make([]tunnel.PeerConfig, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		ep, err := t.resolve(ctx, &p)
		if err != nil && ctx.Err() != nil {
			return nil, err
		}
		t.watch(&p, ep, err)
		peers = append(peers, tunnel.PeerConfig{
			PublicKey:           p.PublicKey,
			PresharedKey:        p.PresharedKey,
			Endpoint:            ep,
			AllowedIPs:          p.AllowedIPs,
			PersistentKeepalive: p.PersistentKeepalive,
			AllowedMACs:         p.AllowedMACs,
		})
	}
	return peers, nil
}

// resolve looks up p's endpoint, within resolveTimeout.
func (t *Tunnel) resolve(ctx context.Context, p *config.Peer) (netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ep, err := p.ResolveEndpoint(ctx, t.opts.Resolver)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("peer %s: %w", p.PublicKey, err)
	}
	return ep, nil
}

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
