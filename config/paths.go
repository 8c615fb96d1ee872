package config

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Keys of the paths that change under a running tunnel (warren's own):
// how long a lowered path MTU stands before warren checks whether the path
// widened, and when and how often a peer's Endpoint host name is looked up
// again.
const maxPathSeconds = 1_000_000 // about 11.5 days

var (
	errPathMTUProbe   = errors.New("invalid path MTU probe interval: want off or whole seconds from 1 to 1000000")
	errReresolveAfter = errors.New("invalid re-resolve age: want off or whole seconds from 1 to 1000000")
	errReresolveMax   = errors.New("invalid re-resolve backoff: want whole seconds from 1 to 1000000")
)

// setPaths stores PathMTUProbe, ReresolveAfter and ReresolveMax. Off is
// kept as a negative duration, unset as 0.
func (p *parser) setPaths(k key, value string) error {
	ifc := &p.c.Interface
	off := equalFold(value, "off")
	n, err := parseDecimal(value, 32)
	valid := err == nil && n >= 1 && n <= maxPathSeconds
	d := time.Duration(n) * time.Second
	switch k {
	case keyPathMTUProbe:
		switch {
		case off:
			ifc.PathMTUProbe = -1
		case valid:
			ifc.PathMTUProbe = d
		default:
			return errPathMTUProbe
		}
	case keyReresolveAfter:
		switch {
		case off:
			ifc.ReresolveAfter = -1
		case valid:
			ifc.ReresolveAfter = d
		default:
			return errReresolveAfter
		}
	case keyReresolveMax:
		if !valid {
			return errReresolveMax
		}
		ifc.ReresolveMax = d
	}
	return nil
}

// writePaths prints the keys setPaths stores, those that are set.
func writePaths(b *strings.Builder, ifc *Interface) {
	for _, kv := range []struct {
		name string
		d    time.Duration
	}{
		{"PathMTUProbe", ifc.PathMTUProbe},
		{"ReresolveAfter", ifc.ReresolveAfter},
		{"ReresolveMax", ifc.ReresolveMax},
	} {
		switch {
		case kv.d < 0:
			writeKey(b, kv.name, "off")
		case kv.d > 0:
			writeKey(b, kv.name, strconv.FormatInt(int64(kv.d/time.Second), 10))
		}
	}
}
