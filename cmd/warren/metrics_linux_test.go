package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMetricsListen runs `warren up` with MetricsListen in a namespace,
// pings through the tunnel, scrapes /metrics there and checks the peer's
// counters, the handshake time and promtool's verdict on the scrape; after
// SIGTERM the port is closed.
func TestMetricsListen(t *testing.T) {
	promtool := requireBinary(t, "promtool")
	p := newTestPair(t)
	const addr = "127.0.0.1:9586"
	for i := range 2 {
		conf := demoConfig(p.keys[i], p.keys[1-i].PublicKey(), i, p.underlay(1-i))
		if i == 0 {
			conf = strings.Replace(conf, "\n[Peer]", "MetricsListen = "+addr+"\n\n[Peer]", 1)
		}
		p.up(t, i, conf)
	}
	p.ping(t, 0, demoOverlay[1].v4.Addr(), 3)

	body, err := p.scrape(0, addr)
	if err != nil {
		t.Fatalf("scrape: %v\n%s", err, p.logs())
	}
	peer := regexp.QuoteMeta(`{device="` + p.names[0] + `",public_key="` + p.keys[1].PublicKey().String() + `"}`)
	for _, name := range []string{"wireguard_peer_receive_bytes_total", "wireguard_peer_transmit_bytes_total", "wireguard_peer_last_handshake_seconds"} {
		m := regexp.MustCompile(`(?m)^` + name + peer + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Errorf("scrape has no %s for the peer:\n%s", name, body)
			continue
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil || v <= 0 {
			t.Errorf("%s = %s, want more than 0 after three pings", name, m[1])
		}
		if name == "wireguard_peer_last_handshake_seconds" && time.Since(time.Unix(int64(v), 0)) > time.Minute {
			t.Errorf("%s = %v, want a moment ago", name, v)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	stopProc(t, p.procs[0])
	if _, err := p.scrape(0, addr); err == nil {
		t.Errorf("the metrics port answers after warren up stopped")
	}
}

// scrape fetches /metrics from addr inside side i's namespace: the
// connection is made there, and HTTP is spoken over it from here.
func (p *testPair) scrape(i int, addr string) (string, error) {
	var c net.Conn
	err := p.ns(i).Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+addr+"/metrics", nil)
	if err := req.Write(c); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = &httpError{resp.Status}
	}
	return string(b), err
}

type httpError struct{ status string }

func (e *httpError) Error() string { return "HTTP " + e.status }
