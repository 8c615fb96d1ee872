// Package tunnel is warren's engine: peers, routing by allowed IPs, the
// batched pump between an Adapter and a Transport, handshakes on
// demand, the timers of the WireGuard whitepaper, roaming, statistics and
// the UAPI device (it implements uapi.Device).
//
// Wiring, as `warren up` does it:
//
//	dev, _ := tun.OpenTUN("wg0", 1420) // package device/tun
//	udp, _ := transport.Listen(transport.Options{Port: 51820, FwMark: mark})
//	e := tunnel.New(dev, udp, tunnel.Options{Logger: log, Rebind: listen}) // Rebind: for UAPI listen_port/fwmark
//	defer e.Close() // closes udp and dev, waits for the goroutines, returns a fatal error if any
//	if err := e.SetConfig(tunnel.Config{PrivateKey: key, ListenPort: udp.Port(), Peers: peers}); err != nil { ... }
//	if err := e.Up(); err != nil { ... }
//	srv := uapi.NewServer(e, log) // `wg show`, `wg set`, `warren show`
//	go srv.Serve(listener)
//	<-e.Done() // or a signal: removed, or failed for good (e.Err says which)
//
// Observability: Engine.Stats (per peer bytes, last handshake, endpoint),
// Engine.DropCounts (drops by DropReason), Engine.State (UAPI view).
//
// Design: run to completion. One goroutine reads a batch from the adapter,
// routes, seals in place and sends it per peer (send.go); one receives a
// batch from the transport, opens in place and writes it to the adapter
// (receive.go); one consumes handshake messages from a bounded queue
// (handshake.go); one drives the timers (timers.go). Every timer reads the
// injected Clock, and tests drive Tick themselves. docs/DESIGN.md has the
// steps of each path, the goroutines and the complete lock order;
// docs/RELIABILITY.md defines the case IDs (P9, L8, ...) comments cite.
package tunnel
