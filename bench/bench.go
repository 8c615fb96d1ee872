package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warrenvpn/warren/config"
)

// Defaults of Options.
const (
	DefaultRuns       = 3
	DefaultDuration   = 3 * time.Second // per test and run
	DefaultStreams    = 4
	DefaultMTU        = 1500        // bytes, of the veth pair
	DefaultLatencyPPS = 1000        // echo requests per second: modest, far from any limit
	quickDuration     = time.Second // per test and run, with Options.Quick

	// tunnelOverhead is what a WireGuard data message over IPv4 adds to an
	// inner packet: 20 IPv4 + 8 UDP + 16 header + 16 tag. Tunnel MTUs are
	// the veth MTU less this, so a 1400-byte UDP payload crosses every
	// scenario of a 1500-byte lab unfragmented.
	tunnelOverhead = 60 // bytes
	// frameOverhead is what Mode = tap adds inside the message: the
	// Ethernet header (14) and warren's frame header (4), untagged.
	frameOverhead = 18 // bytes

	probeTimeout = 15 * time.Second       // first probe through a new tunnel, handshake included
	logTailBytes = 2048                   // of a helper process's output kept for its error
	settleTime   = 500 * time.Millisecond // quiet time before the latency test
)

// Options are the settings of Run. The zero value of a field means its default.
type Options struct {
	Scenarios  []string      // default: veth, warren, wireguard-go
	Runs       int           // repetitions of each test
	Duration   time.Duration // of each test's measured window
	Streams    int           // parallel streams of the multi-stream TCP test
	MTU        int           // of the veth pair, bytes
	LatencyPPS int           // echo requests per second in the latency test
	// Quick makes one short run of each test: Runs and Duration are ignored.
	Quick bool
	// Tool names an external tool to cross-check with: "" or "iperf3".
	Tool string
	// WarrenPath is the warren binary run as `warren up` in each namespace.
	WarrenPath string
	// WireGuardGoPath is the wireguard-go binary; "" looks it up on PATH.
	WireGuardGoPath string
	// TunnelProcs, if above 0, is the GOMAXPROCS of every tunnel process
	// (warren up and wireguard-go alike); the generators keep the
	// machine's. 0 leaves the Go runtime's default (the cores).
	TunnelProcs int
	// Prefix names the lab's namespaces (PREFIX-a-..., PREFIX-b-...).
	Prefix string
	// Progress receives one line per step; nil discards them. With
	// ProgressTTY each line overwrites the previous one.
	Progress    io.Writer
	ProgressTTY bool
}

// normalize fills in defaults and checks o.
func (o *Options) normalize() error {
	if len(o.Scenarios) == 0 {
		o.Scenarios = []string{ScenarioVeth, ScenarioWarren, ScenarioWireGuardGo}
	}
	for i, s := range o.Scenarios {
		switch s {
		case ScenarioVeth, ScenarioWarren, ScenarioWarrenTAP, ScenarioWireGuardGo:
		default:
			return fmt.Errorf("unknown scenario %q (want %s, %s, %s or %s)", s, ScenarioVeth, ScenarioWarren, ScenarioWarrenTAP, ScenarioWireGuardGo)
		}
		if slices.Contains(o.Scenarios[:i], s) {
			return fmt.Errorf("scenario %q given twice", s)
		}
	}
	if o.Quick {
		o.Runs, o.Duration = 1, quickDuration
	}
	o.Runs = cmpOr(o.Runs, DefaultRuns)
	o.Duration = cmpOr(o.Duration, DefaultDuration)
	o.Streams = cmpOr(o.Streams, DefaultStreams)
	o.MTU = cmpOr(o.MTU, DefaultMTU)
	o.LatencyPPS = cmpOr(o.LatencyPPS, DefaultLatencyPPS)
	o.Prefix = cmpOr(o.Prefix, "wbench")
	switch {
	case o.Runs < 1:
		return fmt.Errorf("runs %d: want at least 1", o.Runs)
	case o.Duration < 100*time.Millisecond:
		return fmt.Errorf("duration %v: want at least 100ms", o.Duration)
	case o.Streams < 1:
		return fmt.Errorf("streams %d: want at least 1", o.Streams)
	case o.MTU < config.MinIPv6MTU || o.MTU > config.MaxMTU: // the lab's veths carry IPv6 too
		return fmt.Errorf("mtu %d: want %d to %d", o.MTU, config.MinIPv6MTU, config.MaxMTU)
	case o.LatencyPPS < 1 || o.LatencyPPS > 100000:
		return fmt.Errorf("latency rate %d: want 1 to 100000 per second", o.LatencyPPS)
	case o.Tool != "" && o.Tool != "iperf3":
		return fmt.Errorf("unknown tool %q (want iperf3)", o.Tool)
	}
	return nil
}

