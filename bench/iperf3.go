package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// iperf3 cross-check tuning.
const (
	iperf3Port    = 5201             // iperf3's own default
	iperf3Payload = 1400             // bytes per UDP datagram, as in the built-in test
	iperf3Listen  = 10 * time.Second // for the server's banner
)

// iperf3Tests are the --tool iperf3 cross-checks: TCP, then UDP without a
// rate limit.
func (o *Options) iperf3Tests() []test {
	return []test{
		{"iperf3 TCP", func(ctx context.Context, ep *endpoints, s *samples) error {
			r, err := runIPerf3(ctx, ep, o.Duration, false)
			if err != nil {
				return err
			}
			s.iperfTCP = append(s.iperfTCP, r.gbps)
			return nil
		}},
		{fmt.Sprintf("iperf3 UDP %d B", iperf3Payload), func(ctx context.Context, ep *endpoints, s *samples) error {
			r, err := runIPerf3(ctx, ep, o.Duration, true)
			if err != nil {
				return err
			}
			s.iperfUDP = append(s.iperfUDP, r.gbps)
			s.iperfUDPLoss = append(s.iperfUDPLoss, r.loss)
			return nil
		}},
	}
}

// iperf3Figures is what one iperf3 client run reports.
type iperf3Figures struct {
	gbps float64 // received
	loss float64 // fraction, UDP only
}

// runIPerf3 runs a one-off iperf3 server beside the path's server and a
// client beside its client for d (rounded up to whole seconds).
func runIPerf3(ctx context.Context, ep *endpoints, d time.Duration, udp bool) (iperf3Figures, error) {
	addr := ep.path.ServerAddr.String()
	port := strconv.Itoa(iperf3Port)
	srv := ep.serverCmd(ctx, "iperf3", "--server", "--one-off", "--forceflush", "--bind", addr, "--port", port)
	ready := &watchWriter{want: []byte("Server listening"), seen: make(chan struct{})}
	srv.Stdout, srv.Stderr = ready, ready
	if err := srv.Start(); err != nil {
		return iperf3Figures{}, fmt.Errorf("start iperf3 server: %w", err)
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()
	// A probe connection would use up the one-off server: wait for its banner.
	select {
	case <-ready.seen:
	case <-ctx.Done():
		return iperf3Figures{}, ctx.Err()
	case <-time.After(iperf3Listen):
		return iperf3Figures{}, fmt.Errorf("iperf3 server not listening after %v: %s", iperf3Listen, ready.String())
	}

	args := []string{"--client", addr, "--port", port, "--json",
		"--time", strconv.Itoa(int(math.Ceil(d.Seconds())))}
	if udp {
		args = append(args, "--udp", "--bitrate", "0", "--length", strconv.Itoa(iperf3Payload))
	}
	out, err := ep.clientCmd(ctx, "iperf3", args...).Output()
	if err != nil {
		return iperf3Figures{}, fmt.Errorf("iperf3 client: %v: %s", err, iperf3Error(out))
	}
	return parseIPerf3(out, udp)
}

// iperf3Report is the part of iperf3's --json output used here.
type iperf3Report struct {
	End struct {
		Sum         *iperf3Sum `json:"sum"`
		SumReceived *iperf3Sum `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperf3Sum is a summary section of iperf3's JSON output.
type iperf3Sum struct {
	BitsPerSecond float64 `json:"bits_per_second"`
	LostPercent   float64 `json:"lost_percent"`
}

// parseIPerf3 reads the received rate (and for UDP the loss) from iperf3's
// JSON output. UDP runs of iperf3 before 3.13 report the receiver's figures
// only in "sum".
func parseIPerf3(out []byte, udp bool) (iperf3Figures, error) {
	var r iperf3Report
	if err := json.Unmarshal(out, &r); err != nil {
		return iperf3Figures{}, fmt.Errorf("iperf3 output: %w", err)
	}
	if r.Error != "" {
		return iperf3Figures{}, fmt.Errorf("iperf3: %s", r.Error)
	}
	sum := r.End.SumReceived
	if sum == nil {
		sum = r.End.Sum
	}
	if sum == nil {
		return iperf3Figures{}, errors.New("iperf3 output: no summary")
	}
	f := iperf3Figures{gbps: sum.BitsPerSecond / 1e9}
	if udp && r.End.Sum != nil {
		f.loss = r.End.Sum.LostPercent / 100
	}
	return f, nil
}

// iperf3Error extracts the error message of a failed iperf3 --json run.
func iperf3Error(out []byte) string {
	var r iperf3Report
	if json.Unmarshal(out, &r) == nil && r.Error != "" {
		return r.Error
	}
	return string(bytes.TrimSpace(out))
}

// lookIPerf3 reports whether iperf3 is installed.
func lookIPerf3() error {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return fmt.Errorf("--tool iperf3: %w", err)
	}
	return nil
}

// watchWriter collects output and closes seen once it contains want.
type watchWriter struct {
	want []byte
	seen chan struct{}
	mu   sync.Mutex
	buf  []byte
	done bool
}

// Write appends b and checks for want.
func (w *watchWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) < logTailBytes {
		w.buf = append(w.buf, b...)
	}
	if !w.done && bytes.Contains(w.buf, w.want) {
		w.done = true
		close(w.seen)
	}
	return len(b), nil
}

// String returns the output collected.
func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(bytes.TrimSpace(w.buf))
}
