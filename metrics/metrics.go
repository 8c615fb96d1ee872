// Package metrics owns warren's Prometheus metrics: a Collector that reads
// one interface's engine at scrape time, and Serve, the HTTP server of
// /metrics that `warren up` starts when the config sets MetricsListen.
//
// Nothing here runs per packet: the engine already keeps its counters, and
// a scrape takes one snapshot of them (Source.State and
// Source.DropCounts, and where the source has them CounterSource's
// PeerCounters and BatchCounts). Names and labels follow the common
// WireGuard exporters (wireguard_peer_receive_bytes_total and so on,
// labelled with device and public_key), so that existing dashboards work;
// what only warren knows is named warren_*.
//
// The process may add warren_* values of its own to the state (the
// device's uapi.State.Extras, as in a "get=warren" reply: the mesh's, for
// example). Each one whose value is a number becomes a metric of that name
// labelled with device: a counter if the name ends in _total, otherwise a
// gauge.
package metrics

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
)

// Source is what the Collector reads, once per scrape. *tunnel.Engine
// satisfies it. Both methods are called from the HTTP server's goroutines,
// possibly concurrently with each other and with the engine's work; the
// results are snapshots the Collector does not keep.
type Source interface {
	// State returns the device's configuration and per-peer counters.
	State() (*uapi.State, error)
	// DropCounts returns the packets dropped so far, by reason.
	DropCounts() map[string]uint64
}

// CounterSource is what a Source may also have: *tunnel.Engine's warren-only
// counters. The Collector exports them where the Source has them. Both
// methods are called as Source's are, and return snapshots.
type CounterSource interface {
	// PeerCounters returns each peer's handshakes and keepalives sent.
	PeerCounters() []tunnel.PeerCounters
	// BatchCounts returns the data path's calls and the items they carried.
	BatchCounts() tunnel.BatchCounts
}

// Collector is a prometheus.Collector for one interface.
type Collector struct {
	device string
	src    Source

	deviceInfo, peers, drops, batchCalls, batchItems   *prometheus.Desc
	peerInfo, received, sent, lastHandshake, keepalive *prometheus.Desc
	handshakes, keepalives                             *prometheus.Desc
}

// NewCollector returns a Collector of the interface device, reading src.
func NewCollector(device string, src Source) *Collector {
	peer := []string{"device", "public_key"}
	return &Collector{
		device: device,
		src:    src,
		deviceInfo: prometheus.NewDesc("wireguard_device_info",
			"The interface and its public key (always 1).", []string{"device", "public_key"}, nil),
		peers: prometheus.NewDesc("warren_device_peers",
			"Number of peers configured on the interface.", []string{"device"}, nil),
		drops: prometheus.NewDesc("warren_device_dropped_packets_total",
			"Packets the engine dropped, by reason (see tunnel.DropReason), and as reason socket those the kernel dropped at the tunnel's sockets (the socket filter, a full receive buffer).", []string{"device", "reason"}, nil),
		peerInfo: prometheus.NewDesc("wireguard_peer_info",
			"A peer's current endpoint (always 1; empty while unknown). It is kept out of the other metrics' labels so that roaming starts no new series.",
			[]string{"device", "public_key", "endpoint"}, nil),
		received: prometheus.NewDesc("wireguard_peer_receive_bytes_total",
			"Bytes received from the peer, WireGuard overhead included, as wg show counts them.", peer, nil),
		sent: prometheus.NewDesc("wireguard_peer_transmit_bytes_total",
			"Bytes sent to the peer, WireGuard overhead included, as wg show counts them.", peer, nil),
		lastHandshake: prometheus.NewDesc("wireguard_peer_last_handshake_seconds",
			"Unix time of the latest completed handshake with the peer; 0 for never.", peer, nil),
		keepalive: prometheus.NewDesc("warren_peer_persistent_keepalive_seconds",
			"The peer's persistent keepalive interval; 0 when off.", peer, nil),
		handshakes: prometheus.NewDesc("warren_peer_handshakes_total",
			"Handshakes completed with the peer, as initiator or responder.", peer, nil),
		keepalives: prometheus.NewDesc("warren_peer_keepalives_sent_total",
			"Keepalives sent to the peer: passive, persistent and key confirmation.", peer, nil),
		batchCalls: prometheus.NewDesc("warren_device_batch_calls_total",
			"Calls of one step of the data path (adapter_read, adapter_write, transport_send, transport_receive).", []string{"device", "step"}, nil),
		batchItems: prometheus.NewDesc("warren_device_batch_items_total",
			"Packets or datagrams those calls carried; divided by the calls, the average batch.", []string{"device", "step"}, nil),
	}
}