// cmpOr returns v, or def when v is zero.
func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// tunnelMTU is the MTU of the tunnel interfaces in a lab of o.MTU.
func (o *Options) tunnelMTU() int { return o.MTU - tunnelOverhead }

// tunnelEnv is the environment a tunnel process gets beyond the bench's
// own: env, and GOMAXPROCS when TunnelProcs sets it.
func (o *Options) tunnelEnv(env ...string) []string {
	if o.TunnelProcs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(o.TunnelProcs))
	}
	return env
}

// tapMTU is the MTU of the TAPs of ScenarioWarrenTAP: a frame carries an
// Ethernet header and warren's 4-byte frame header more than an IP packet,
// so that the outer datagrams are as large as the other tunnels'.
func (o *Options) tapMTU() int { return o.tunnelMTU() - frameOverhead }

// ErrUnavailable marks a scenario that cannot run on this host, such as
// wireguard-go not being installed: Run skips it with a note.
var ErrUnavailable = errors.New("unavailable")

// endpoints is a running scenario: the way traffic crosses it and what its
// CPU is charged to.
type endpoints struct {
	path  Path
	meter Meter
	// clientCmd and serverCmd run external tools (iperf3) beside the
	// client and the server.
	clientCmd, serverCmd commander
	// close stops the scenario's processes; it may be nil.
	close func() error
}

// commander returns a command that runs in a given place, like
// exec.CommandContext.
type commander func(ctx context.Context, name string, args ...string) *exec.Cmd

// lab starts scenarios between two places.
type lab interface {
	// start brings scenario up and returns once traffic can cross it. An
	// error wrapping ErrUnavailable means the scenario cannot run here.
	start(ctx context.Context, scenario string) (*endpoints, error)
	Close() error
}

// Run builds the lab, runs every scenario of o in it and removes it again,
// also when ctx is canceled or a step fails. A scenario that cannot run here
// is listed in Report.Skipped; one that fails is listed there too and its
// error is returned with the report of the others.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.normalize(); err != nil {
		return nil, err
	}
	if o.Tool == "iperf3" {
		if err := lookIPerf3(); err != nil {
			return nil, err
		}
	}
	l, err := newLab(ctx, &o)
	if err != nil {
		return nil, fmt.Errorf("build lab: %w", err)
	}
	rep, runErr := run(ctx, &o, l)
	if err := l.Close(); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("remove lab: %w", err))
	}
	return rep, runErr
}

// run runs the scenarios of o in l.
func run(ctx context.Context, o *Options, l lab) (*Report, error) {
	rep := &Report{
		Machine: machine(),
		Config: Config{
			Scenarios:       o.Scenarios,
			Runs:            o.Runs,
			DurationSeconds: o.Duration.Seconds(),
			Streams:         o.Streams,
			MTU:             o.MTU,
			TunnelMTU:       o.tunnelMTU(),
			LatencyPPS:      o.LatencyPPS,
			Quick:           o.Quick,
			Tool:            o.Tool,
			TunnelProcs:     o.TunnelProcs,
		},
		Scenarios: []Result{},
	}
	tests := o.tests()
	p := &progress{w: o.Progress, tty: o.ProgressTTY, total: len(o.Scenarios) * o.Runs * len(tests)}
	defer p.done()

	// Runs are interleaved: each run starts every scenario in turn, runs
	// each test once through it and stops it, so that a swing of the
	// host's load over minutes falls on every scenario, not on one.
	var errs []error
	s := make([]samples, len(o.Scenarios))
	dropped := make([]bool, len(o.Scenarios))
	for r := range o.Runs {
		for i, name := range o.Scenarios {
			if dropped[i] {
				continue
			}
			first := p.n
			err := runRound(ctx, o, l, p, name, tests, r, &s[i])
			if err == nil {
				continue
			}
			// The steps this scenario will not take leave the count.
			p.total -= (o.Runs-r)*len(tests) - (p.n - first)
			dropped[i] = true
			switch {
			case ctx.Err() != nil:
				return rep, ctx.Err()
			case errors.Is(err, ErrUnavailable):
				rep.Skipped = append(rep.Skipped, Skip{Name: name, Reason: err.Error()})
				p.note(fmt.Sprintf("%s: skipped: %v", name, err))
			default:
				rep.Skipped = append(rep.Skipped, Skip{Name: name, Reason: "failed: " + err.Error()})
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				p.note(fmt.Sprintf("%s: failed: %v", name, err))
			}
		}
	}
	for i, name := range o.Scenarios {
		if !dropped[i] {
			rep.Scenarios = append(rep.Scenarios, s[i].result(name))
		}
	}
	rep.setRatios()
	return rep, errors.Join(errs...)
}

