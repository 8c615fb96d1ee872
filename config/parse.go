package config

// Parsing goes in three steps:
//  1. Parse reads the input line by line (bufio.Scanner); each line loses
//     its comment (from the first '#') and surrounding whitespace.
//  2. A section header switches the section; any other line is Key = Value,
//     dispatched by key to a setter that checks the value and stores it.
//  3. After the last line, checks that need the whole file run: a missing
//     PrivateKey or PublicKey, a peer holding our own public key, and an MTU
//     too small for an IPv6 address.
// The first mistake found stops the parse and is returned as an *Error.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/mactable"
)

// maxLineLen is the longest line Parse reads; a longer one is an error.
// `wg showconf` writes all of a peer's allowed IPs on one line, which for
// 130,560 IPv6 prefixes (C2) is about 6 MB.
const maxLineLen = 16 << 20 // bytes

var (
	errPort         = errors.New("invalid port: want 0-65535")
	errFwMark       = errors.New("invalid fwmark: want off, a decimal number or 0x hex, up to 32 bits")
	errMTU          = fmt.Errorf("invalid MTU: want %d-%d", MinMTU, MaxMTU)
	errTable        = errors.New("invalid table: want auto, off, main, local, default, a table ID 1-4294967295 or a name from rt_tables")
	errBool         = errors.New("want true or false")
	errMode         = errors.New("invalid mode: want tun or tap")
	errThreads      = fmt.Errorf("invalid threads: want a number from 1 to %d", MaxThreads)
	errMetrics      = errors.New("invalid metrics address: want IP:port, such as 127.0.0.1:9586 or [::1]:9586")
	errKeepalive    = errors.New("invalid persistent keepalive: want off or seconds 0-65535")
	errAddress      = errors.New("invalid address")
	errPrefix       = errors.New("invalid prefix")
	errDNS          = errors.New("invalid DNS server address")
	errSearch       = errors.New("invalid DNS search domain")
	errEmptyEntry   = errors.New("empty entry in the list")
	errOwnKey       = errors.New("is the interface's own public key")
	errLineTooLong  = fmt.Errorf("line longer than %d bytes", maxLineLen)
	errMTUForIPv6   = fmt.Errorf("below %d with an IPv6 address", MinIPv6MTU)
	errNoInterface  = fmt.Errorf("%w (no [Interface] section)", ErrMissing)
	errMissingIface = fmt.Errorf("%w in [Interface] section", ErrMissing)
	errMissingPeer  = fmt.Errorf("%w in [Peer] section", ErrMissing)
)

type section uint8

const (
	sectionNone section = iota
	sectionInterface
	sectionPeer
)

func (s section) String() string {
	if s == sectionPeer {
		return "[Peer]"
	}
	return "[Interface]"
}

type key uint8

const (
	keyPrivateKey key = iota
	keyListenPort
	keyFwMark
	keyAddress
	keyMTU
	keyTable
	keyDNS
	keyPreUp
	keyPostUp
	keyPreDown
	keyPostDown
	keySaveConfig
	keyMode
	keyMetricsListen
	keyDNSRequired
	keyFirewallRequired
	keyBridge
	keyForward
	keyMACAgeing
	keyOffload
	keyThreads
	keyPathMTUProbe
	keyReresolveAfter
	keyReresolveMax
	keyPublicKey
	keyPresharedKey
	keyAllowedIPs
	keyEndpoint
	keyPersistentKeepalive
	keyAllowedMACs
	numKeys
)

