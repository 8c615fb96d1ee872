package lifecycle_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/uapi"
)

// TestExtras checks that Options.Extras reaches the control socket's
// get=warren replies, device and peer lines, and not get=1.
func TestExtras(t *testing.T) {
	leakcheck.Check(t)
	k := newReconfigureKeys(t)
	cfg := parseConfig(t, "[Interface]\nPrivateKey = %s\nListenPort = 51820\nAddress = 198.19.0.1/24\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 198.19.1.0/24\n", k.iface, k.a)
	f := newFakes(-1)
	opts := f.options(t.TempDir())
	opts.Extras = func(st *uapi.State) {
		st.Extras = append(st.Extras, uapi.Extra{Key: "warren_mesh_connected", Value: "1"})
		for i := range st.Peers {
			st.Peers[i].Extras = append(st.Peers[i].Extras, uapi.Extra{Key: "warren_mesh_node", Value: "a"})
		}
	}
	tun, err := lifecycle.Up(t.Context(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()

	if st := controlState(t, f); st.Extras != nil || st.Peers[0].Extras != nil {
		t.Errorf("get=1 has extras %v / %v, want none", st.Extras, st.Peers[0].Extras)
	}
	c, err := f.ctl.Load().dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := uapi.GetWarren(c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st.Extras, []uapi.Extra{{Key: "warren_mesh_connected", Value: "1"}}); diff != "" {
		t.Errorf("get=warren device extras (-got +want):\n%s", diff)
	}
	if len(st.Peers) != 1 {
		t.Fatalf("get=warren reports %d peers, want 1", len(st.Peers))
	}
	if diff := cmp.Diff(st.Peers[0].Extras, []uapi.Extra{{Key: "warren_mesh_node", Value: "a"}}); diff != "" {
		t.Errorf("get=warren peer extras (-got +want):\n%s", diff)
	}
}
