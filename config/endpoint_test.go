package config

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// fakeResolver answers from a map and records the names it was asked for.
type fakeResolver struct {
	addrs map[string][]netip.Addr
	err   error
	asked []string
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.asked = append(r.asked, network+" "+host)
	if r.err != nil {
		return nil, r.err
	}
	return r.addrs[host], nil
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestResolveEndpoint(t *testing.T) {
	r := &fakeResolver{addrs: map[string][]netip.Addr{
		"both.example":   addrs("fd00:7761::9", "198.18.0.9", "198.18.0.10"),
		"v6.example":     addrs("fd00:7761::6"),
		"mapped.example": addrs("::ffff:198.18.0.4"),
		"none.example":   nil,
		"v4.example.":    addrs("198.18.0.44"),
	}}
	tests := []struct {
		endpoint string
		want     string // "" = the zero AddrPort
		asked    string // the lookup the resolver must see; "" = none
		wantErr  string // substring of the error; "" = no error
	}{
		{endpoint: ""},
		{endpoint: "198.18.0.1:51820", want: "198.18.0.1:51820"},
		{endpoint: "[fd00:7761::1]:1", want: "[fd00:7761::1]:1"},
		{endpoint: "[fe80::1%eth0]:51820", want: "[fe80::1%eth0]:51820"},
		{endpoint: "both.example:51820", want: "198.18.0.9:51820", asked: "ip both.example"},
		{endpoint: "v6.example:443", want: "[fd00:7761::6]:443", asked: "ip v6.example"},
		{endpoint: "mapped.example:443", want: "198.18.0.4:443", asked: "ip mapped.example"},
		{endpoint: "v4.example.:65535", want: "198.18.0.44:65535", asked: "ip v4.example."},
		{endpoint: "none.example:1", asked: "ip none.example", wantErr: `resolve endpoint "none.example:1": host name has no address`},
		{endpoint: "bad:port", wantErr: `endpoint "bad:port": invalid endpoint`},
	}
	for _, tc := range tests {
		r.asked = nil
		got, err := Peer{Endpoint: tc.endpoint}.ResolveEndpoint(context.Background(), r)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ResolveEndpoint(%q) = %v, %v, want error containing %q", tc.endpoint, got, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("ResolveEndpoint(%q) error = %v", tc.endpoint, err)
		case tc.want == "" && got.IsValid(), tc.want != "" && got != netip.MustParseAddrPort(tc.want):
			t.Errorf("ResolveEndpoint(%q) = %v, want %q", tc.endpoint, got, tc.want)
		}
		if gotAsked := strings.Join(r.asked, ","); gotAsked != tc.asked {
			t.Errorf("ResolveEndpoint(%q) asked the resolver %q, want %q", tc.endpoint, gotAsked, tc.asked)
		}
	}
}

func TestResolveEndpointError(t *testing.T) {
	cause := errors.New("no DNS today")
	_, err := Peer{Endpoint: "vpn.example:51820"}.ResolveEndpoint(context.Background(), &fakeResolver{err: cause})
	if !errors.Is(err, cause) {
		t.Errorf("ResolveEndpoint() error = %v, want it to wrap %v", err, cause)
	}
}

// TestResolveEndpoints: every address of a name, IPv4 first in the answer's
// order, then IPv6; an empty answer is an error, not an empty list.
func TestResolveEndpoints(t *testing.T) {
	r := &fakeResolver{addrs: map[string][]netip.Addr{
		"rr.example":   addrs("fd00:7761::9", "198.18.0.10", "::ffff:198.18.0.9", "fd00:7761::8"),
		"none.example": nil,
	}}
	got, err := Peer{Endpoint: "rr.example:51820"}.ResolveEndpoints(context.Background(), r)
	want := []netip.AddrPort{
		netip.MustParseAddrPort("198.18.0.10:51820"), netip.MustParseAddrPort("198.18.0.9:51820"),
		netip.MustParseAddrPort("[fd00:7761::9]:51820"), netip.MustParseAddrPort("[fd00:7761::8]:51820"),
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ResolveEndpoints(rr.example:51820) = %v, %v, want %v", got, err, want)
	}
	if got, err := (Peer{Endpoint: "none.example:1"}).ResolveEndpoints(context.Background(), r); err == nil {
		t.Errorf("ResolveEndpoints(none.example:1) = %v, want an error", got)
	}
	if got, err := (Peer{}).ResolveEndpoints(context.Background(), r); got != nil || err != nil {
		t.Errorf("ResolveEndpoints() without an endpoint = %v, %v, want nil, nil", got, err)
	}
}

func TestIsHostName(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		want     bool
	}{
		{"vpn.example:51820", true},
		{"vpn.example.:1", true},
		{"198.18.0.1:51820", false},
		{"[fd00:7761::1]:51820", false},
		{"[fe80::1%eth0]:51820", false},
		{"", false},
		{"bad:port", false},
	} {
		if got := IsHostName(tc.endpoint); got != tc.want {
			t.Errorf("IsHostName(%q) = %v, want %v", tc.endpoint, got, tc.want)
		}
	}
}

func TestSplitEndpoint(t *testing.T) {
	good := []struct {
		in   string
		host string
		port uint16
	}{
		{"198.18.0.1:51820", "198.18.0.1", 51820},
		{"[fd00:7761::1]:51820", "fd00:7761::1", 51820},
		{"[::ffff:198.18.0.1]:1", "::ffff:198.18.0.1", 1},
		{"vpn.example.com:051820", "vpn.example.com", 51820},
		{"localhost:1", "localhost", 1},
		{"a_b-c.example:65535", "a_b-c.example", 65535},
		{"1host.example:1", "1host.example", 1},
	}
	for _, tc := range good {
		host, port, err := splitEndpoint(tc.in)
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("splitEndpoint(%q) = %q, %d, %v, want %q, %d, nil", tc.in, host, port, err, tc.host, tc.port)
		}
	}
	for _, in := range []string{
		"", ":", ":1", "198.18.0.1", "198.18.0.1:", "198.18.0.1:65536", "198.18.0.1:+1", "198.18.0.1:-1",
		"[fd00::1]", "[fd00::1]:", "[fd00::1:1", "fd00::1:1", "[198.18.0.1]:1", "[vpn.example]:1",
		"10.1:1", "1234:1", "0x7f.1:1", "-vpn.example:1", "vpn-.example:1", "vpn..example:1",
		"vpn example:1", "vpn/example:1", "." + strings.Repeat("a", 64) + ":1", strings.Repeat("a.", 127) + "ab:1",
	} {
		if host, port, err := splitEndpoint(in); err == nil {
			t.Errorf("splitEndpoint(%q) = %q, %d, nil, want an error", in, host, port)
		}
	}
}
