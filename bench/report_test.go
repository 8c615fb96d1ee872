package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/internal/leakcheck"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sampleReport is a fixed report of three scenarios, one skipped.
func sampleReport() *Report {
	sum := func(med, lo, hi float64) Summary { return Summary{Median: med, Min: lo, Max: hi} }
	r := &Report{
		Machine: Machine{CPUs: 2, Kernel: "6.18.44-test", CPUModel: "AMD EPYC <test>"},
		Config: Config{
			Scenarios: []string{"veth", "warren", "wireguard-go"}, Runs: 3, DurationSeconds: 3,
			Streams: 4, MTU: 1500, TunnelMTU: 1440, LatencyPPS: 1000,
		},
		Scenarios: []Result{
			{
				Name: "veth", TCPGbps: sum(24.5, 22.1, 25.3), TCPMultiGbps: sum(21.9, 20, 23.5),
				UDPPPS:          BySize[Summary]{sum(240e3, 230e3, 250e3), sum(250e3, 240e3, 260e3), sum(245e3, 200e3, 247e3)},
				RTTMicros:       Percentiles{P50: 26, P99: 82},
				CPUSecondsPerGB: 0.37,
			},
			{
				Name: "warren", TCPGbps: sum(2.4, 2.2, 2.6), TCPMultiGbps: sum(2.9, 2.7, 3.1),
				UDPPPS:          BySize[Summary]{sum(95e3, 90e3, 99e3), sum(90e3, 85e3, 93e3), sum(80e3, 78e3, 84e3)},
				UDPLoss:         BySize[float64]{0.12, 0.2, 0.35},
				RTTMicros:       Percentiles{P50: 95, P99: 410},
				CPUSecondsPerGB: 2.1,
				IPerf3:          &IPerf3Result{TCPGbps: 2.3, UDPGbps: 0.9, UDPLoss: 0.4},
			},
			{
				Name: "wireguard-go", TCPGbps: sum(0.37, 0.35, 0.4), TCPMultiGbps: sum(0.36, 0.3, 0.41),
				UDPPPS:          BySize[Summary]{sum(35e3, 30e3, 36e3), sum(28e3, 25e3, 30e3), sum(17e3, 16e3, 19e3)},
				UDPLoss:         BySize[float64]{0.849, 0.797, 0.896},
				RTTMicros:       Percentiles{P50: 213, P99: 1031},
				CPUSecondsPerGB: 23.72,
			},
		},
		Skipped: []Skip{{Name: "tap", Reason: "unavailable: not built yet"}},
	}
	r.setRatios()
	return r
}

// checkGolden compares got with testdata/name, or rewrites it under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", name, diff)
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		file  string
		write func(*Report, *bytes.Buffer) error
	}{
		{"report.json", func(r *Report, b *bytes.Buffer) error { return r.WriteJSON(b) }},
		{"report.txt", func(r *Report, b *bytes.Buffer) error { return r.WriteTable(b) }},
		{"chart.svg", func(r *Report, b *bytes.Buffer) error { return r.WriteChart(b) }},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.write(sampleReport(), &b); err != nil {
				t.Fatalf("write: %v", err)
			}
			checkGolden(t, tc.file, b.Bytes())
		})
	}
}