// keys lists every key: its canonical name, its section, whether it may
// appear on several lines (the values add up), and whether its value may be
// empty (as wg-quick allows for its own keys, and wg for AllowedIPs).
var keys = [numKeys]struct {
	name    string
	section section
	repeat  bool
	empty   bool
}{
	keyPrivateKey:          {"PrivateKey", sectionInterface, false, false},
	keyListenPort:          {"ListenPort", sectionInterface, false, false},
	keyFwMark:              {"FwMark", sectionInterface, false, false},
	keyAddress:             {"Address", sectionInterface, true, true},
	keyMTU:                 {"MTU", sectionInterface, false, true},
	keyTable:               {"Table", sectionInterface, false, true},
	keyDNS:                 {"DNS", sectionInterface, true, true},
	keyPreUp:               {"PreUp", sectionInterface, true, true},
	keyPostUp:              {"PostUp", sectionInterface, true, true},
	keyPreDown:             {"PreDown", sectionInterface, true, true},
	keyPostDown:            {"PostDown", sectionInterface, true, true},
	keySaveConfig:          {"SaveConfig", sectionInterface, false, false},
	keyMode:                {"Mode", sectionInterface, false, false},
	keyMetricsListen:       {"MetricsListen", sectionInterface, false, false},
	keyDNSRequired:         {"DNSRequired", sectionInterface, false, false},
	keyFirewallRequired:    {"FirewallRequired", sectionInterface, false, false},
	keyPublicKey:           {"PublicKey", sectionPeer, false, false},
	keyPresharedKey:        {"PresharedKey", sectionPeer, false, false},
	keyAllowedIPs:          {"AllowedIPs", sectionPeer, true, true},
	keyEndpoint:            {"Endpoint", sectionPeer, false, false},
	keyPersistentKeepalive: {"PersistentKeepalive", sectionPeer, false, false},
	keyBridge:              {"Bridge", sectionInterface, false, false},
	keyForward:             {"Forward", sectionInterface, false, false},
	keyMACAgeing:           {"MACAgeing", sectionInterface, false, false},
	keyOffload:             {"Offload", sectionInterface, false, false},
	keyThreads:             {"Threads", sectionInterface, false, false},
	keyPathMTUProbe:        {"PathMTUProbe", sectionInterface, false, false},
	keyReresolveAfter:      {"ReresolveAfter", sectionInterface, false, false},
	keyReresolveMax:        {"ReresolveMax", sectionInterface, false, false},
	keyAllowedMACs:         {"AllowedMACs", sectionPeer, true, true},
}

// lookupKey finds a key by name, ignoring case as wg and wg-quick do.
func lookupKey(name string) (key, bool) {
	for k := range numKeys {
		if equalFold(keys[k].name, name) {
			return k, true
		}
	}
	return 0, false
}

// Load reads the config file at path and names the interface after it
// (/etc/wireguard/wg0.conf → wg0). Mistakes in the file and a file name
// that is not a valid interface name are returned as an *Error; errors
// reading the file are returned as they come.
func Load(path string) (*Config, error) {
	if _, err := nameFromPath(path); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(path, f)
}

