package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

// TestBenchFlags checks that bench refuses every malformed flag before it
// starts anything (also without root, where it would stop anyway), and
// prints nothing itself: main prints the error once.
func TestBenchFlags(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args      []string
		wantUsage bool
		want      string
	}{
		{[]string{"--bogus"}, true, "flag provided but not defined"},
		{[]string{"extra"}, true, `unexpected argument "extra"`},
		{[]string{"--runs", "0"}, true, "--runs 0: want at least 1"},
		{[]string{"--runs", "-2"}, true, "--runs -2: want at least 1"},
		{[]string{"--duration", "0s"}, true, "--duration 0s: want more than 0"},
		{[]string{"--duration", "-1s"}, true, "--duration -1s: want more than 0"},
		{[]string{"--duration", "3"}, true, "invalid value"},
		{[]string{"--streams", "0"}, true, "--streams 0"},
		{[]string{"--mtu", "576"}, true, "--mtu 576"},
		{[]string{"--latency-rate", "0"}, true, "--latency-rate 0"},
		{[]string{"--tunnel-procs", "-1"}, true, "--tunnel-procs -1: want 0 (the default) or more"},
		{[]string{"--tool", "netperf"}, true, `--tool "netperf"`},
		{[]string{"--scenarios", "veth,bogus"}, true, `unknown scenario "bogus"`},
		{[]string{"--scenarios", "veth,veth"}, true, `"veth" given twice`},
		{[]string{"--scenarios", ","}, true, "at least one scenario"},
		{[]string{"--json", "-", "--chart", "-"}, true, "cannot both write to standard output"},
		{[]string{"--json", filepath.Join(dir, "missing", "r.json")}, false, "--json: cannot write"},
		{[]string{"--json", dir}, false, "is a directory"},
		{[]string{"--chart", filepath.Join(dir, "missing", "r.svg")}, false, "--chart: cannot write"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runBench(context.Background(), tc.args, &stdout, &stderr)
			if err == nil || errors.Is(err, errUsage) != tc.wantUsage || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("runBench(%q) = %v, want an error with %q (usage %v)", tc.args, err, tc.want, tc.wantUsage)
			}
			if stdout.Len()+stderr.Len() != 0 {
				t.Errorf("runBench(%q) printed %q, %q; want nothing", tc.args, stdout.String(), stderr.String())
			}
		})
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("bench left %v in the output directory", left)
	}
}

