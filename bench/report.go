package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Scenario names understood by Run.
const (
	ScenarioVeth        = "veth"
	ScenarioWarren      = "warren"
	ScenarioWireGuardGo = "wireguard-go"
	// ScenarioWarrenTAP is warren in Mode = tap: Ethernet frames between
	// TAPs that carry the addresses, ARP across the tunnel.
	ScenarioWarrenTAP = "warren-tap"
)

// UDPPayloads are the UDP payload sizes of the packet-rate test, in bytes.
var UDPPayloads = [3]int{64, 512, 1400}

// Report is the outcome of one invocation: the machine, the settings and one
// Result per scenario that ran. Its JSON form is the documented output of
// `warren bench --json`.
type Report struct {
	Machine   Machine  `json:"machine"`
	Config    Config   `json:"config"`
	Scenarios []Result `json:"scenarios"`
	// Skipped lists the scenarios that were asked for but could not run.
	Skipped []Skip `json:"skipped,omitempty"`
}

// Machine describes the host the figures come from.
type Machine struct {
	CPUs     int    `json:"cpus"`
	Kernel   string `json:"kernel"`
	CPUModel string `json:"cpu_model"`
}

// Config records the settings of the invocation.
type Config struct {
	Scenarios       []string `json:"scenarios"`
	Runs            int      `json:"runs"`
	DurationSeconds float64  `json:"duration_s"` // per test and run
	Streams         int      `json:"streams"`    // parallel TCP streams of tcp_multi_gbps
	MTU             int      `json:"mtu"`        // of the veth pair
	TunnelMTU       int      `json:"tunnel_mtu"` // of the tunnel interfaces
	LatencyPPS      int      `json:"latency_pps"`
	Quick           bool     `json:"quick"`
	Tool            string   `json:"tool,omitempty"`
	TunnelProcs     int      `json:"tunnel_gomaxprocs,omitempty"` // 0: the runtime's default
}