// Parse reads a config file from r. name is the file name used in error
// messages; when its base name is NAME.conf with a valid interface name,
// the Config is named NAME, otherwise Config.Name is "". Parse stops at the
// first mistake and returns it as an *Error; a read error is returned
// wrapped.
func Parse(name string, r io.Reader) (*Config, error) {
	p := parser{
		file:    name,
		c:       &Config{Interface: Interface{MTU: DefaultMTU}},
		peerKey: make(map[crypto.PublicKey]int),
		allowed: make(map[netip.Prefix]int),
		addrs:   make(map[netip.Addr]int),
	}
	if base, ok := strings.CutSuffix(filepath.Base(name), ".conf"); ok && ValidName(base) {
		p.c.Name = base
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, maxLineLen)
	for sc.Scan() {
		p.line++
		if err := p.parseLine(sc.Text()); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &Error{File: name, Line: p.line + 1, Err: errLineTooLong}
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	return p.c, nil
}

// parser holds the state of one Parse call.
type parser struct {
	file    string
	c       *Config
	line    int          // current line, 1-based
	section section      // the section the current line is in
	seen    [numKeys]int // line of each key in the current section; 0 = not yet

	interfaceLine  int // line of the [Interface] header; 0 = none yet
	privateKeyLine int // p.seen forgets it when a [Peer] starts
	mtuLine        int
	threadsLine    int                      // where Threads was set; 0: not set
	mtuSet         bool                     // the file sets an MTU (MTU = with a value)
	layer2Keys     []keyLine                // the layer 2 keys in the file, checked against Mode at the end
	peers          []peerLines              // one per c.Peers entry
	peerKey        map[crypto.PublicKey]int // public key → its line
	allowed        map[netip.Prefix]int     // allowed IP → line of its peer's header
	allowedMACs    map[mactable.MAC]int     // allowed MAC → line of its peer's header
	addrs          map[netip.Addr]int       // interface address → its line
}

// peerLines records where a peer's section and public key are.
type peerLines struct{ header, publicKey int }

func (p *parser) errorf(key, value string, err error) *Error {
	return &Error{File: p.file, Line: p.line, Key: key, Value: value, Err: err}
}

// parseLine handles one line of input; step 1 and 2 of the flow.
func (p *parser) parseLine(raw string) error {
	text, _, _ := strings.Cut(raw, "#")
	text = trimSpace(text)
	if text == "" {
		return nil
	}
	if text[0] == '[' {
		return p.startSection(text)
	}
	name, value, ok := strings.Cut(text, "=")
	name, value = trimSpace(name), trimSpace(value)
	if !ok || name == "" {
		return p.errorf("", text, ErrSyntax)
	}
	k, known := lookupKey(name)
	if known {
		name = keys[k].name
	}
	switch {
	case p.section == sectionNone:
		return p.errorf(name, "", ErrOutsideSection)
	case !known || keys[k].section != p.section:
		return p.errorf(name, "", fmt.Errorf("%w in %v section", ErrUnknownKey, p.section))
	case !keys[k].repeat && p.seen[k] != 0:
		return p.errorf(name, "", fmt.Errorf("%w key (first at line %d)", ErrDuplicate, p.seen[k]))
	}
	p.seen[k] = p.line
	err := error(ErrEmpty)
	if value != "" || keys[k].empty {
		err = p.set(k, value)
	}
	if err == nil {
		return nil
	}
	e, ok := err.(*Error)
	if !ok {
		e = &Error{Value: value, Err: err}
	}
	e.File, e.Line, e.Key = p.file, p.line, name
	if k == keyPrivateKey || k == keyPresharedKey {
		e.Value = "" // never echo a secret
	}
	return e
}

// startSection handles a section header.
func (p *parser) startSection(text string) error {
	var s section
	switch {
	case equalFold(text, "[Interface]"):
		s = sectionInterface
	case equalFold(text, "[Peer]"):
		s = sectionPeer
	default:
		return p.errorf(text, "", ErrUnknownSection)
	}
	if err := p.finishSection(); err != nil {
		return err
	}
	p.section, p.seen = s, [numKeys]int{}
	if s == sectionPeer {
		p.c.Peers = append(p.c.Peers, Peer{})
		p.peers = append(p.peers, peerLines{header: p.line})
		return nil
	}
	if p.interfaceLine != 0 {
		return p.errorf("[Interface]", "", fmt.Errorf("%w section (first at line %d)", ErrDuplicate, p.interfaceLine))
	}
	p.interfaceLine = p.line
	return nil
}

// finishSection checks the section that ends here.
func (p *parser) finishSection() error {
	if p.section == sectionPeer && p.seen[keyPublicKey] == 0 {
		return &Error{File: p.file, Line: p.peers[len(p.peers)-1].header, Key: "PublicKey", Err: errMissingPeer}
	}
	return nil
}

// finish runs the checks that need the whole file; step 3 of the flow.
func (p *parser) finish() error {
	if err := p.finishSection(); err != nil {
		return err
	}
	if p.interfaceLine == 0 {
		return &Error{File: p.file, Key: "PrivateKey", Err: errNoInterface}
	}
	if p.privateKeyLine == 0 {
		return &Error{File: p.file, Line: p.interfaceLine, Key: "PrivateKey", Err: errMissingIface}
	}
	own := p.c.Interface.PrivateKey.PublicKey()
	for i, peer := range p.c.Peers {
		if peer.PublicKey.Equal(own) {
			return &Error{File: p.file, Line: p.peers[i].publicKey, Key: "PublicKey", Value: peer.PublicKey.String(), Err: errOwnKey}
		}
	}
	if err := p.finishLayer2(); err != nil {
		return err
	}
	if p.c.Interface.MTU < MinIPv6MTU {
		for _, a := range p.c.Interface.Addresses {
			if a.Addr().Is6() {
				return &Error{File: p.file, Line: p.mtuLine, Key: "MTU", Value: strconv.Itoa(p.c.Interface.MTU), Err: errMTUForIPv6}
			}
		}
	}
	return nil
}

// set checks value and stores it under key k.
func (p *parser) set(k key, value string) error {
	ifc := &p.c.Interface
	switch k {
	case keyPrivateKey:
		key, err := crypto.ParsePrivateKey(value)
		if err != nil {
			return err
		}
		ifc.PrivateKey = key
		p.privateKeyLine = p.line
	case keyListenPort:
		n, err := parseDecimal(value, 16)
		if err != nil {
			return errPort
		}
		ifc.ListenPort = uint16(n)
	case keyFwMark:
		mark, err := parseFwMark(value)
		if err != nil {
			return err
		}
		ifc.FwMark = mark
	case keyAddress:
		return p.addAddresses(value)
	case keyMTU:
		p.mtuLine = p.line
		if value == "" { // wg-quick: no MTU
			ifc.MTU = DefaultMTU
			return nil
		}
		n, err := parseDecimal(value, 32)
		if err != nil || n < MinMTU || n > MaxMTU {
			return errMTU
		}
		ifc.MTU = int(n)
		p.mtuSet = true
	case keyTable:
		t, err := parseTable(value)
		if err != nil {
			if !isTableName(value) {
				return err
			}
			// A name from rt_tables: the caller resolves it (TableName).
			ifc.TableName, ifc.Table = value, TableAuto
			return nil
		}
		ifc.Table = t
	case keyDNS:
		return p.addDNS(value)
	case keyPreUp:
		ifc.PreUp = appendHook(ifc.PreUp, value)
	case keyPostUp:
		ifc.PostUp = appendHook(ifc.PostUp, value)
	case keyPreDown:
		ifc.PreDown = appendHook(ifc.PreDown, value)
	case keyPostDown:
		ifc.PostDown = appendHook(ifc.PostDown, value)
	case keySaveConfig:
		switch {
		case equalFold(value, "true"):
			ifc.SaveConfig = true
		case equalFold(value, "false"):
			ifc.SaveConfig = false
		default:
			return errBool
		}
	case keyMode:
		switch {
		case equalFold(value, "tun"):
			ifc.Mode = ModeTUN
		case equalFold(value, "tap"):
			ifc.Mode = ModeTAP
		default:
			return errMode
		}
	case keyDNSRequired, keyFirewallRequired:
		var required bool
		switch {
		case equalFold(value, "true"):
			required = true
		case !equalFold(value, "false"):
			return errBool
		}
		if k == keyDNSRequired {
			ifc.DNSOptional = !required
		} else {
			ifc.FirewallOptional = !required
		}
	case keyBridge, keyForward, keyMACAgeing, keyOffload:
		return p.setLayer2(k, value)
	case keyPathMTUProbe, keyReresolveAfter, keyReresolveMax:
		return p.setPaths(k, value)
	case keyThreads:
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 || n > MaxThreads {
			return errThreads
		}
		ifc.Threads = n
		p.threadsLine = p.line
	case keyMetricsListen:
		ap, err := netip.ParseAddrPort(value)
		if err != nil || ap.Port() == 0 {
			return errMetrics
		}
		ifc.MetricsListen = ap
	default:
		return p.setPeer(k, value)
	}
	return nil
}

// setPeer is set for the keys of a [Peer] section.
func (p *parser) setPeer(k key, value string) error {
	peer := &p.c.Peers[len(p.c.Peers)-1]
	switch k {
	case keyPublicKey:
		key, err := crypto.ParsePublicKey(value)
		if err != nil {
			return err
		}
		if first, ok := p.peerKey[key]; ok {
			return fmt.Errorf("%w peer (first at line %d)", ErrDuplicate, first)
		}
		p.peerKey[key] = p.line
		p.peers[len(p.peers)-1].publicKey = p.line
		peer.PublicKey = key
	case keyPresharedKey:
		key, err := crypto.ParsePresharedKey(value)
		if err != nil {
			return err
		}
		peer.PresharedKey = key
	case keyAllowedIPs:
		return p.addAllowedIPs(peer, value)
	case keyAllowedMACs:
		return p.addAllowedMACs(peer, value)
	case keyEndpoint:
		if _, _, err := splitEndpoint(value); err != nil {
			return err
		}
		peer.Endpoint = value
	case keyPersistentKeepalive:
		if equalFold(value, "off") {
			peer.PersistentKeepalive = 0
			return nil
		}
		n, err := parseDecimal(value, 16)
		if err != nil {
			return errKeepalive
		}
		peer.PersistentKeepalive = time.Duration(n) * time.Second
	}
	return nil
}
