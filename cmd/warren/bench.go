package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/warrenvpn/warren/bench"
	"github.com/warrenvpn/warren/config"
)

const benchUsage = `usage: warren bench [flags]

Builds two network namespaces joined by a veth pair, runs the same traffic
through each scenario (veth: no tunnel; warren; warren-tap: warren in
Mode = tap, Ethernet between TAPs; wireguard-go) and reports
TCP throughput, UDP packet rate and loss, round-trip latency and CPU cost.
Needs root. Everything it creates is removed at the end, on failure and on
Ctrl-C.

flags:
`

// benchFlags are the flags of `warren bench`.
type benchFlags struct {
	o              bench.Options
	scenarios      string
	jsonOut, chart string
}

// defineBenchFlags defines bench's flags on fs.
func defineBenchFlags(fs *flag.FlagSet) *benchFlags {
	f := &benchFlags{}
	o := &f.o
	fs.StringVar(&f.scenarios, "scenarios", "veth,warren,wireguard-go", "comma-separated `list` of scenarios: veth, warren, warren-tap, wireguard-go")
	fs.IntVar(&o.Runs, "runs", bench.DefaultRuns, "repetitions of each test (at least 1)")
	fs.DurationVar(&o.Duration, "duration", bench.DefaultDuration, "measured time of each test (more than 0)")
	fs.IntVar(&o.Streams, "streams", bench.DefaultStreams, "parallel TCP streams of the multi-stream test")
	fs.IntVar(&o.MTU, "mtu", bench.DefaultMTU, "MTU of the veth pair (tunnels get this less 60)")
	fs.IntVar(&o.LatencyPPS, "latency-rate", bench.DefaultLatencyPPS, "echo requests per second in the latency test")
	fs.BoolVar(&o.Quick, "quick", false, "one short run of each test (under a minute in all)")
	fs.StringVar(&o.Tool, "tool", "", "cross-check TCP and UDP with an external `tool` (iperf3)")
	fs.StringVar(&o.WarrenPath, "warren", "", "warren binary to run as `warren up` (default: this executable)")
	fs.StringVar(&o.WireGuardGoPath, "wireguard-go", "", "wireguard-go binary (default: from PATH)")
	fs.IntVar(&o.TunnelProcs, "tunnel-procs", 0, "GOMAXPROCS of every tunnel process, warren's and wireguard-go's (0: the Go runtime's default, the cores)")
	fs.StringVar(&o.Prefix, "prefix", "wbench", "name prefix of the lab's namespaces")
	fs.StringVar(&f.jsonOut, "json", "", "write the report as JSON to `FILE` (- for standard output)")
	fs.StringVar(&f.chart, "chart", "", "write a bar chart of throughput and packet rate to `FILE.svg`")
	return f
}

// check refuses, before anything starts, the values that bench.Run would
// otherwise replace by its defaults (a zero) or refuse only after a long
// setup, and parses the scenario list into f.o.
func (f *benchFlags) check() error {
	o := &f.o
	switch {
	case o.Runs < 1:
		return fmt.Errorf("--runs %d: want at least 1", o.Runs)
	case o.Duration <= 0:
		return fmt.Errorf("--duration %v: want more than 0", o.Duration)
	case o.Streams < 1:
		return fmt.Errorf("--streams %d: want at least 1", o.Streams)
	case o.MTU < config.MinIPv6MTU || o.MTU > config.MaxMTU:
		return fmt.Errorf("--mtu %d: want %d to %d (the lab carries IPv6)", o.MTU, config.MinIPv6MTU, config.MaxMTU)
	case o.TunnelProcs < 0:
		return fmt.Errorf("--tunnel-procs %d: want 0 (the default) or more", o.TunnelProcs)
	case o.LatencyPPS < 1:
		return fmt.Errorf("--latency-rate %d: want at least 1", o.LatencyPPS)
	case o.Tool != "" && o.Tool != "iperf3":
		return fmt.Errorf("--tool %q: want iperf3", o.Tool)
	case o.Prefix == "":
		return errors.New("--prefix: want a name prefix")
	case f.jsonOut == "-" && f.chart == "-":
		return errors.New("--json and --chart cannot both write to standard output")
	}
	o.Scenarios = nil
	for s := range strings.SplitSeq(f.scenarios, ",") {
		switch s = strings.TrimSpace(s); s {
		case "":
		case bench.ScenarioVeth, bench.ScenarioWarren, bench.ScenarioWarrenTAP, bench.ScenarioWireGuardGo:
			if slices.Contains(o.Scenarios, s) {
				return fmt.Errorf("--scenarios: %q given twice", s)
			}
			o.Scenarios = append(o.Scenarios, s)
		default:
			return fmt.Errorf("--scenarios: unknown scenario %q (want %s, %s, %s or %s)", s,
				bench.ScenarioVeth, bench.ScenarioWarren, bench.ScenarioWarrenTAP, bench.ScenarioWireGuardGo)
		}
	}
	if len(o.Scenarios) == 0 {
		return errors.New("--scenarios: want at least one scenario")
	}
	return nil
}

