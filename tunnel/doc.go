// Package tunnel is warren's engine: peers, routing by allowed IPs, the
// batched pump between an Adapter and a Transport, handshakes on demand,
// the timers of the WireGuard whitepaper, roaming, statistics and the UAPI
// device (it implements uapi.Device). It declares Adapter and Transport
// itself and links no host-side code (no netlink, netns, TUN or
// wireguard-go; deps_test.go checks).
//
// Wiring, as the lifecycle does it for `warren up`:
//
//	dev, _ := tun.OpenTUN("wg0", 1420)
//	udp, _ := transport.Listen(transport.Options{Port: 51820, FwMark: mark})
//	e := tunnel.New(dev, udp, tunnel.Options{Logger: log, Rebind: listen}) // Rebind: for UAPI listen_port/fwmark
//	defer e.Close() // closes udp and dev, waits for the goroutines, returns a fatal error if any
//	if err := e.SetConfig(tunnel.Config{PrivateKey: key, ListenPort: udp.Port(), Peers: peers}); err != nil { ... }
//	if err := e.Up(); err != nil { ... }
//	srv := uapi.NewServer(e, log) // `wg show`, `wg set`, `warren show`
//	go srv.Serve(listener)
//	<-e.Done() // or a signal
//	if err := e.Err(); errors.Is(err, tunnel.ErrAdapterRemoved) { ... } // a normal stop: exit 0
//
// How the engine stops on its own (Done closes, Err says why):
//   - The adapter's interface was deleted from outside (`wg-quick down` of
//     a userspace implementation): Err matches ErrAdapterRemoved, and Close
//     returns nil.
//   - The adapter or the transport failed maxReadFailures reads in a row, or
//     a fwmark rebind failed and the old socket could not be restored (the
//     error names the UDP port): Err is that error and Close returns it.
//
// Send errors are not fatal: a route may come back. They are counted.
//
// Observability: Engine.Stats (per peer bytes, last handshake, endpoint),
// Engine.DropCounts (drops by DropReason, each lost packet counted once:
// a transport or adapter that takes part of a batch reports how many, and
// only the rest count), Engine.PeerCounters (handshakes completed and
// keepalives sent per peer), Engine.BatchCounts (calls and items of each
// data-path step, for average batch sizes), Engine.State (UAPI view).
//
// Design: run to completion. One goroutine reads a batch from the adapter,
// routes, seals in place and sends it per peer (send.go); one receives a
// batch from the transport, opens in place and writes it to the adapter
// (receive.go); one consumes handshake messages from two bounded queues
// (those with a valid mac2 first, so that a flood cannot crowd them out)
// and the initiations the other two request (handshake.go); one drives the
// timers (timers.go). A handshake's X25519 runs under the peer's handshake
// lock, never under the peer lock the data path takes, so one peer's
// handshake does not hold up anyone's packets (see Engine for the lock
// order). Every timer reads the injected Clock, and tests drive Tick
// themselves.
package tunnel
