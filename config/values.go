package config

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// spaces are the characters bash's [[:space:]] matches in the C locale,
// which wg-quick trims, less the newline that ends a line.
const spaces = " \t\r\v\f"

func trimSpace(s string) string { return strings.Trim(s, spaces) }

// splitFields splits a list as wg-quick's ${value//,/ } word splitting
// does: at commas and whitespace, dropping empty entries.
func splitFields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || strings.ContainsRune(spaces, r) })
}

// parseDecimal parses an unsigned decimal number of at most bits bits,
// allowing leading zeros and no sign, as wg's strtoul calls do.
func parseDecimal(s string, bits int) (uint64, error) {
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseUint(s, 10, bits)
}

// parseFwMark parses FwMark as wg does: "off", decimal, or hex after a
// lowercase "0x".
func parseFwMark(s string) (uint32, error) {
	if equalFold(s, "off") {
		return 0, nil
	}
	var n uint64
	var err error
	if hex, ok := strings.CutPrefix(s, "0x"); ok && hex != "" {
		n, err = strconv.ParseUint(hex, 16, 32)
	} else {
		n, err = parseDecimal(s, 32)
	}
	if err != nil {
		return 0, errFwMark
	}
	return uint32(n), nil
}

// parseTable parses the Table key. wg-quick hands anything but "auto" and
// "off" to `ip route add ... table VALUE`, which takes a number or a name
// from /etc/iproute2/rt_tables; warren reads no host files, so it takes
// the three names every system has. A number is decimal without a leading
// zero (ip would read 010 as octal) or 0x hex; 0 (unspec) is refused.
func parseTable(s string) (Table, error) {
	switch {
	case s == "", equalFold(s, "auto"):
		return TableAuto, nil
	case equalFold(s, "off"):
		return TableOff, nil
	case equalFold(s, "main"):
		return TableMain, nil
	case equalFold(s, "local"):
		return TableLocal, nil
	case equalFold(s, "default"):
		return TableDefault, nil
	}
	var n uint64
	var err error
	if hex, ok := strings.CutPrefix(s, "0x"); ok && hex != "" {
		n, err = strconv.ParseUint(hex, 16, 32)
	} else if s[0] == '0' {
		err = strconv.ErrSyntax
	} else {
		n, err = parseDecimal(s, 32)
	}
	if err != nil || n == 0 || n > math.MaxUint32 {
		return 0, errTable
	}
	return Table(n), nil
}

// isTableName reports whether s can be a table name of rt_tables: a letter
// or '_' followed by letters, digits, '_', '-' or '.' (what iproute2 reads
// back from the file).
func isTableName(s string) bool {
	if s == "" || !(isLetter(s[0]) || s[0] == '_') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(isLetter(c) || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// LookupTable finds the table ID of name in an rt_tables file (lines "ID
// NAME", '#' comments), as `ip route ... table NAME` does; ok is false if
// the file does not name it.
func LookupTable(rtTables io.Reader, name string) (id Table, ok bool, err error) {
	sc := bufio.NewScanner(rtTables)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 2 || f[1] != name {
			continue
		}
		t, err := parseTable(f[0])
		if err != nil || t <= 0 {
			continue
		}
		return t, true, nil
	}
	return 0, false, sc.Err()
}

// parsePrefix parses "addr/bits" or a bare address (a /32 or /128), as
// wg's AllowedIPs and ip's Address do. Zones are refused.
func parsePrefix(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		return pfx, err == nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// addAddresses handles one Address line.
func (p *parser) addAddresses(value string) error {
	ifc := &p.c.Interface
	for _, f := range splitFields(value) {
		pfx, ok := parsePrefix(f)
		if !ok || pfx.Addr().IsUnspecified() || pfx.Addr().IsMulticast() {
			return &Error{Value: f, Err: errAddress}
		}
		if first, ok := p.addrs[pfx.Addr()]; ok {
			return &Error{Value: f, Err: fmt.Errorf("%w address (first at line %d)", ErrDuplicate, first)}
		}
		p.addrs[pfx.Addr()] = p.line
		ifc.Addresses = append(ifc.Addresses, pfx)
	}
	return nil
}

// addDNS handles one DNS line. An entry made of digits and dots, or with a
// colon, is a server as wg-quick decides; anything else is a search domain.
func (p *parser) addDNS(value string) error {
	ifc := &p.c.Interface
	for _, f := range splitFields(value) {
		if strings.Trim(f, "0123456789.") == "" || strings.Contains(f, ":") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return &Error{Value: f, Err: errDNS}
			}
			ifc.DNS = append(ifc.DNS, a.String())
			continue
		}
		if !isHostName(f) {
			return &Error{Value: f, Err: errSearch}
		}
		ifc.DNSSearch = append(ifc.DNSSearch, f)
	}
	return nil
}

// appendHook adds a hook command; an empty one does nothing, as in
// wg-quick, and is dropped.
func appendHook(hooks []string, cmd string) []string {
	if cmd == "" {
		return hooks
	}
	return append(hooks, cmd)
}

// addAllowedIPs handles one AllowedIPs line. Like wg it splits at commas
// only and refuses empty entries; an empty value adds nothing. Prefixes are
// masked. A prefix twice in one peer is kept once (the kernel's outcome);
// a prefix in two peers is refused, where the kernel would silently move
// it to the later peer.
func (p *parser) addAllowedIPs(peer *Peer, value string) error {
	if value == "" {
		return nil
	}
	header := p.peers[len(p.peers)-1].header
	for part := range strings.SplitSeq(value, ",") {
		part = trimSpace(part)
		if part == "" {
			return &Error{Value: value, Err: errEmptyEntry}
		}
		pfx, ok := parsePrefix(part)
		if !ok {
			return &Error{Value: part, Err: errPrefix}
		}
		pfx = pfx.Masked()
		switch first, ok := p.allowed[pfx]; {
		case ok && first == header:
			continue
		case ok && p.c.Interface.Mode != ModeTAP:
			// In Mode = tap allowed IPs only filter senders inside frames
			// (no routes): sites sharing one subnet may each list it.
			return &Error{Value: part, Err: fmt.Errorf("%w: %v is also allowed for the peer at line %d", ErrDuplicate, pfx, first)}
		case !ok:
			p.allowed[pfx] = header
		}
		peer.AllowedIPs = append(peer.AllowedIPs, pfx)
	}
	return nil
}

// equalFold reports whether s and t are equal under ASCII case folding, as
// bash's nocasematch and strcasecmp compare in the C locale (unlike
// strings.EqualFold, which also folds K and the Kelvin sign).
func equalFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