// runRound starts one scenario, runs every test once through it (run r of
// o.Runs), adding to s, and stops it.
func runRound(ctx context.Context, o *Options, l lab, p *progress, name string, tests []test, r int, s *samples) (err error) {
	p.note(fmt.Sprintf("%s: starting (run %d/%d)", name, r+1, o.Runs))
	ep, err := l.start(ctx, name)
	if err != nil {
		return err
	}
	if ep.close != nil {
		defer func() {
			if cerr := ep.close(); cerr != nil && err == nil {
				err = fmt.Errorf("stop: %w", cerr)
			}
		}()
	}
	for _, t := range tests {
		p.step(fmt.Sprintf("%s: %s, run %d/%d", name, t.name, r+1, o.Runs))
		if err := t.run(ctx, ep, s); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	return nil
}

// test is one measurement, which adds its figures to samples.
type test struct {
	name string
	run  func(ctx context.Context, ep *endpoints, s *samples) error
}

// tests lists the measurements of o in the order they run.
func (o *Options) tests() []test {
	tcp := func(streams int, dst func(*samples) *[]float64) func(context.Context, *endpoints, *samples) error {
		return func(ctx context.Context, ep *endpoints, s *samples) error {
			r, err := TCPBulk(ctx, ep.path, streams, o.Duration, ep.meter)
			if err != nil {
				return err
			}
			if r.Bytes == 0 {
				return errors.New("no data arrived")
			}
			d := dst(s)
			*d = append(*d, r.Gbps())
			s.cpuSeconds += r.CPU.Seconds()
			s.tcpBytes += float64(r.Bytes)
			return nil
		}
	}
	ts := []test{
		{"TCP 1 stream", tcp(1, func(s *samples) *[]float64 { return &s.tcp })},
		{fmt.Sprintf("TCP %d streams", o.Streams), tcp(o.Streams, func(s *samples) *[]float64 { return &s.tcpMulti })},
	}
	for i, size := range UDPPayloads {
		ts = append(ts, test{fmt.Sprintf("UDP %d B", size), func(ctx context.Context, ep *endpoints, s *samples) error {
			r, err := UDPRate(ctx, ep.path, size, o.Duration)
			if err != nil {
				return err
			}
			if r.Received == 0 {
				return fmt.Errorf("none of %d datagrams arrived", r.Sent)
			}
			s.udpPPS[i] = append(s.udpPPS[i], r.PPS())
			s.udpLoss[i] = append(s.udpLoss[i], r.Loss())
			return nil
		}})
	}
	ts = append(ts, test{"latency", func(ctx context.Context, ep *endpoints, s *samples) error {
		// The UDP tests before leave the tunnel's queues full; echoes
		// queued behind that backlog would measure it, not the path.
		if err := sleep(ctx, settleTime); err != nil {
			return err
		}
		r, err := Latency(ctx, ep.path, o.LatencyPPS, o.Duration)
		if err != nil {
			return err
		}
		if len(r.RTTs) == 0 {
			return fmt.Errorf("none of %d echo requests answered", r.Sent)
		}
		for _, rtt := range r.RTTs {
			s.rtt = append(s.rtt, float64(rtt)/float64(time.Microsecond))
		}
		return nil
	}})
	if o.Tool == "iperf3" {
		ts = append(ts, o.iperf3Tests()...)
	}
	return ts
}

// progress reports the steps of a run, one line each, or on one line that
// each step overwrites on a terminal.
type progress struct {
	w     io.Writer // nil: silent
	tty   bool
	total int
	n     int
	open  bool // a tty line is waiting for its newline
}

// step announces the next step.
func (p *progress) step(what string) {
	p.n++
	p.print(fmt.Sprintf("[%*d/%d] %s", len(fmt.Sprint(p.total)), p.n, p.total, what), p.tty)
}

// note prints a line that stays.
func (p *progress) note(what string) { p.print(what, false) }

// print writes line, overwriting the open line on a terminal.
func (p *progress) print(line string, keepOpen bool) {
	if p.w == nil {
		return
	}
	var b strings.Builder
	if p.open {
		b.WriteString("\r\033[K")
	}
	b.WriteString(line)
	if !keepOpen {
		b.WriteString("\n")
	}
	p.open = keepOpen
	io.WriteString(p.w, b.String())
}

// done ends an open terminal line.
func (p *progress) done() {
	if p.w != nil && p.open {
		io.WriteString(p.w, "\r\033[K")
		p.open = false
	}
}

// machine describes this host.
func machine() Machine {
	return Machine{CPUs: runtime.NumCPU(), Kernel: kernelRelease(), CPUModel: cpuModel()}
}
