// Package tun opens the host's packet adapters: a TUN (IP packets, with
// virtio-net offloads so that one read returns a whole TCP segment split
// into packets and one write coalesces them back) and a TAP (Ethernet
// frames). Both satisfy the engine's tunnel.Adapter contract without
// importing it. It encrypts nothing and routes nothing.
package tun
