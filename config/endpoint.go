package config

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Resolver looks up the addresses of a host name. *net.Resolver satisfies
// it; tests pass a fake so that they need no DNS.
type Resolver interface {
	// LookupNetIP is called with network "ip".
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

var (
	errEndpointPort = errors.New("invalid endpoint: want host:port, [IPv6]:port with port 1-65535")
	errEndpointHost = errors.New("invalid endpoint host: want an IPv4 address, [IPv6 address] or host name")
	errNoAddress    = errors.New("host name has no address")
)

// ResolveEndpoint returns the address of p.Endpoint. An IP address is
// returned as is; a host name is looked up with r (net.DefaultResolver when
// r is nil), preferring the first IPv4 address and otherwise taking the
// first IPv6 address. It returns the zero AddrPort and no error when p has
// no endpoint.
func (p Peer) ResolveEndpoint(ctx context.Context, r Resolver) (netip.AddrPort, error) {
	eps, err := p.ResolveEndpoints(ctx, r)
	if err != nil || len(eps) == 0 {
		return netip.AddrPort{}, err
	}
	return eps[0], nil
}

// ResolveEndpoints returns every address of p.Endpoint in the order
// ResolveEndpoint prefers them: the IPv4 addresses in the order of the
// answer, then the IPv6 ones. An answer with no address is an error, so
// that a caller never takes an empty answer for a move. It returns nil and
// no error when p has no endpoint.
func (p Peer) ResolveEndpoints(ctx context.Context, r Resolver) ([]netip.AddrPort, error) {
	if p.Endpoint == "" {
		return nil, nil
	}
	host, port, err := splitEndpoint(p.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", p.Endpoint, err)
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(addr, port)}, nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve endpoint %q: %w", p.Endpoint, err)
	}
	var v4, v6 []netip.AddrPort
	for _, a := range addrs {
		switch a = a.Unmap(); {
		case a.Is4():
			v4 = append(v4, netip.AddrPortFrom(a, port))
		case a.Is6():
			v6 = append(v6, netip.AddrPortFrom(a, port))
		}
	}
	if len(v4)+len(v6) == 0 {
		return nil, fmt.Errorf("resolve endpoint %q: %w", p.Endpoint, errNoAddress)
	}
	return append(v4, v6...), nil
}

// IsHostName reports whether the endpoint s names its host (host:port)
// rather than giving an IP address: only such an endpoint can change its
// address while the tunnel runs.
func IsHostName(s string) bool {
	host, _, err := splitEndpoint(s)
	if err != nil {
		return false
	}
	_, err = netip.ParseAddr(host)
	return err != nil
}

// splitEndpoint splits and checks an endpoint as wg does: "[host]:port" or
// "host:port" split at the last colon. Unlike wg it takes only numeric
// ports 1-65535 (no service names), wants an IPv6 address in brackets, and
// checks a host name's syntax.
func splitEndpoint(s string) (host string, port uint16, err error) {
	var portText string
	if rest, ok := strings.CutPrefix(s, "["); ok {
		h, p, ok := strings.Cut(rest, "]:")
		if !ok {
			return "", 0, errEndpointPort
		}
		addr, err := netip.ParseAddr(h)
		if err != nil || !addr.Is6() {
			return "", 0, errEndpointHost
		}
		host, portText = h, p
	} else {
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return "", 0, errEndpointPort
		}
		host, portText = s[:i], s[i+1:]
		if addr, err := netip.ParseAddr(host); err == nil {
			if !addr.Is4() {
				return "", 0, errEndpointHost // IPv6 without brackets
			}
		} else if !isHostName(host) {
			return "", 0, errEndpointHost
		}
	}
	n, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || n == 0 || portText[0] < '0' || portText[0] > '9' {
		return "", 0, errEndpointPort
	}
	return host, uint16(n), nil
}

// isHostName reports whether s is a syntactically valid DNS name (letters,
// digits, '-' and '_' in dot-separated labels of 1-63 bytes, at most 253
// bytes, an optional final dot) whose last label is not a number, so that
// getaddrinfo cannot read it as an IPv4 address in inet_aton's shorthand
// ("10.1", "0x7f.1").
func isHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	var label string
	for label = range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return !isNumber(label)
}

// isNumber reports whether s is a decimal or 0x-hex number as inet_aton
// reads one.
func isNumber(s string) bool {
	base := 10
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s, base = s[2:], 16
	}
	_, err := strconv.ParseUint(s, base, 64)
	return err == nil || errors.Is(err, strconv.ErrRange)
}