// Skip names a scenario that did not run and why.
type Skip struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Result holds the figures of one scenario. Throughput is in Gbit/s (10^9
// bits of payload per second), packet rates in packets per second delivered,
// loss as a fraction of the packets sent (0 to 1), round-trip times in
// microseconds and CPU cost in CPU-seconds (user+system) per 10^9 bytes of
// TCP payload.
type Result struct {
	Name            string          `json:"name"`
	TCPGbps         Summary         `json:"tcp_gbps"`
	TCPMultiGbps    Summary         `json:"tcp_multi_gbps"`
	UDPPPS          BySize[Summary] `json:"udp_pps"`
	UDPLoss         BySize[float64] `json:"udp_loss"` // median over runs
	RTTMicros       Percentiles     `json:"rtt_us"`
	CPUSecondsPerGB float64         `json:"cpu_seconds_per_gb"`
	// RatioToVeth and RatioToWireGuardGo compare the median single-stream TCP
	// throughput with that of the reference scenario in the same invocation;
	// nil when the reference did not run.
	RatioToVeth        *float64 `json:"ratio_to_veth"`
	RatioToWireGuardGo *float64 `json:"ratio_to_wireguard_go"`
	// IPerf3 is the cross-check with iperf3 (--tool iperf3).
	IPerf3 *IPerf3Result `json:"iperf3,omitempty"`
}

// BySize holds one value per UDP payload size (see UDPPayloads). It is a
// struct rather than a map so that JSON keeps the sizes in ascending order.
type BySize[T any] struct {
	B64   T `json:"64"`
	B512  T `json:"512"`
	B1400 T `json:"1400"`
}

// At returns the value for the i-th size of UDPPayloads.
func (b *BySize[T]) At(i int) *T {
	return [...]*T{&b.B64, &b.B512, &b.B1400}[i]
}

// Percentiles are round-trip time percentiles.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// IPerf3Result is iperf3's view of the same path, median over runs.
type IPerf3Result struct {
	TCPGbps float64 `json:"tcp_gbps"`
	UDPGbps float64 `json:"udp_gbps"` // delivered, 1400-byte datagrams sent without a rate limit
	UDPLoss float64 `json:"udp_loss"` // fraction
}

// samples are the raw measurements of one scenario, one entry per run.
type samples struct {
	tcp, tcpMulti []float64 // Gbit/s
	udpPPS        [len(UDPPayloads)][]float64
	udpLoss       [len(UDPPayloads)][]float64
	rtt           []float64 // µs, pooled over runs
	cpuSeconds    float64   // CPU time of the endpoints during the TCP windows
	tcpBytes      float64   // payload bytes moved in the TCP windows
	iperfTCP      []float64 // Gbit/s
	iperfUDP      []float64 // Gbit/s
	iperfUDPLoss  []float64
}

// result summarizes s as the Result of scenario name.
func (s *samples) result(name string) Result {
	r := Result{
		Name:         name,
		TCPGbps:      Summarize(s.tcp),
		TCPMultiGbps: Summarize(s.tcpMulti),
		RTTMicros: Percentiles{
			P50: Percentile(s.rtt, 50),
			P99: Percentile(s.rtt, 99),
		},
	}
	for i := range UDPPayloads {
		*r.UDPPPS.At(i) = Summarize(s.udpPPS[i])
		*r.UDPLoss.At(i) = Summarize(s.udpLoss[i]).Median
	}
	if s.tcpBytes > 0 {
		r.CPUSecondsPerGB = s.cpuSeconds / (s.tcpBytes / 1e9)
	}
	if len(s.iperfTCP) > 0 || len(s.iperfUDP) > 0 {
		r.IPerf3 = &IPerf3Result{
			TCPGbps: Summarize(s.iperfTCP).Median,
			UDPGbps: Summarize(s.iperfUDP).Median,
			UDPLoss: Summarize(s.iperfUDPLoss).Median,
		}
	}
	return r
}

// setRatios fills RatioToVeth and RatioToWireGuardGo of every scenario from
// the references present in r.
func (r *Report) setRatios() {
	ref := func(name string) (float64, bool) {
		for _, s := range r.Scenarios {
			if s.Name == name && s.TCPGbps.Median > 0 {
				return s.TCPGbps.Median, true
			}
		}
		return 0, false
	}
	veth, hasVeth := ref(ScenarioVeth)
	wggo, hasWGGo := ref(ScenarioWireGuardGo)
	for i := range r.Scenarios {
		s := &r.Scenarios[i]
		s.RatioToVeth, s.RatioToWireGuardGo = nil, nil
		if hasVeth {
			v := ratio(s.TCPGbps.Median, veth)
			s.RatioToVeth = &v
		}
		if hasWGGo {
			v := ratio(s.TCPGbps.Median, wggo)
			s.RatioToWireGuardGo = &v
		}
	}
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r as a table with one column per scenario: the median of
// each figure, with [min-max] where runs were repeated.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(label, unit string, cell func(s *Result) string) {
		fmt.Fprintf(tw, "%s\t%s", label, unit)
		for i := range r.Scenarios {
			fmt.Fprintf(tw, "\t%s", cell(&r.Scenarios[i]))
		}
		fmt.Fprint(tw, "\t\n")
	}
	spread := r.Config.Runs > 1
	sum := func(s Summary, scale float64, prec int) string {
		if !spread {
			return fmt.Sprintf("%.*f", prec, s.Median*scale)
		}
		return fmt.Sprintf("%.*f [%.*f-%.*f]", prec, s.Median*scale, prec, s.Min*scale, prec, s.Max*scale)
	}
	opt := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.2f", *v)
	}

	fmt.Fprintf(tw, "\t")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "\t%s", s.Name)
	}
	fmt.Fprint(tw, "\t\n")
	row("TCP 1 stream", "Gbit/s", func(s *Result) string { return sum(s.TCPGbps, 1, 2) })
	row(fmt.Sprintf("TCP %d streams", r.Config.Streams), "Gbit/s", func(s *Result) string { return sum(s.TCPMultiGbps, 1, 2) })
	for i, size := range UDPPayloads {
		row(fmt.Sprintf("UDP %d B", size), "kpps", func(s *Result) string { return sum(*s.UDPPPS.At(i), 1e-3, 0) })
	}
	for i, size := range UDPPayloads {
		row(fmt.Sprintf("UDP %d B loss", size), "%", func(s *Result) string { return fmt.Sprintf("%.1f", *s.UDPLoss.At(i)*100) })
	}
	row("RTT p50", "µs", func(s *Result) string { return fmt.Sprintf("%.0f", s.RTTMicros.P50) })
	row("RTT p99", "µs", func(s *Result) string { return fmt.Sprintf("%.0f", s.RTTMicros.P99) })
	row("CPU", "s/GB", func(s *Result) string { return fmt.Sprintf("%.2f", s.CPUSecondsPerGB) })
	row("vs veth", "x", func(s *Result) string { return opt(s.RatioToVeth) })
	row("vs wireguard-go", "x", func(s *Result) string { return opt(s.RatioToWireGuardGo) })
	if r.hasIPerf3() {
		iperf := func(f func(*IPerf3Result) string) func(*Result) string {
			return func(s *Result) string {
				if s.IPerf3 == nil {
					return "-"
				}
				return f(s.IPerf3)
			}
		}
		row("iperf3 TCP", "Gbit/s", iperf(func(p *IPerf3Result) string { return fmt.Sprintf("%.2f", p.TCPGbps) }))
		row("iperf3 UDP 1400 B", "Gbit/s", iperf(func(p *IPerf3Result) string { return fmt.Sprintf("%.2f", p.UDPGbps) }))
		row("iperf3 UDP loss", "%", iperf(func(p *IPerf3Result) string { return fmt.Sprintf("%.1f", p.UDPLoss*100) }))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d run(s) of %gs per test; %s; %d CPUs, kernel %s",
		r.Config.Runs, r.Config.DurationSeconds, "median [min-max]", r.Machine.CPUs, r.Machine.Kernel)
	if n := r.Config.TunnelProcs; n > 0 {
		fmt.Fprintf(&b, "; tunnels at GOMAXPROCS=%d", n)
	}
	b.WriteString("\n")
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "skipped %s: %s\n", s.Name, s.Reason)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// hasIPerf3 reports whether any scenario carries an iperf3 cross-check.
func (r *Report) hasIPerf3() bool {
	for _, s := range r.Scenarios {
		if s.IPerf3 != nil {
			return true
		}
	}
	return false
}