// runBench implements `warren bench`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench")
	f := defineBenchFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: bench: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := f.check(); err != nil {
		return fmt.Errorf("%w: bench: %v", errUsage, err)
	}
	o := f.o
	// Output files are made now, as temporary files beside their paths, so
	// that an unwritable path fails before a run of many minutes, and a
	// failed run leaves no half-written report.
	var outs []*pendingOutput
	defer func() {
		for _, p := range outs {
			p.discard()
		}
	}()
	jsonOut, err := newPendingOutput(f.jsonOut, stdout)
	if err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	chartOut, err := newPendingOutput(f.chart, stdout)
	if err != nil {
		jsonOut.discard()
		return fmt.Errorf("--chart: %w", err)
	}
	outs = []*pendingOutput{jsonOut, chartOut}
	if o.WarrenPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the warren binary (pass --warren): %w", err)
		}
		o.WarrenPath = exe
	}
	if os.Geteuid() != 0 {
		return errors.New("bench needs root to create network namespaces")
	}

	// With the JSON on standard output, the table goes to standard error.
	table := stdout
	if f.jsonOut == "-" {
		table = stderr
	}
	o.Progress, o.ProgressTTY = stderr, isTerminal(stderr)

	rep, runErr := bench.Run(ctx, o)
	if rep == nil {
		return runErr
	}
	errs := []error{runErr}
	if len(rep.Scenarios) > 0 {
		errs = append(errs, rep.WriteTable(table))
	}
	errs = append(errs, jsonOut.commit(rep.WriteJSON), chartOut.commit(rep.WriteChart))
	return errors.Join(errs...)
}

// pendingOutput is an output file of bench, written in full under a
// temporary name beside its path and renamed into place, or standard
// output for "-". The zero path means no output.
type pendingOutput struct {
	path   string
	stdout io.Writer // for "-"
	tmp    *os.File  // nil for "" and "-"
}

// newPendingOutput checks that path can be written by creating its
// temporary file now.
func newPendingOutput(path string, stdout io.Writer) (*pendingOutput, error) {
	p := &pendingOutput{path: path, stdout: stdout}
	if path == "" || path == "-" {
		return p, nil
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", path, err)
	}
	p.tmp = tmp
	return p, nil
}

// commit writes the output with write and moves it into place.
func (p *pendingOutput) commit(write func(io.Writer) error) error {
	switch p.path {
	case "":
		return nil
	case "-":
		return write(p.stdout)
	}
	tmp := p.tmp
	if tmp == nil {
		return fmt.Errorf("write %s: already written or discarded", p.path)
	}
	p.tmp = nil
	err := write(tmp)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", p.path, err)
	}
	return nil
}

// discard removes the temporary file of an output not committed.
func (p *pendingOutput) discard() {
	if p.tmp != nil {
		p.tmp.Close()
		os.Remove(p.tmp.Name())
		p.tmp = nil
	}
}

// isTerminal reports whether w is a terminal, where progress lines may
// overwrite each other.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
