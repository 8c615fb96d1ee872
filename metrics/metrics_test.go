package metrics

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

var (
	_ Source        = (*tunnel.Engine)(nil)
	_ CounterSource = (*tunnel.Engine)(nil)
)

// fakeSource is a Source with a fixed state, counting its reads.
type fakeSource struct {
	mu    sync.Mutex
	state *uapi.State
	drops map[string]uint64
	err   error
	reads int

	counters []tunnel.PeerCounters
	batches  tunnel.BatchCounts
}

func (f *fakeSource) PeerCounters() []tunnel.PeerCounters {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counters
}

func (f *fakeSource) BatchCounts() tunnel.BatchCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.batches
}

func (f *fakeSource) State() (*uapi.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.state, f.err
}

func (f *fakeSource) DropCounts() map[string]uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.drops
}

// testSource returns a source with two peers, one with every field set.
func testSource(t testing.TB) (*fakeSource, crypto.PublicKey) {
	t.Helper()
	priv, err := crypto.ParsePrivateKeyHex(uapitest.KeyA)
	if err != nil {
		t.Fatal(err)
	}
	pubB, _ := crypto.ParsePublicKeyHex(uapitest.KeyB)
	pubC, _ := crypto.ParsePublicKeyHex(uapitest.KeyC)
	return &fakeSource{
		state: &uapi.State{PrivateKey: priv, ListenPort: 51820, Peers: []uapi.PeerState{
			{PublicKey: pubB, Endpoint: netip.MustParseAddrPort("198.18.0.2:51821"),
				LastHandshake: time.Unix(1796216400, 500e6), TxBytes: 17808052, RxBytes: 1372, PersistentKeepalive: 25},
			{PublicKey: pubC},
		}, Extras: []uapi.Extra{
			{Key: "warren_mesh_connected", Value: "1"},
			{Key: "warren_mesh_peers", Value: "2"},
			{Key: "warren_mesh_events_total", Value: "7"},
			{Key: "warren_mesh_errors_total", Value: "1"},
			{Key: "warren_mesh_last_error", Value: "etcd: context deadline exceeded"}, // not a number: no metric
			{Key: "warren_mesh_peers", Value: "3"},                                    // a second time: left out
			{Key: "warren_device_peers", Value: "9"},                                  // the Collector's own: left out
		}},
		drops:    map[string]uint64{"no_route": 3, "replay": 1},
		counters: []tunnel.PeerCounters{{PublicKey: pubB, Handshakes: 4, Keepalives: 11}, {PublicKey: pubC}},
		batches: tunnel.BatchCounts{AdapterRead: tunnel.BatchCount{Calls: 10, Items: 640},
			TransportReceive: tunnel.BatchCount{Calls: 5, Items: 80}},
	}, pubB
}

