package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMeshShow runs two mesh nodes and checks what warren show, --json and
// the metrics say about the mesh: the store's state, and which peers are
// mesh nodes.
func TestMeshShow(t *testing.T) {
	l := newMeshLab(t, false)
	a, b := l.addNode(0, ""), l.addNode(1, "")
	// a serves metrics on loopback in its namespace.
	conf := strings.Replace(mustRead(t, a.path), "ListenPort = 51820\n", "ListenPort = 51820\nMetricsListen = 127.0.0.1:9586\n", 1)
	if err := os.WriteFile(a.path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	l.start(a)
	l.start(b)
	nodes := []*meshNode{a, b}
	l.waitPeers(nodes, nodes)

	var doc showJSON
	waitFor(t, "warren show --json to report the mesh connected with both nodes", func() bool {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"show", "--json", a.name}, nil, &out, io.Discard); err != nil {
			t.Logf("warren show --json: %v", err)
			return false
		}
		doc = showJSON{}
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Interfaces) != 1 {
			t.Fatalf("warren show --json: %v\n%s", err, out.String())
		}
		x := doc.Interfaces[0].Extras
		return x["warren_mesh_connected"] == "1" && x["warren_mesh_nodes"] == "2" && x["warren_mesh_peers"] == "1"
	})
	ij := doc.Interfaces[0]
	if got := ij.Extras["warren_mesh_network"]; got != "lab" {
		t.Errorf("extras warren_mesh_network = %q, want lab", got)
	}
	if got := ij.Extras["warren_mesh_revision"]; got == "" || got == "0" {
		t.Errorf("extras warren_mesh_revision = %q, want the store's revision", got)
	}
	if len(ij.Peers) != 1 || ij.Peers[0].MeshNode != "node1" || ij.Peers[0].PublicKey != b.key.PublicKey().String() {
		t.Errorf("peers %+v, want node1's key marked as mesh node node1", ij.Peers)
	}

	var out bytes.Buffer
	if err := run(context.Background(), []string{"show", a.name}, nil, &out, io.Discard); err != nil {
		t.Fatalf("warren show: %v", err)
	}
	for _, want := range []string{"  mesh: network lab, connected to the store, revision ", "    nodes: 2, peers: 1, events: ", "  mesh node: node1\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("warren show lacks %q:\n%s", want, out.String())
		}
	}

	// The metrics, scraped inside a's namespace.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = a.ns.Do(func() error { c, err = net.DialTimeout(network, addr, 2*time.Second); return err })
			return c, err
		},
	}}
	resp, err := client.Get("http://127.0.0.1:9586/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`warren_mesh_connected{device="` + a.name + `"} 1`,
		`warren_mesh_nodes{device="` + a.name + `"} 2`,
		`warren_mesh_peers{device="` + a.name + `"} 1`,
		`# TYPE warren_mesh_events_total counter`,
		`warren_peer_handshakes_total{device="` + a.name + `",public_key="` + b.key.PublicKey().String() + `"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}
