package bench

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one", []float64{2.5}, Summary{2.5, 2.5, 2.5}},
		{"odd", []float64{3, 1, 2}, Summary{2, 1, 3}},
		{"even", []float64{4, 1, 3, 2}, Summary{2.5, 1, 4}},
		{"repeated", []float64{5, 5, 1}, Summary{5, 1, 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if got := Summarize(in); got != tc.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("Summarize modified its input: %v, want %v", in, tc.in)
				}
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100 down to 1
	}
	tests := []struct {
		name string
		in   []float64
		p    float64
		want float64
	}{
		{"empty", nil, 50, 0},
		{"one", []float64{7}, 99, 7},
		{"p50 of 1..100", hundred, 50, 50},
		{"p99 of 1..100", hundred, 99, 99},
		{"p100", hundred, 100, 100},
		{"p0 is the minimum", hundred, 0, 1},
		{"p50 of four", []float64{4, 3, 2, 1}, 50, 2},
		{"p99 of four", []float64{4, 3, 2, 1}, 99, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if got := Percentile(in, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
			}
		})
	}
}

func TestSetRatios(t *testing.T) {
	tcp := func(v float64) Summary { return Summary{Median: v, Min: v, Max: v} }
	tests := []struct {
		name      string
		scenarios []Result
		wantVeth  []float64 // NaN: nil
		wantWGGo  []float64
	}{
		{
			name:      "all three",
			scenarios: []Result{{Name: "veth", TCPGbps: tcp(10)}, {Name: "warren", TCPGbps: tcp(4)}, {Name: "wireguard-go", TCPGbps: tcp(2)}},
			wantVeth:  []float64{1, 0.4, 0.2},
			wantWGGo:  []float64{5, 2, 1},
		},
		{
			name:      "no references",
			scenarios: []Result{{Name: "warren", TCPGbps: tcp(4)}},
			wantVeth:  []float64{math.NaN()},
			wantWGGo:  []float64{math.NaN()},
		},
		{
			name:      "veth only",
			scenarios: []Result{{Name: "warren", TCPGbps: tcp(3)}, {Name: "veth", TCPGbps: tcp(12)}},
			wantVeth:  []float64{0.25, 1},
			wantWGGo:  []float64{math.NaN(), math.NaN()},
		},
		{
			name:      "zero reference counts as absent",
			scenarios: []Result{{Name: "veth"}, {Name: "warren", TCPGbps: tcp(3)}},
			wantVeth:  []float64{math.NaN(), math.NaN()},
			wantWGGo:  []float64{math.NaN(), math.NaN()},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Report{Scenarios: tc.scenarios}
			r.setRatios()
			for i, s := range r.Scenarios {
				checkRatio(t, s.Name+" to veth", s.RatioToVeth, tc.wantVeth[i])
				checkRatio(t, s.Name+" to wireguard-go", s.RatioToWireGuardGo, tc.wantWGGo[i])
			}
		})
	}
}

// checkRatio compares a ratio with want, where NaN means absent.
func checkRatio(t *testing.T, what string, got *float64, want float64) {
	t.Helper()
	switch {
	case math.IsNaN(want) && got != nil:
		t.Errorf("ratio %s = %v, want absent", what, *got)
	case !math.IsNaN(want) && got == nil:
		t.Errorf("ratio %s absent, want %v", what, want)
	case got != nil && math.Abs(*got-want) > 1e-12:
		t.Errorf("ratio %s = %v, want %v", what, *got, want)
	}
}

func TestSamplesResult(t *testing.T) {
	s := samples{
		tcp:        []float64{3, 1, 2},
		tcpMulti:   []float64{4},
		rtt:        []float64{300, 100, 200, 400},
		cpuSeconds: 3,
		tcpBytes:   2e9,
	}
	s.udpPPS[0] = []float64{1000, 3000}
	s.udpLoss[0] = []float64{0.1, 0.3, 0.2}
	r := s.result("warren")
	if r.TCPGbps != (Summary{2, 1, 3}) || r.TCPMultiGbps != (Summary{4, 4, 4}) {
		t.Errorf("TCP = %+v, %+v; want {2 1 3}, {4 4 4}", r.TCPGbps, r.TCPMultiGbps)
	}
	if r.UDPPPS.B64 != (Summary{2000, 1000, 3000}) || r.UDPLoss.B64 != 0.2 {
		t.Errorf("UDP 64 = %+v loss %v; want {2000 1000 3000} loss 0.2", r.UDPPPS.B64, r.UDPLoss.B64)
	}
	if r.RTTMicros != (Percentiles{P50: 200, P99: 400}) {
		t.Errorf("RTT = %+v, want p50 200, p99 400", r.RTTMicros)
	}
	if r.CPUSecondsPerGB != 1.5 {
		t.Errorf("CPU = %v s/GB, want 1.5", r.CPUSecondsPerGB)
	}
	if r.IPerf3 != nil {
		t.Errorf("IPerf3 = %+v without iperf3 samples, want nil", r.IPerf3)
	}
}

func TestAxis(t *testing.T) {
	tests := []struct {
		peak, top, step float64
	}{
		{0, 1, 0.25},
		{1, 1, 0.25},
		{3.7, 4, 1},
		{9.3, 10, 2.5},
		{24.5, 30, 10},
		{180, 200, 50},
		{1234, 1500, 500},
	}
	for _, tc := range tests {
		top, step := axis(tc.peak)
		if math.Abs(top-tc.top) > 1e-9 || math.Abs(step-tc.step) > 1e-9 {
			t.Errorf("axis(%v) = %v, %v; want %v, %v", tc.peak, top, step, tc.top, tc.step)
		}
		if top < tc.peak {
			t.Errorf("axis(%v) top %v below the peak", tc.peak, top)
		}
	}
}