// serve starts a metrics server on a free loopback port for the test.
func serve(t testing.TB, src Source) *Server {
	t.Helper()
	s, err := Serve(netip.MustParseAddrPort("127.0.0.1:0"), "wg0", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

// scrape fetches /metrics from s.
func scrape(t testing.TB, s *Server) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestScrape(t *testing.T) {
	leakcheck.Check(t)
	src, pubB := testSource(t)
	pubC, _ := crypto.ParsePublicKeyHex(uapitest.KeyC)
	s := serve(t, src)
	code, body := scrape(t, s)
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d\n%s", code, body)
	}
	B, C := pubB.String(), pubC.String()
	own := src.state.PrivateKey.PublicKey().String()
	for _, want := range []string{
		`wireguard_device_info{device="wg0",public_key="` + own + `"} 1`,
		`warren_device_peers{device="wg0"} 2`,
		`warren_device_dropped_packets_total{device="wg0",reason="no_route"} 3`,
		`warren_device_dropped_packets_total{device="wg0",reason="replay"} 1`,
		`wireguard_peer_info{device="wg0",endpoint="198.18.0.2:51821",public_key="` + B + `"} 1`,
		`wireguard_peer_info{device="wg0",endpoint="",public_key="` + C + `"} 1`,
		`wireguard_peer_receive_bytes_total{device="wg0",public_key="` + B + `"} 1372`,
		`wireguard_peer_transmit_bytes_total{device="wg0",public_key="` + B + `"} 1.7808052e+07`,
		`wireguard_peer_last_handshake_seconds{device="wg0",public_key="` + B + `"} 1.7962164005e+09`,
		`wireguard_peer_last_handshake_seconds{device="wg0",public_key="` + C + `"} 0`,
		`warren_peer_persistent_keepalive_seconds{device="wg0",public_key="` + B + `"} 25`,
		`warren_peer_handshakes_total{device="wg0",public_key="` + B + `"} 4`,
		`warren_peer_handshakes_total{device="wg0",public_key="` + C + `"} 0`,
		`warren_peer_keepalives_sent_total{device="wg0",public_key="` + B + `"} 11`,
		`warren_device_batch_calls_total{device="wg0",step="adapter_read"} 10`,
		`warren_device_batch_items_total{device="wg0",step="adapter_read"} 640`,
		`warren_device_batch_items_total{device="wg0",step="transport_receive"} 80`,
		`warren_device_batch_calls_total{device="wg0",step="transport_send"} 0`,
		`warren_mesh_connected{device="wg0"} 1`,
		`warren_mesh_peers{device="wg0"} 2`,
		`warren_mesh_events_total{device="wg0"} 7`,
		`warren_mesh_errors_total{device="wg0"} 1`,
		`# TYPE warren_mesh_events_total counter`,
		`# TYPE warren_mesh_connected gauge`,
		`# TYPE wireguard_peer_receive_bytes_total counter`,
		`# TYPE wireguard_peer_last_handshake_seconds gauge`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	for _, bad := range []string{"warren_mesh_last_error", `warren_mesh_peers{device="wg0"} 3`, `warren_device_peers{device="wg0"} 9`} {
		if strings.Contains(body, bad) {
			t.Errorf("scrape has %q, want it left out", bad)
		}
	}
	if src.reads != 1 {
		t.Errorf("one scrape read the state %d times, want 1", src.reads)
	}
}

// TestScrapeError checks that a state that cannot be read fails the scrape
// with the cause, and that the next scrape works again.
func TestScrapeError(t *testing.T) {
	leakcheck.Check(t)
	src, _ := testSource(t)
	src.err = errors.New("engine closed")
	s := serve(t, src)
	if code, body := scrape(t, s); code != http.StatusInternalServerError || !strings.Contains(body, "engine closed") {
		t.Errorf("GET /metrics with a failing source = %d %q, want 500 naming the cause", code, body)
	}
	src.mu.Lock()
	src.err = nil
	src.mu.Unlock()
	if code, _ := scrape(t, s); code != http.StatusOK {
		t.Errorf("GET /metrics after the source recovered = %d, want 200", code)
	}
}

func TestServeAddressInUse(t *testing.T) {
	leakcheck.Check(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr).AddrPort()
	src, _ := testSource(t)
	if s, err := Serve(addr, "wg0", src, nil); err == nil {
		s.Close()
		t.Fatalf("Serve(%v) on a port in use succeeded", addr)
	}
}

// TestCloseEndsServing checks that Close stops the server for good.
func TestCloseEndsServing(t *testing.T) {
	leakcheck.Check(t)
	src, _ := testSource(t)
	s, err := Serve(netip.MustParseAddrPort("127.0.0.1:0"), "wg0", src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if c, err := net.Dial("tcp", s.Addr().String()); err == nil {
		c.Close()
		t.Errorf("the metrics port still accepts after Close")
	}
}

// requireTool returns the path of the program name, and skips the test
// where it is not installed (fails under CI=true, where it must be).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI=true: a missing tool is a failure)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// TestPromtoolCheckMetrics runs Prometheus's own linter on a real scrape.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := requireTool(t, "promtool")
	src, _ := testSource(t)
	_, body := scrape(t, serve(t, src))
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s\nscrape:\n%s", err, out, body)
	}
}

// TestPrometheusScrapes runs a real Prometheus server on loopback that
// scrapes warren every second, and asks its query API for a peer's byte
// counter until the value the engine reports arrives.
func TestPrometheusScrapes(t *testing.T) {
	prom := requireTool(t, "prometheus")
	src, pubB := testSource(t)
	s := serve(t, src)

	dir := t.TempDir()
	webPort := freePort(t)
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: warren
    static_configs:
      - targets: ['%s']
`, s.Addr())
	if err := os.WriteFile(dir+"/prometheus.yml", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prom, "--config.file="+dir+"/prometheus.yml", "--storage.tsdb.path="+dir+"/data",
		"--web.listen-address=127.0.0.1:"+fmt.Sprint(webPort), "--log.level=warn")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})

	query := fmt.Sprintf(`http://127.0.0.1:%d/api/v1/query?query=wireguard_peer_receive_bytes_total%%7Bpublic_key%%3D%%22%s%%22%%7D`,
		webPort, strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(pubB.String()))
	want := `"value":[`
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last string
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited: %v", err)
		case <-tick.C:
		}
		resp, err := http.Get(query)
		if err != nil {
			continue // not listening yet
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(b)
		if i := strings.Index(last, want); i >= 0 && strings.Contains(last[i:], `,"1372"]`) &&
			strings.Contains(last, `"device":"wg0"`) && strings.Contains(last, `"job":"warren"`) {
			return
		}
	}
	t.Errorf("prometheus never returned the peer's byte counter 1372; last answer: %s", last)
}

// freePort returns a TCP port on loopback that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
