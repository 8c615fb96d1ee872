package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/warrenvpn/warren/bench"
)

const benchUsage = `usage: warren bench [flags]

Builds two network namespaces joined by a veth pair, runs the same traffic
through each scenario (veth: no tunnel; warren; wireguard-go) and reports
TCP throughput, UDP packet rate and loss, round-trip latency and CPU cost.
Needs root. Everything it creates is removed at the end, on failure and on
Ctrl-C.

flags:
`

// runBench implements `warren bench`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var o bench.Options
	scenarios := fs.String("scenarios", "veth,warren,wireguard-go", "comma-separated `list` of scenarios: veth, warren, wireguard-go")
	fs.IntVar(&o.Runs, "runs", bench.DefaultRuns, "repetitions of each test")
	fs.DurationVar(&o.Duration, "duration", bench.DefaultDuration, "measured time of each test")
	fs.IntVar(&o.Streams, "streams", bench.DefaultStreams, "parallel TCP streams of the multi-stream test")
	fs.IntVar(&o.MTU, "mtu", bench.DefaultMTU, "MTU of the veth pair (tunnels get this less 60)")
	fs.IntVar(&o.LatencyPPS, "latency-rate", bench.DefaultLatencyPPS, "echo requests per second in the latency test")
	fs.BoolVar(&o.Quick, "quick", false, "one short run of each test (under a minute in all)")
	fs.StringVar(&o.Tool, "tool", "", "cross-check TCP and UDP with an external `tool` (iperf3)")
	fs.StringVar(&o.WarrenPath, "warren", "", "warren binary to run as `warren up` (default: this executable)")
	fs.StringVar(&o.WireGuardGoPath, "wireguard-go", "", "wireguard-go binary (default: from PATH)")
	fs.StringVar(&o.Prefix, "prefix", "wbench", "name prefix of the lab's namespaces")
	jsonOut := fs.String("json", "", "write the report as JSON to `FILE` (- for standard output)")
	chartOut := fs.String("chart", "", "write a bar chart of throughput and packet rate to `FILE.svg`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	for s := range strings.SplitSeq(*scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.Scenarios = append(o.Scenarios, s)
		}
	}
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
	if *jsonOut == "-" {
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
	if *jsonOut != "" {
		errs = append(errs, writeOutput(*jsonOut, stdout, rep.WriteJSON))
	}
	if *chartOut != "" {
		errs = append(errs, writeOutput(*chartOut, stdout, rep.WriteChart))
	}
	return errors.Join(errs...)
}

// writeOutput writes with write to the file path, or to stdout for "-".
func writeOutput(path string, stdout io.Writer, write func(io.Writer) error) error {
	if path == "-" {
		return write(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
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
