package config

import (
	"strings"
	"testing"
	"time"
)

// TestParsePaths checks PathMTUProbe, ReresolveAfter and ReresolveMax:
// whole seconds (off for the first two), unset by default and then not
// printed, printed back as parsed, and an error naming file, line and key
// for anything else.
func TestParsePaths(t *testing.T) {
	c, err := Parse("wg0.conf", strings.NewReader(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if ifc := c.Interface; ifc.PathMTUProbe != 0 || ifc.ReresolveAfter != 0 || ifc.ReresolveMax != 0 {
		t.Errorf("unset keys parsed as %v, %v, %v; want 0", ifc.PathMTUProbe, ifc.ReresolveAfter, ifc.ReresolveMax)
	}
	for _, k := range []string{"PathMTUProbe", "ReresolveAfter", "ReresolveMax"} {
		if strings.Contains(c.String(), k) {
			t.Errorf("printed an unset %s:\n%s", k, c)
		}
	}
	field := map[string]func(*Interface) time.Duration{
		"PathMTUProbe":   func(i *Interface) time.Duration { return i.PathMTUProbe },
		"ReresolveAfter": func(i *Interface) time.Duration { return i.ReresolveAfter },
		"ReresolveMax":   func(i *Interface) time.Duration { return i.ReresolveMax },
	}
	for _, tc := range []struct {
		key, value string
		want       time.Duration
		err        string // "" when valid
	}{
		{"PathMTUProbe", "600", 10 * time.Minute, ""},
		{"pathmtuprobe", "1", time.Second, ""},
		{"PathMTUProbe", "off", -1, ""},
		{"PathMTUProbe", "OFF", -1, ""},
		{"PathMTUProbe", "1000000", 1_000_000 * time.Second, ""},
		{"PathMTUProbe", "0", 0, "invalid path MTU probe interval: want off or whole seconds from 1 to 1000000"},
		{"PathMTUProbe", "1000001", 0, "invalid path MTU probe interval: want off or whole seconds from 1 to 1000000"},
		{"PathMTUProbe", "10m", 0, "invalid path MTU probe interval: want off or whole seconds from 1 to 1000000"},
		{"ReresolveAfter", "135", 135 * time.Second, ""},
		{"ReresolveAfter", "off", -1, ""},
		{"ReresolveAfter", "-5", 0, "invalid re-resolve age: want off or whole seconds from 1 to 1000000"},
		{"ReresolveAfter", "1.5", 0, "invalid re-resolve age: want off or whole seconds from 1 to 1000000"},
		{"ReresolveMax", "60", time.Minute, ""},
		{"ReresolveMax", "off", 0, "invalid re-resolve backoff: want whole seconds from 1 to 1000000"},
		{"ReresolveMax", "0", 0, "invalid re-resolve backoff: want whole seconds from 1 to 1000000"},
	} {
		c, err := Parse("wg0.conf", strings.NewReader(minimal+tc.key+" = "+tc.value+"\n"))
		if tc.err != "" {
			want := `wg0.conf:3: ` + canonical(tc.key) + `: "` + tc.value + `": ` + tc.err
			if err == nil || err.Error() != want {
				t.Errorf("%s = %s: error %v, want %s", tc.key, tc.value, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s = %s: %v", tc.key, tc.value, err)
			continue
		}
		get := field[canonical(tc.key)]
		if got := get(&c.Interface); got != tc.want {
			t.Errorf("%s = %s parsed as %v, want %v", tc.key, tc.value, got, tc.want)
		}
		back, err := Parse("wg0.conf", strings.NewReader(c.String()))
		if err != nil || get(&back.Interface) != tc.want {
			t.Errorf("%s = %s printed and parsed back: %v, %v\n%s", tc.key, tc.value, get(&back.Interface), err, c)
		}
	}
}

// canonical is the key's name as the config package spells it.
func canonical(name string) string {
	k, ok := lookupKey(name)
	if !ok {
		return name
	}
	return keys[k].name
}