// TestPendingOutput checks that an output file appears only when it is
// committed, whole, and that a discarded one leaves nothing.
func TestPendingOutput(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.json")
	p, err := newPendingOutput(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists before commit (%v)", path, err)
	}
	if err := p.commit(func(w io.Writer) error { _, err := io.WriteString(w, "{}\n"); return err }); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "{}\n" {
		t.Errorf("after commit %s = %q, %v; want {}", path, b, err)
	}
	q, err := newPendingOutput(filepath.Join(dir, "chart.svg"), nil)
	if err != nil {
		t.Fatal(err)
	}
	q.discard()
	if err := q.commit(func(io.Writer) error { return nil }); err == nil {
		t.Error("commit after discard succeeded, want an error")
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 {
		t.Errorf("directory holds %v, want only report.json", left)
	}
}

// benchReport is the part of `warren bench --json` the root tests check.
type benchReport struct {
	Machine struct {
		CPUs     int    `json:"cpus"`
		Kernel   string `json:"kernel"`
		CPUModel string `json:"cpu_model"`
	} `json:"machine"`
	Scenarios []map[string]any `json:"scenarios"`
	Skipped   []struct {
		Name   string `json:"name"`
		Reason string `json:"reason"`
	} `json:"skipped"`
}

// runBenchJSON runs `warren bench --quick --json - ARGS` with a lab prefix of
// its own and returns the decoded report. It checks that no namespace of the
// lab is left afterwards.
func runBenchJSON(t *testing.T, args ...string) benchReport {
	t.Helper()
	netlabtest.RequireRoot(t)
	prefix := fmt.Sprintf("wbt%d", os.Getpid())
	t.Cleanup(func() { checkLabGone(t, prefix) })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args = append([]string{"--quick", "--json", "-", "--prefix", prefix}, args...)
	if err := runBench(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("warren bench %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	t.Logf("warren bench %s:\n%s", strings.Join(args, " "), stderr.String())
	var rep benchReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("JSON output: %v\n%s", err, stdout.String())
	}
	if rep.Machine.CPUs < 1 || rep.Machine.Kernel == "" || rep.Machine.CPUModel == "" {
		t.Errorf("machine = %+v, want CPUs, kernel and CPU model", rep.Machine)
	}
	return rep
}

// checkLabGone fails t if a namespace whose name starts with prefix, or a
// control socket of the bench's tunnels (named wbw<pid>a and so on), is left.
func checkLabGone(t *testing.T, prefix string) {
	t.Helper()
	left := func(dir string, prefixes ...string) {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range entries {
			for _, p := range prefixes {
				if strings.HasPrefix(e.Name(), p) {
					t.Errorf("%s left behind", filepath.Join(dir, e.Name()))
				}
			}
		}
	}
	left("/run/netns", prefix)
	left("/var/run/wireguard", fmt.Sprintf("wbw%d", os.Getpid()), fmt.Sprintf("wbg%d", os.Getpid()), fmt.Sprintf("wbt%d", os.Getpid()))
}

// checkScenarios fails t unless rep has exactly the scenarios want and each
// figure is present and positive (loss: within [0, 1]; ratios present when
// their reference ran).
func checkScenarios(t *testing.T, rep benchReport, want ...string) {
	t.Helper()
	var names []string
	for _, s := range rep.Scenarios {
		names = append(names, fmt.Sprint(s["name"]))
	}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("scenarios = %v (skipped %+v), want %v", names, rep.Skipped, want)
	}
	for _, s := range rep.Scenarios {
		name := s["name"]
		positive := func(path string, v any) {
			if f, ok := v.(float64); !ok || !(f > 0) {
				t.Errorf("%s: %s = %v, want a positive number", name, path, v)
			}
		}
		summary := func(path string, v any) {
			m, _ := v.(map[string]any)
			for _, k := range []string{"median", "min", "max"} {
				positive(path+"."+k, m[k])
			}
		}
		summary("tcp_gbps", s["tcp_gbps"])
		summary("tcp_multi_gbps", s["tcp_multi_gbps"])
		pps, _ := s["udp_pps"].(map[string]any)
		loss, _ := s["udp_loss"].(map[string]any)
		for _, size := range []string{"64", "512", "1400"} {
			summary("udp_pps."+size, pps[size])
			if l, ok := loss[size].(float64); !ok || l < 0 || l > 1 {
				t.Errorf("%s: udp_loss.%s = %v, want within [0, 1]", name, size, loss[size])
			}
		}
		rtt, _ := s["rtt_us"].(map[string]any)
		positive("rtt_us.p50", rtt["p50"])
		positive("rtt_us.p99", rtt["p99"])
		positive("cpu_seconds_per_gb", s["cpu_seconds_per_gb"])
		positive("ratio_to_veth", s["ratio_to_veth"])
		if _, ok := s["ratio_to_wireguard_go"]; !ok {
			t.Errorf("%s: ratio_to_wireguard_go missing (null when wireguard-go did not run)", name)
		}
	}
}

// buildWarren builds this command into a temporary directory: the test
// binary itself cannot serve as `warren up`.
func buildWarren(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "warren")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBenchQuick runs `warren bench --quick --scenarios
// veth,warren,warren-tap --json -` with real `warren up` processes (in TUN
// and in TAP mode) and checks every figure and that the lab is gone
// afterwards (issue 4, issue 9).
func TestBenchQuick(t *testing.T) {
	netlabtest.RequireRoot(t)
	bin := buildWarren(t)
	rep := runBenchJSON(t, "--scenarios", "veth,warren,warren-tap", "--warren", bin)
	checkScenarios(t, rep, "veth", "warren", "warren-tap")
}
