package lifecycle

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/device/firewall"
	"github.com/warrenvpn/warren/device/host"
	"github.com/warrenvpn/warren/device/tun"
	"github.com/warrenvpn/warren/transport"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
)

// The adapters and the transport satisfy the engine's interfaces, and the
// netlink handle the host state's; neither side imports the other.
var (
	_ tunnel.Adapter   = (*tun.TUN)(nil)
	_ tunnel.Adapter   = (*tun.TAP)(nil)
	_ tunnel.Transport = (*transport.UDP)(nil)
	_ uapi.Device      = (*tunnel.Engine)(nil)
	_ Netlink          = (*netlink.Handle)(nil)
	_ host.SysctlFS    = host.ProcSys{}
	_ Firewall         = (*firewall.NFT)(nil)
)

// DefaultRunDir holds one pid file (for `warren down`) and one crash journal
// per running interface and network namespace (rundir.go).
const DefaultRunDir = "/run/warren"

// Options inject the openers Up and UpDevice use. Every nil or zero field
// takes the real one.
type Options struct {
	// Logger receives the lifecycle's and the engine's logs; nil discards.
	Logger *slog.Logger

	// OpenAdapter creates the interface's adapter with its MTU set (the
	// link stays down). Default: tun.OpenTUN.
	OpenAdapter func(name string, mtu int) (tunnel.Adapter, error)
	// OpenTAP creates the TAP of Mode = tap with its MTU set (the link
	// stays down), with the kernel's offloads unless offload is false
	// (Offload = off). Default: tun.OpenTAP, logging one line where the
	// kernel refused offloads.
	OpenTAP func(name string, mtu int, offload bool) (tunnel.Adapter, error)

	// OpenAdapterQueues creates the interface's adapter as n queues of a
	// multi-queue TUN (Threads above 1), MTU set, link down. Default:
	// tun.OpenTUNQueues.
	OpenAdapterQueues func(name string, mtu, n int) ([]tunnel.Adapter, error)
	// ListenGroup opens n transports on one port (Threads above 1; 0: a
	// random one) with the fwmark; the engine also calls it to rebind.
	// Default: transport.ListenGroup.
	ListenGroup func(port uint16, fwMark uint32, n int) ([]tunnel.Transport, error)

	// Listen opens the transport on port (0: a random one) with the
	// fwmark (0: none). The engine also calls it to rebind when `wg set`
	// changes the listen port or fwmark. Default: transport.Listen.
	Listen func(port uint16, fwMark uint32) (tunnel.Transport, error)

	// OpenNetlink opens the netlink handle of the host state and the crash
	// recovery; Close (and a failed Up) closes it. Default:
	// netlink.NewHandle in the calling thread's network namespace.
	OpenNetlink func() (Netlink, error)

	// Sysctl reads and writes kernel parameters. Default: host.ProcSys.
	Sysctl host.SysctlFS

	// ListenControl opens the control socket of the interface. Accept
	// failing with uapi.ErrRemoved stops the tunnel (Wait). Default:
	// uapi.Listen.
	ListenControl func(name string) (net.Listener, error)

	// RunDir holds the pid file and the crash journal. Default:
	// DefaultRunDir.
	RunDir string

	// RunHook runs one PreUp, PostUp, PreDown or PostDown command (%i
	// already replaced by the interface name). Default: bash -c, its output
	// on standard error, as wg-quick does.
	RunHook func(ctx context.Context, hook, cmd string) error

	// DNS applies and removes the interface's DNS servers and search
	// domains. Default: SystemDNS (resolvconf or resolvectl).
	DNS DNS

	// Resolver looks up peer endpoints given by host name; nil means
	// net.DefaultResolver.
	Resolver config.Resolver

	// RTTables are the rt_tables files a Table name is looked up in.
	// Default: DefaultRTTables.
	RTTables []string

	// EndpointRetries is how many times a peer's Endpoint name that does
	// not resolve is tried again in the background (wg's
	// WG_ENDPOINT_RESOLUTION_RETRIES): 0 means DefaultEndpointRetries,
	// a negative value none, math.MaxInt without end.
	EndpointRetries int

	// ReresolveAfter is how old a peer's last handshake must be (or how
	// long the peer has gone without one since its name was resolved)
	// before its Endpoint host name is looked up again, so that a peer
	// whose address changes behind a dynamic DNS name is followed
	// (endpoints.go): 0 means DefaultReresolveAfter (135 s, as wg's
	// reresolve-dns.sh); a negative value turns following off, leaving
	// only the start-up retries of EndpointRetries.
	ReresolveAfter time.Duration
	// ReresolveMax bounds the backoff between look-ups of a name while its
	// peer's handshake stays old: 0 means DefaultReresolveMax (1 min).
	ReresolveMax time.Duration

	// PathMTUProbe is how long a peer's lowered path MTU stands before the
	// engine checks whether the path widened: 0 means
	// tunnel.DefaultPathMTUProbe (10 min), a negative value never. The
	// config's PathMTUProbe, ReresolveAfter and ReresolveMax override
	// these three.
	PathMTUProbe time.Duration

	// Clock is the engine's time source, by which the age of handshakes
	// is also judged for ReresolveAfter; nil means tunnel.SystemClock.
	// Tests under testing/synctest pass one that reads time.Now, so that
	// the engine's timers run on the bubble's clock.
	Clock tunnel.Clock

	// Firewall adds and removes warren's nftables table. Default:
	// firewall.NFT in the calling thread's network namespace.
	Firewall Firewall

	// Extras, if set, adds the process's warren_* lines to the control
	// socket's "get=warren" replies (uapi.Server.Extras, which says what it
	// may do) and their numeric values to the metrics. warren mesh passes
	// the mesh's state this way.
	Extras func(st *uapi.State)

	// onePipeline makes an unset Threads mean 1 (setDefaults).
	onePipeline bool

	// Step, if set, is called at the start of each numbered step of Up
	// ("step 4") and after each store of the crash journal ("journal"),
	// from the goroutine making the change. Tests stop start-up there.
	Step func(point string)
}

