package main

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/warrenvpn/warren/uapi"
)

func TestMACTable(t *testing.T) {
	const peer = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
	es := []uapi.Extra{
		{Key: "warren_mac", Value: "02:00:00:00:00:01 local 3 10"},
		{Key: "warren_mac", Value: "02:00:00:00:00:02 " + peer + " 0 7"},
		{Key: "warren_mac", Value: "bad line"},
		{Key: "warren_mac_moves", Value: "1"},
	}
	want := []macJSON{{MAC: "02:00:00:00:00:01", Peer: "local", Age: 3, Frames: 10}, {MAC: "02:00:00:00:00:02", Peer: peer, Frames: 7}}
	if diff := cmp.Diff(macsJSON(es), want); diff != "" {
		t.Errorf("macsJSON (-got +want):\n%s", diff)
	}
	var b bytes.Buffer
	printMACs(&b, es)
	wantText := "  mac table: 2 entries, 1 moves\n" +
		"    02:00:00:00:00:01  local                                             3s ago  10 frames\n" +
		"    02:00:00:00:00:02  " + peer + "      0s ago  7 frames\n"
	if diff := cmp.Diff(b.String(), wantText); diff != "" {
		t.Errorf("printMACs (-got +want):\n%s", diff)
	}
	if got := macsJSON([]uapi.Extra{{Key: "warren_mesh_nodes", Value: "2"}}); got != nil {
		t.Errorf("macsJSON in TUN mode = %v, want nil", got)
	}
	if got := macsJSON([]uapi.Extra{{Key: "warren_mac_moves", Value: "0"}}); got == nil || len(got) != 0 {
		t.Errorf("macsJSON of an empty table = %#v, want empty, not nil", got)
	}
}
