package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/warrenvpn/warren/uapi"
)

// macEntries parses the MAC table lines of a get=warren reply
// (warren_mac=MAC PEER AGE FRAMES); a malformed line is skipped. nil means
// the daemon sent no MAC table (TUN mode).
func macEntries(es []uapi.Extra) []macJSON {
	var out []macJSON
	table := false
	for _, e := range es {
		switch e.Key {
		case "warren_mac_moves":
			table = true
		case "warren_mac":
			f := strings.Fields(e.Value)
			if len(f) != 4 {
				continue
			}
			age, err1 := strconv.ParseInt(f[2], 10, 64)
			frames, err2 := strconv.ParseUint(f[3], 10, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			out = append(out, macJSON{MAC: f[0], Peer: f[1], Age: age, Frames: frames})
		}
	}
	if table && out == nil {
		out = []macJSON{}
	}
	return out
}

// macsJSON is the MAC table for --json.
func macsJSON(es []uapi.Extra) []macJSON { return macEntries(es) }

// printMACs prints the MAC table of Mode = tap, if the daemon sent one.
func printMACs(w io.Writer, es []uapi.Extra) {
	macs := macEntries(es)
	if macs == nil {
		return
	}
	fmt.Fprintf(w, "  mac table: %d entries, %s moves\n", len(macs), extra(es, "warren_mac_moves"))
	for _, m := range macs {
		fmt.Fprintf(w, "    %s  %-44s  %5ds ago  %d frames\n", m.MAC, m.Peer, m.Age, m.Frames)
	}
}
