package config

import (
	"strings"
	"testing"
)

// TestLookupTable reads an rt_tables file as iproute2 does.
func TestLookupTable(t *testing.T) {
	const rt = `#
# reserved values
#
255	local
254	main
253	default
0	unspec
#
# local
#
100 vpn   # a comment
0x65	hexed
bad line
`
	for _, tc := range []struct {
		name string
		id   Table
		ok   bool
	}{
		{"vpn", 100, true},
		{"hexed", 101, true},
		{"main", TableMain, true},
		{"unspec", 0, false}, // 0 is no table
		{"nope", 0, false},
		{"line", 0, false},
	} {
		id, ok, err := LookupTable(strings.NewReader(rt), tc.name)
		if id != tc.id || ok != tc.ok || err != nil {
			t.Errorf("LookupTable(%q) = %v, %v, %v; want %v, %v, nil", tc.name, id, ok, err, tc.id, tc.ok)
		}
	}
}
