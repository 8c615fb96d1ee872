package tun_test

import (
	"github.com/warrenvpn/warren/device/tun"
	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/tunnel"
)

// The adapters satisfy the engine's contract. The check lives in a test:
// package tun does not import tunnel.
var (
	_ tunnel.Adapter = (*tun.TUN)(nil)
	_ tunnel.Adapter = (*tun.TAP)(nil)
	_ tunnel.Adapter = (*tuntest.Memory)(nil)
)
