// Package metrics owns warren's Prometheus metrics: a Collector that reads
// one interface's engine at scrape time, and Serve, the HTTP server of
// /metrics that `warren up` starts when the config sets MetricsListen.
//
// Nothing here runs per packet: the engine already keeps its counters, and
// a scrape takes one snapshot of them (Source.State and
// Source.DropCounts). Names and labels follow the common WireGuard
// exporters (wireguard_peer_receive_bytes_total and so on, labelled with
// device and public_key), so that existing dashboards work; what only
// warren knows is named warren_*.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// Collector is a prometheus.Collector for one interface.
type Collector struct {
	device string
	src    Source

	deviceInfo, peers, drops                           *prometheus.Desc
	peerInfo, received, sent, lastHandshake, keepalive *prometheus.Desc
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
			"Packets the engine dropped, by reason (see tunnel.DropReason).", []string{"device", "reason"}, nil),
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
	}
}

// Describe sends the descriptors of every metric the Collector makes.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.deviceInfo, c.peers, c.drops, c.peerInfo, c.received, c.sent, c.lastHandshake, c.keepalive} {
		ch <- d
	}
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
}

// unixSeconds is t as Unix seconds with a fraction, 0 for the zero time.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