// TestTunnelProcs: --tunnel-procs reaches both kinds of tunnel process as
// GOMAXPROCS, and the table's last line and the JSON say it was set.
func TestTunnelProcs(t *testing.T) {
	o := Options{TunnelProcs: 1}
	if got := o.tunnelEnv("WG_PROCESS_FOREGROUND=1"); !slices.Equal(got, []string{"WG_PROCESS_FOREGROUND=1", "GOMAXPROCS=1"}) {
		t.Errorf("tunnelEnv = %q", got)
	}
	if got := (&Options{}).tunnelEnv(); len(got) != 0 {
		t.Errorf("tunnelEnv without TunnelProcs = %q, want nothing", got)
	}
	r := sampleReport()
	r.Config.TunnelProcs = 1
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "kernel 6.18.44-test; tunnels at GOMAXPROCS=1\n") {
		t.Errorf("table does not say GOMAXPROCS=1:\n%s", b.String())
	}
	b.Reset()
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"tunnel_gomaxprocs": 1`) {
		t.Errorf("JSON lacks tunnel_gomaxprocs:\n%s", b.String())
	}
}

// TestJSONShape pins the documented field names and units (issue 4).
func TestJSONShape(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Machine   map[string]any   `json:"machine"`
		Config    map[string]any   `json:"config"`
		Scenarios []map[string]any `json:"scenarios"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cpus", "kernel", "cpu_model"} {
		if _, ok := doc.Machine[k]; !ok {
			t.Errorf("machine.%s missing", k)
		}
	}
	wantKeys := []string{"name", "tcp_gbps", "tcp_multi_gbps", "udp_pps", "udp_loss", "rtt_us",
		"cpu_seconds_per_gb", "ratio_to_veth", "ratio_to_wireguard_go"}
	for _, s := range doc.Scenarios {
		for _, k := range wantKeys {
			if _, ok := s[k]; !ok {
				t.Errorf("scenario %v: %s missing", s["name"], k)
			}
		}
		for _, size := range []string{"64", "512", "1400"} {
			if _, ok := s["udp_pps"].(map[string]any)[size].(map[string]any)["median"]; !ok {
				t.Errorf("scenario %v: udp_pps.%s.median missing", s["name"], size)
			}
			if _, ok := s["udp_loss"].(map[string]any)[size].(float64); !ok {
				t.Errorf("scenario %v: udp_loss.%s missing", s["name"], size)
			}
		}
		for _, p := range []string{"p50", "p99"} {
			if _, ok := s["rtt_us"].(map[string]any)[p]; !ok {
				t.Errorf("scenario %v: rtt_us.%s missing", s["name"], p)
			}
		}
	}
	if i := strings.Index(b.String(), `"64"`); i < 0 || i > strings.Index(b.String(), `"1400"`) {
		t.Errorf("udp_pps sizes not in ascending order:\n%s", b.String())
	}
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		{"plain", "1234 (wireguard-go) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 9 0 5000", 3800 * time.Millisecond, false},
		{"name with spaces and parens", "99 (a b) c) R 1 99 99 0 -1 0 0 0 0 0 7 3 0 0", 100 * time.Millisecond, false},
		{"no name", "garbage", 0, true},
		{"short", "1 (x) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 3 0 0", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU(tc.stat)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseStatCPU(%q) = %v, %v; want %v, error %v", tc.stat, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseIPerf3(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		udp     bool
		want    iperf3Figures
		wantErr bool
	}{
		{"tcp", `{"end":{"sum_sent":{"bits_per_second":3e9},"sum_received":{"bits_per_second":2e9}}}`, false, iperf3Figures{gbps: 2}, false},
		{"udp 3.12", `{"end":{"sum":{"bits_per_second":1.5e9,"lost_percent":25},"sum_received":{"bits_per_second":1e9,"lost_percent":25}}}`, true, iperf3Figures{gbps: 1, loss: 0.25}, false},
		{"udp old", `{"end":{"sum":{"bits_per_second":1e9,"lost_percent":10}}}`, true, iperf3Figures{gbps: 1, loss: 0.1}, false},
		{"error", `{"start":{},"end":{},"error":"unable to connect to server"}`, false, iperf3Figures{}, true},
		{"no summary", `{"end":{}}`, false, iperf3Figures{}, true},
		{"not json", `iperf3: error`, false, iperf3Figures{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseIPerf3([]byte(tc.out), tc.udp)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseIPerf3(%s) = %+v, %v; want %+v, error %v", tc.out, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		in      Options
		wantErr string
	}{
		{"defaults", Options{}, ""},
		{"quick", Options{Quick: true, Runs: 9}, ""},
		{"unknown scenario", Options{Scenarios: []string{"veth", "tap"}}, "unknown scenario"},
		{"twice", Options{Scenarios: []string{"veth", "veth"}}, "twice"},
		{"short", Options{Duration: time.Millisecond}, "duration"},
		{"small MTU", Options{MTU: 500}, "mtu"},
		{"bad tool", Options{Tool: "netperf"}, "unknown tool"},
		{"negative runs", Options{Runs: -1}, "runs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.in
			err := o.normalize()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("normalize(%+v) = %v, want nil", tc.in, err)
				}
				if len(o.Scenarios) == 0 || o.Runs < 1 || o.Duration <= 0 || o.Streams < 1 || o.MTU == 0 {
					t.Errorf("normalize(%+v) left a zero setting: %+v", tc.in, o)
				}
				if tc.in.Quick && (o.Runs != 1 || o.Duration != quickDuration) {
					t.Errorf("quick: runs %d, duration %v; want 1, %v", o.Runs, o.Duration, quickDuration)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("normalize(%+v) = %v, want error containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

// fakeLab runs scenarios over loopback; the scenario named fail fails to start.
type fakeLab struct {
	fail   string
	starts []string // scenarios started, in order
}

func (l *fakeLab) start(ctx context.Context, scenario string) (*endpoints, error) {
	l.starts = append(l.starts, scenario)
	if scenario == l.fail {
		return nil, errors.New("tunnel did not come up")
	}
	var cpu time.Duration
	return &endpoints{
		path: loopback,
		meter: func() (time.Duration, error) {
			cpu += 100 * time.Millisecond
			return cpu, nil
		},
		clientCmd: exec.CommandContext,
		serverCmd: exec.CommandContext,
	}, nil
}

func (l *fakeLab) Close() error { return nil }

func TestRun(t *testing.T) {
	leakcheck.Check(t)
	var progress bytes.Buffer
	o := Options{
		Scenarios: []string{"veth", "warren", "wireguard-go"},
		Runs:      1, Duration: 100 * time.Millisecond, LatencyPPS: 500,
		Progress: &progress,
	}
	if err := o.normalize(); err != nil {
		t.Fatal(err)
	}
	l := &fakeLab{fail: "wireguard-go"}
	rep, err := run(context.Background(), &o, l)
	if err == nil || !strings.Contains(err.Error(), "wireguard-go") {
		t.Errorf("run = %v, want the wireguard-go failure", err)
	}
	if len(rep.Scenarios) != 2 || rep.Scenarios[0].Name != "veth" || rep.Scenarios[1].Name != "warren" {
		t.Fatalf("scenarios = %+v, want veth and warren", rep.Scenarios)
	}
	if len(rep.Skipped) != 1 || rep.Skipped[0].Name != "wireguard-go" || !strings.HasPrefix(rep.Skipped[0].Reason, "failed: ") {
		t.Errorf("skipped = %+v, want wireguard-go failed", rep.Skipped)
	}
	for _, s := range rep.Scenarios {
		checkPositive(t, s)
		if s.RatioToVeth == nil || s.RatioToWireGuardGo != nil {
			t.Errorf("%s: ratios %v, %v; want to veth only", s.Name, s.RatioToVeth, s.RatioToWireGuardGo)
		}
	}
	if got := strings.Count(progress.String(), "\n"); got < 12 {
		t.Errorf("progress has %d lines, want one per step at least:\n%s", got, progress.String())
	}
}

// TestRunInterleaves: each run starts every scenario in turn and runs each
// test once through it, so that the host's load swings fall on all of
// them; a scenario that fails is not started again, and the progress count
// drops its steps.
func TestRunInterleaves(t *testing.T) {
	leakcheck.Check(t)
	var progress bytes.Buffer
	o := Options{
		Scenarios: []string{"veth", "warren", "wireguard-go"},
		Runs:      2, Duration: 100 * time.Millisecond, LatencyPPS: 500,
		Progress: &progress,
	}
	if err := o.normalize(); err != nil {
		t.Fatal(err)
	}
	l := &fakeLab{fail: "wireguard-go"}
	rep, err := run(context.Background(), &o, l)
	if err == nil {
		t.Error("run = nil, want the wireguard-go failure")
	}
	if want := []string{"veth", "warren", "wireguard-go", "veth", "warren"}; !slices.Equal(l.starts, want) {
		t.Errorf("started %v, want %v", l.starts, want)
	}
	if len(rep.Scenarios) != 2 || rep.Scenarios[0].TCPGbps.Median <= 0 {
		t.Fatalf("scenarios = %+v, want veth and warren", rep.Scenarios)
	}
	steps := len(o.tests())
	if want := fmt.Sprintf("[%d/%d]", 4*steps, 4*steps); !strings.Contains(progress.String(), want) {
		t.Errorf("progress never reached %s:\n%s", want, progress.String())
	}
}

func TestRunUnavailable(t *testing.T) {
	o := Options{Scenarios: []string{"wireguard-go"}, Runs: 1, Duration: 100 * time.Millisecond}
	if err := o.normalize(); err != nil {
		t.Fatal(err)
	}
	l := &unavailableLab{}
	rep, err := run(context.Background(), &o, l)
	if err != nil {
		t.Fatalf("run = %v, want nil: an unavailable scenario is skipped", err)
	}
	if len(rep.Scenarios) != 0 || len(rep.Skipped) != 1 {
		t.Errorf("report = %+v, want one skipped scenario", rep)
	}
}

// unavailableLab has no scenario at all.
type unavailableLab struct{}

func (unavailableLab) start(context.Context, string) (*endpoints, error) {
	return nil, errors.Join(errors.New("not installed"), ErrUnavailable)
}

func (unavailableLab) Close() error { return nil }

func TestRunCanceled(t *testing.T) {
	leakcheck.Check(t)
	o := Options{Scenarios: []string{"veth"}, Runs: 1, Duration: time.Minute}
	if err := o.normalize(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := run(ctx, &o, &fakeLab{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("run = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("run took %v after cancel", d)
	}
}

// checkPositive fails t unless every figure of s is present and positive
// (loss may be zero).
func checkPositive(t *testing.T, s Result) {
	t.Helper()
	pos := map[string]float64{
		"tcp_gbps": s.TCPGbps.Median, "tcp_gbps.min": s.TCPGbps.Min,
		"tcp_multi_gbps": s.TCPMultiGbps.Median,
		"rtt_us.p50":     s.RTTMicros.P50, "rtt_us.p99": s.RTTMicros.P99,
		"cpu_seconds_per_gb": s.CPUSecondsPerGB,
	}
	for i, size := range UDPPayloads {
		pos["udp_pps."+string(rune('0'+i))] = s.UDPPPS.At(i).Median
		if l := *s.UDPLoss.At(i); l < 0 || l > 1 {
			t.Errorf("%s: udp_loss %d = %v, want within [0, 1]", s.Name, size, l)
		}
	}
	for k, v := range pos {
		if !(v > 0) {
			t.Errorf("%s: %s = %v, want > 0", s.Name, k, v)
		}
	}
}
