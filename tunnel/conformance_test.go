package tunnel_test

import (
	"net/netip"
	"testing"

	"github.com/warrenvpn/warren/device/devicetest"
	"github.com/warrenvpn/warren/transport/transporttest"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

// TestUAPIConformance runs the engine behind a uapi.Server through every
// session of the conformance suite and compares the replies with
// wireguard-go's, byte for byte (C1, C2, C3, C6, C7).
func TestUAPIConformance(t *testing.T) {
	net := transporttest.NewNetwork(transporttest.Config{})
	uapitest.Conformance(t, func(t *testing.T) uapi.Device {
		tr, err := net.NewTransport(netip.MustParseAddrPort("198.18.0.1:0"))
		if err != nil {
			t.Fatal(err)
		}
		e := tunnel.New(devicetest.NewMemory(devicetest.MemoryOptions{}), tr, tunnel.Options{TickInterval: -1})
		t.Cleanup(func() { e.Close() })
		return e
	})
}