// Firewall installs warren's nftables table for a full tunnel (Apply,
// which replaces a table of the same name as a whole) and removes it
// (Remove, which succeeds if the table is not there). *firewall.NFT
// satisfies it.
type Firewall interface {
	Apply(r firewall.Rules) error
	Remove(table string) error
}

// Netlink is the handle the host state and the crash recovery use.
// *netlink.Handle satisfies it; tests wrap hosttest.FakeNetlink.
type Netlink interface {
	host.Netlink
	Close()
}

// DNS sets an interface's DNS configuration, as wg-quick does with
// resolvconf. Set is called after the control socket is open (and again
// by a reload that changes DNS); Unset only after Set succeeded, or when
// restoring what a crashed instance left, when the interface may be gone.
type DNS interface {
	Set(ctx context.Context, iface string, servers, search []string) error
	Unset(iface string) error
}

func (o *Options) setDefaults() {
	// Openers injected for one adapter or socket (tests, warren demo)
	// keep one pipeline unless the config asks for more, which then
	// opens the queues with OpenAdapter and the sockets with Listen.
	if (o.OpenAdapter != nil && o.OpenAdapterQueues == nil) || (o.Listen != nil && o.ListenGroup == nil) {
		o.onePipeline = true
	}
	if o.OpenAdapterQueues == nil && o.OpenAdapter != nil {
		open := o.OpenAdapter
		o.OpenAdapterQueues = func(name string, mtu, n int) ([]tunnel.Adapter, error) {
			var qs []tunnel.Adapter
			for range n {
				q, err := open(name, mtu)
				if err != nil {
					for _, q := range qs {
						q.Close()
					}
					return nil, err
				}
				qs = append(qs, q)
			}
			return qs, nil
		}
	}
	if o.ListenGroup == nil && o.Listen != nil {
		listen := o.Listen
		o.ListenGroup = func(port uint16, mark uint32, n int) ([]tunnel.Transport, error) {
			var trs []tunnel.Transport
			for range n {
				tr, err := listen(port, mark)
				if err != nil {
					for _, tr := range trs {
						tr.Close()
					}
					return nil, err
				}
				trs = append(trs, tr)
				if p, ok := tr.(interface{ Port() uint16 }); ok {
					port = p.Port()
				}
			}
			return trs, nil
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OpenTAP == nil {
		log := o.Logger
		o.OpenTAP = func(name string, mtu int, offload bool) (tunnel.Adapter, error) {
			t, err := tun.OpenTAP(name, mtu, offload)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			if on, err := t.Offloads(); err != nil {
				log.Info("TAP offloads reduced", "interface", name, "offloads", on, "err", err)
			}
			return t, nil
		}
	}
	if o.OpenAdapter == nil {
		o.OpenAdapter = func(name string, mtu int) (tunnel.Adapter, error) {
			t, err := tun.OpenTUN(name, mtu)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			return t, nil
		}
	}
	if o.Listen == nil {
		log := o.Logger
		o.Listen = func(port uint16, mark uint32) (tunnel.Transport, error) {
			u, err := transport.Listen(transport.Options{Port: port, FwMark: mark, Logger: log, WireGuardOnly: true})
			if err != nil {
				return nil, err
			}
			return u, nil
		}
	}
	if o.OpenAdapterQueues == nil {
		o.OpenAdapterQueues = func(name string, mtu, n int) ([]tunnel.Adapter, error) {
			qs, err := tun.OpenTUNQueues(name, mtu, n)
			if err != nil {
				return nil, err
			}
			out := make([]tunnel.Adapter, len(qs))
			for i, q := range qs {
				out[i] = q
			}
			return out, nil
		}
	}
	if o.ListenGroup == nil {
		log := o.Logger
		o.ListenGroup = func(port uint16, mark uint32, n int) ([]tunnel.Transport, error) {
			us, err := transport.ListenGroup(transport.Options{Port: port, FwMark: mark, Logger: log, WireGuardOnly: true}, n)
			if err != nil {
				return nil, err
			}
			out := make([]tunnel.Transport, len(us))
			for i, u := range us {
				out[i] = u
			}
			return out, nil
		}
	}
	if o.OpenNetlink == nil {
		o.OpenNetlink = func() (Netlink, error) {
			h, err := netlink.NewHandle()
			if err != nil {
				return nil, err
			}
			return h, nil
		}
	}
	if o.Sysctl == nil {
		o.Sysctl = host.ProcSys{}
	}
	if o.ListenControl == nil {
		o.ListenControl = func(name string) (net.Listener, error) {
			l, err := uapi.Listen(name)
			if err != nil {
				return nil, err
			}
			return l, nil
		}
	}
	if o.RunDir == "" {
		o.RunDir = DefaultRunDir
	}
	if o.RunHook == nil {
		o.RunHook = runBash
	}
	if o.DNS == nil {
		o.DNS = SystemDNS{}
	}
	if o.RTTables == nil {
		o.RTTables = DefaultRTTables
	}
	if o.EndpointRetries == 0 {
		o.EndpointRetries = DefaultEndpointRetries
	}
	if o.ReresolveAfter == 0 {
		o.ReresolveAfter = DefaultReresolveAfter
	}
	if o.ReresolveMax <= 0 {
		o.ReresolveMax = DefaultReresolveMax
	}
	if o.Firewall == nil {
		o.Firewall = firewall.New(0)
	}
	if o.Step == nil {
		o.Step = func(string) {}
	}
}

// runBash runs a hook command with bash, its output on standard error.
func runBash(ctx context.Context, hook, cmd string) error {
	c := exec.CommandContext(ctx, "bash", "-c", cmd)
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	return c.Run()
}