// Describe sends the descriptors of every metric the Collector makes.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.deviceInfo, c.peers, c.drops, c.peerInfo, c.received, c.sent,
		c.lastHandshake, c.keepalive, c.handshakes, c.keepalives, c.batchCalls, c.batchItems} {
		ch <- d
	}
	// The extras' metrics depend on the state and are not described: the
	// registry treats them as unchecked.
}

// Collect reads the source once and sends the metrics. If the state cannot
// be read, the scrape reports that error instead of the interface's
// metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.src.State()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.deviceInfo, err)
		return
	}
	public := ""
	if !st.PrivateKey.IsZero() {
		public = st.PrivateKey.PublicKey().String()
	}
	ch <- prometheus.MustNewConstMetric(c.deviceInfo, prometheus.GaugeValue, 1, c.device, public)
	ch <- prometheus.MustNewConstMetric(c.peers, prometheus.GaugeValue, float64(len(st.Peers)), c.device)
	for reason, n := range c.src.DropCounts() {
		ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(n), c.device, reason)
	}
	for _, p := range st.Peers {
		pub := p.PublicKey.String()
		endpoint := ""
		if p.Endpoint.IsValid() {
			endpoint = p.Endpoint.String()
		}
		ch <- prometheus.MustNewConstMetric(c.peerInfo, prometheus.GaugeValue, 1, c.device, pub, endpoint)
		ch <- prometheus.MustNewConstMetric(c.received, prometheus.CounterValue, float64(p.RxBytes), c.device, pub)
		ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(p.TxBytes), c.device, pub)
		ch <- prometheus.MustNewConstMetric(c.lastHandshake, prometheus.GaugeValue, unixSeconds(p.LastHandshake), c.device, pub)
		ch <- prometheus.MustNewConstMetric(c.keepalive, prometheus.GaugeValue, float64(p.PersistentKeepalive), c.device, pub)
	}
	if cs, ok := c.src.(CounterSource); ok {
		c.collectCounters(ch, cs)
	}
	seen := make(map[string]bool, len(st.Extras))
	for _, e := range st.Extras {
		// A name twice, or one of the Collector's own, would fail the
		// scrape.
		if seen[e.Key] || strings.HasPrefix(e.Key, "warren_device_") || strings.HasPrefix(e.Key, "warren_peer_") {
			continue
		}
		seen[e.Key] = true
		c.collectExtra(ch, e)
	}
}

// collectCounters sends the warren-only counters of cs.
func (c *Collector) collectCounters(ch chan<- prometheus.Metric, cs CounterSource) {
	for _, p := range cs.PeerCounters() {
		pub := p.PublicKey.String()
		ch <- prometheus.MustNewConstMetric(c.handshakes, prometheus.CounterValue, float64(p.Handshakes), c.device, pub)
		ch <- prometheus.MustNewConstMetric(c.keepalives, prometheus.CounterValue, float64(p.Keepalives), c.device, pub)
	}
	b := cs.BatchCounts()
	for _, s := range []struct {
		step string
		n    tunnel.BatchCount
	}{
		{"adapter_read", b.AdapterRead}, {"adapter_write", b.AdapterWrite},
		{"transport_send", b.TransportSend}, {"transport_receive", b.TransportReceive},
	} {
		ch <- prometheus.MustNewConstMetric(c.batchCalls, prometheus.CounterValue, float64(s.n.Calls), c.device, s.step)
		ch <- prometheus.MustNewConstMetric(c.batchItems, prometheus.CounterValue, float64(s.n.Items), c.device, s.step)
	}
}

// collectExtra sends e as a metric if its value is a number (see the
// package doc).
func (c *Collector) collectExtra(ch chan<- prometheus.Metric, e uapi.Extra) {
	v, err := strconv.ParseFloat(e.Value, 64)
	if err != nil || !strings.HasPrefix(e.Key, "warren_") {
		return
	}
	typ := prometheus.GaugeValue
	if strings.HasSuffix(e.Key, "_total") {
		typ = prometheus.CounterValue
	}
	d := prometheus.NewDesc(e.Key, "Reported by the process as "+e.Key+" in get=warren replies (see the warren show output).", []string{"device"}, nil)
	m, err := prometheus.NewConstMetric(d, typ, v, c.device)
	if err != nil {
		return // a name Prometheus refuses: left out
	}
	ch <- m
}

// unixSeconds is t as Unix seconds with a fraction, 0 for the zero time.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
