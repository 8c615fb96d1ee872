package tunnel_test

import (
	"net/netip"
	"testing"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/device/tun/tuntest"
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
		e := tunnel.New(tuntest.NewMemory(tuntest.MemoryOptions{}), tr, tunnel.Options{TickInterval: -1})
		t.Cleanup(func() { e.Close() })
		return e
	})
}

// TestUAPIZeroKeys compares with wireguard-go the two zero-key corners the
// conformance suite leaves out: a peer with the all-zero public key before
// any private key is set (it is our own "public key" then, so ignored), and
// the zero private key set after a real one (our public key becomes the
// clamped zero scalar's, and a peer with it is removed and refused).
func TestUAPIZeroKeys(t *testing.T) {
	zeroPub := crypto.PrivateKey{}.PublicKey().Hex()
	net := transporttest.NewNetwork(transporttest.Config{})
	sessions := []uapitest.Session{
		{Name: "zero peer before any key", Requests: []string{
			"set=1\npublic_key=" + uapitest.KeyZ + "\nallowed_ip=198.18.1.0/24\n\n",
			"get=1\n\n",
		}},
		{Name: "zero private key after a real one", Requests: []string{
			"set=1\nprivate_key=" + uapitest.KeyA + "\npublic_key=" + zeroPub + "\nallowed_ip=198.18.2.0/24\n\n",
			"set=1\nprivate_key=" + uapitest.KeyZ + "\n\n",
			"get=1\n\n",
			"set=1\npublic_key=" + zeroPub + "\nallowed_ip=198.18.3.0/24\npublic_key=" + uapitest.KeyZ + "\n\n",
			"get=1\n\n",
		}},
	}
	uapitest.CompareWithWireGuardGo(t, sessions, func(t *testing.T) uapi.Device {
		tr, err := net.NewTransport(netip.MustParseAddrPort("198.18.0.1:0"))
		if err != nil {
			t.Fatal(err)
		}
		e := tunnel.New(tuntest.NewMemory(tuntest.MemoryOptions{}), tr, tunnel.Options{TickInterval: -1})
		t.Cleanup(func() { e.Close() })
		return portless{e}
	})
}

// portless hides the listen port: the reference wireguard-go device is down
// and has none, while the engine's transport is always bound.
type portless struct{ *tunnel.Engine }

func (p portless) State() (*uapi.State, error) {
	s, err := p.Engine.State()
	if s != nil {
		s.ListenPort = 0
	}
	return s, err
}
