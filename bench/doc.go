// Package bench is warren's throughput lab: it builds two network namespaces
// joined by a veth pair, runs the same traffic through each chosen scenario
// (the bare veth link, warren, warren in Mode = tap, wireguard-go) and
// reports throughput, packet rate, loss, latency and CPU cost as a table,
// JSON and an SVG chart.
//
// A run goes in these steps:
//  1. Build the lab (internal/netlab): namespaces A and B, a veth pair between them.
//  2. For each scenario, start its tunnel endpoints (real processes, one per
//     namespace) and wait until a probe crosses the tunnel.
//  3. For each run and each test, open the generator's sockets inside the
//     namespaces (a socket created on a thread that is in a namespace stays
//     there), move traffic for the test's duration and record the figures.
//  4. Stop the endpoints, then remove the lab; cancellation of the context
//     (Ctrl-C) or any failure takes the same path.
//
// The traffic generators are plain Go over package net, so they also run
// over loopback without root; only the lab needs Linux and root.
package bench
