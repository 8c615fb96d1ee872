package mesh

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// TestAnnotate checks the lines a node adds to "get=warren": the store's
// state, and the node name on mesh peers only.
func TestAnnotate(t *testing.T) {
	meshKey, staticKey, otherKey := newKey(t).PublicKey(), newKey(t).PublicKey(), newKey(t).PublicKey()
	m := &Mesh{
		cfg:    &Config{Network: "lab"},
		static: []config.Peer{{PublicKey: staticKey}},
		nodes: map[wgcrypto.PublicKey]*entry{
			meshKey:   {node: Node{Name: "site\nb", PublicKey: meshKey}},
			staticKey: {node: Node{Name: "site-s", PublicKey: staticKey}}, // the file wins: no mark
		},
		status: Status{Connected: true, Revision: 42, Peers: 1, Events: 9, Errors: 2, LastError: "watch: etcd\tdown"},
	}
	st := &uapi.State{Peers: []uapi.PeerState{{PublicKey: meshKey}, {PublicKey: staticKey}, {PublicKey: otherKey}}}
	m.Annotate(st)
	want := &uapi.State{
		Extras: []uapi.Extra{
			{Key: "warren_mesh_network", Value: "lab"},
			{Key: "warren_mesh_connected", Value: "1"},
			{Key: "warren_mesh_revision", Value: "42"},
			{Key: "warren_mesh_nodes", Value: "2"},
			{Key: "warren_mesh_peers", Value: "1"},
			{Key: "warren_mesh_events_total", Value: "9"},
			{Key: "warren_mesh_errors_total", Value: "2"},
			{Key: "warren_mesh_last_error", Value: "watch: etcd down"},
		},
		Peers: []uapi.PeerState{
			{PublicKey: meshKey, Extras: []uapi.Extra{{Key: "warren_mesh_node", Value: "site b"}}},
			{PublicKey: staticKey},
			{PublicKey: otherKey},
		},
	}
	if diff := cmp.Diff(st.Extras, want.Extras); diff != "" {
		t.Errorf("Annotate: device lines (-got +want):\n%s", diff)
	}
	for i := range st.Peers {
		if diff := cmp.Diff(st.Peers[i].Extras, want.Peers[i].Extras); diff != "" {
			t.Errorf("Annotate: peer %d lines (-got +want):\n%s", i, diff)
		}
	}

	// Disconnected and without an error yet.
	got := Status{}.Extras("lab")
	if len(got) != 7 || got[1] != (uapi.Extra{Key: "warren_mesh_connected", Value: "0"}) {
		t.Errorf("Status{}.Extras = %v, want 7 lines with warren_mesh_connected=0", got)
	}
}
