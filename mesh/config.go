package mesh

// A mesh node's file is a wg-quick file with one more section, [Mesh]:
//
//	[Interface]
//	PrivateKey = ...
//	Address = 198.18.100.1/24
//	ListenPort = 51820
//
//	[Mesh]
//	Endpoints = https://198.18.0.1:2379
//	CertFile = /etc/warren/node1.crt
//	KeyFile = /etc/warren/node1.key
//	CAFile = /etc/warren/ca.crt
//	Network = lab
//	Name = node1
//	Advertise = detect
//
// Load splits the file: the lines of [Mesh] go to the parser below, every
// other line to config.Parse, with the [Mesh] lines blanked so that the line
// numbers of both parsers' errors are those of the file. Package config
// refuses a section it does not know, so a mesh file given to `warren up`
// fails at its [Mesh] line instead of running without the mesh.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/warrenvpn/warren/config"
)

// Defaults and limits of the [Mesh] section.
const (
	DefaultPrefix   = "/warren"
	DefaultLeaseTTL = 30 * time.Second
	MinLeaseTTL     = 2 * time.Second    // etcd's own minimum with its default election timeout
	MaxLeaseTTL     = 3600 * time.Second // a crashed node stays in the mesh at most this long
	DefaultCacheDir = "/var/lib/warren"
	maxNameLen      = 63 // bytes, of Network and Name
)

// Config is the [Mesh] section of a node's file.
type Config struct {
	// Endpoints are etcd's client URLs (https://host:port, or http:// with
	// Insecure), in file order.
	Endpoints []string
	// CertFile and KeyFile are this node's TLS client certificate and key,
	// CAFile the CA that signed etcd's server certificate. All three are
	// required unless Insecure is set.
	CertFile, KeyFile, CAFile string
	// Insecure allows plain http:// endpoints and no client certificate.
	// Anyone who can write to etcd can then add peers: for tests only.
	Insecure bool
	Prefix   string // key prefix, "/warren" by default; no trailing slash
	Network  string // the mesh's name, one path element under Prefix
	Name     string // this node's name, unique in the network
	// Advertise are the endpoints published for this node, in file order.
	// DetectEndpoint means "detect": the local address towards etcd, with
	// the tunnel's listen port.
	Advertise []netip.AddrPort
	Detect    bool
	// AllowedIPs are the prefixes this node serves, published as its
	// allowed IPs. Default: the interface's addresses as /32 and /128.
	AllowedIPs []netip.Prefix
	Labels     map[string]string // this node's labels
	// Select takes only the nodes carrying every one of these labels;
	// empty takes all nodes.
	Select   map[string]string
	LeaseTTL time.Duration // whole seconds; DefaultLeaseTTL if not given
	// PersistentKeepalive is set on every mesh peer; 0 = off.
	PersistentKeepalive time.Duration
	// CacheFile holds the last known nodes, for a start without etcd.
	// Default: DefaultCacheDir/NAME.mesh, NAME the interface's name.
	CacheFile string
}

type meshKey uint8

const (
	keyEndpoints meshKey = iota
	keyCertFile
	keyKeyFile
	keyCAFile
	keyInsecure
	keyPrefix
	keyNetwork
	keyName
	keyAdvertise
	keyAllowedIPs
	keyLabels
	keyPeers
	keyLeaseTTL
	keyKeepalive
	keyCacheFile
	numMeshKeys
)

// meshKeys lists every [Mesh] key's canonical name and whether it may
// appear on several lines (the values add up).
var meshKeys = [numMeshKeys]struct {
	name   string
	repeat bool
}{
	keyEndpoints:  {"Endpoints", true},
	keyCertFile:   {"CertFile", false},
	keyKeyFile:    {"KeyFile", false},
	keyCAFile:     {"CAFile", false},
	keyInsecure:   {"Insecure", false},
	keyPrefix:     {"Prefix", false},
	keyNetwork:    {"Network", false},
	keyName:       {"Name", false},
	keyAdvertise:  {"Advertise", true},
	keyAllowedIPs: {"AllowedIPs", true},
	keyLabels:     {"Labels", true},
	keyPeers:      {"Peers", false},
	keyLeaseTTL:   {"LeaseTTL", false},
	keyKeepalive:  {"PersistentKeepalive", false},
	keyCacheFile:  {"CacheFile", false},
}

var (
	errNoMesh      = fmt.Errorf("%w (no [Mesh] section)", config.ErrMissing)
	errMissingMesh = fmt.Errorf("%w in [Mesh] section", config.ErrMissing)
	errEndpointURL = errors.New("invalid etcd endpoint: want https://host:port (http:// only with Insecure = true)")
	errNeedTLS     = errors.New("required unless Insecure = true")
	errMeshName    = fmt.Errorf("invalid name: want 1-%d letters, digits, '.', '_' or '-', not starting with '.'", maxNameLen)
	errPrefixPath  = errors.New("invalid prefix: want an absolute key path such as /warren, without a trailing '/'")
	errAdvertise   = errors.New("invalid endpoint: want detect, IPv4:port or [IPv6]:port with port 1-65535")
	errLabel       = errors.New("invalid label: want key=value, both 1-63 letters, digits, '.', '_' or '-'")
	errLeaseTTL    = fmt.Errorf("invalid lease TTL: want whole seconds %d-%d", int(MinLeaseTTL/time.Second), int(MaxLeaseTTL/time.Second))
	errBool        = errors.New("want true or false")
	errKeepalive   = errors.New("invalid persistent keepalive: want off or seconds 0-65535")
	errPrefixEntry = errors.New("invalid prefix")
	errDetectMixed = errors.New("detect cannot be combined with other endpoints")
	errPeersSel    = errors.New("invalid selection: want all, or labels key=value, ...")
	errNoAllowed   = errors.New("no prefixes to serve: give AllowedIPs or an Address")
)

// Load reads a node's file: the interface (and any static peers) as
// config.Load reads them, and its [Mesh] section. Mistakes in either part
// are returned as a *config.Error naming the file, line and key.
func Load(path string) (*config.Config, *Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return Parse(path, bytes.NewReader(b))
}

// Parse is Load on the contents of the file named name.
func Parse(name string, r io.Reader) (*config.Config, *Config, error) {
	p := meshParser{file: name, c: &Config{}}
	var rest bytes.Buffer
	inMesh := false
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		p.line++
		raw := sc.Text()
		text, _, _ := strings.Cut(raw, "#")
		text = strings.TrimSpace(text)
		if strings.HasPrefix(text, "[") {
			inMesh = strings.EqualFold(text, "[Mesh]")
			if inMesh {
				if p.headerLine != 0 {
					return nil, nil, p.errorf("[Mesh]", "", fmt.Errorf("%w section (first at line %d)", config.ErrDuplicate, p.headerLine))
				}
				p.headerLine = p.line
			}
		}
		if !inMesh {
			rest.WriteString(raw)
			rest.WriteByte('\n')
			continue
		}
		rest.WriteByte('\n')
		if err := p.parseLine(text); err != nil {
			return nil, nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	cfg, err := config.Parse(name, &rest)
	if err != nil {
		return nil, nil, err
	}
	if cfg.Name == "" {
		return nil, nil, &config.Error{File: name, Err: config.ErrInterfaceName}
	}
	if err := p.finish(cfg); err != nil {
		return nil, nil, err
	}
	return cfg, p.c, nil
}

// meshParser holds the state of the [Mesh] part of one Parse call.
type meshParser struct {
	file       string
	c          *Config
	line       int
	headerLine int
	seen       [numMeshKeys]int // line of each key; 0 = not yet
}

func (p *meshParser) errorf(key, value string, err error) *config.Error {
	return &config.Error{File: p.file, Line: p.line, Key: key, Value: value, Err: err}
}

func (p *meshParser) parseLine(text string) error {
	if text == "" || text[0] == '[' {
		return nil
	}
	name, value, ok := strings.Cut(text, "=")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || name == "" {
		return p.errorf("", text, config.ErrSyntax)
	}
	k := numMeshKeys
	for i := range numMeshKeys {
		if strings.EqualFold(meshKeys[i].name, name) {
			k, name = i, meshKeys[i].name
		}
	}
	switch {
	case k == numMeshKeys:
		return p.errorf(name, "", fmt.Errorf("%w in [Mesh] section", config.ErrUnknownKey))
	case !meshKeys[k].repeat && p.seen[k] != 0:
		return p.errorf(name, "", fmt.Errorf("%w key (first at line %d)", config.ErrDuplicate, p.seen[k]))
	case value == "":
		return p.errorf(name, "", config.ErrEmpty)
	}
	p.seen[k] = p.line
	if err := p.set(k, value); err != nil {
		var e *config.Error
		if errors.As(err, &e) {
			e.File, e.Line, e.Key = p.file, p.line, name
			return e
		}
		return p.errorf(name, value, err)
	}
	return nil
}

// set checks value and stores it under key k.
func (p *meshParser) set(k meshKey, value string) error {
	c := p.c
	switch k {
	case keyEndpoints:
		for _, f := range splitList(value) {
			if _, err := url.Parse(f); err != nil || !validEndpointURL(f) {
				return &config.Error{Value: f, Err: errEndpointURL}
			}
			c.Endpoints = append(c.Endpoints, f)
		}
	case keyCertFile:
		c.CertFile = value
	case keyKeyFile:
		c.KeyFile = value
	case keyCAFile:
		c.CAFile = value
	case keyInsecure:
		switch {
		case strings.EqualFold(value, "true"):
			c.Insecure = true
		case strings.EqualFold(value, "false"):
			c.Insecure = false
		default:
			return errBool
		}
	case keyPrefix:
		if !strings.HasPrefix(value, "/") || strings.HasSuffix(value, "/") || strings.Contains(value, "//") || strings.ContainsAny(value, " \t") {
			return errPrefixPath
		}
		c.Prefix = value
	case keyNetwork:
		if !validName(value) {
			return errMeshName
		}
		c.Network = value
	case keyName:
		if !validName(value) {
			return errMeshName
		}
		c.Name = value
	case keyAdvertise:
		for _, f := range splitList(value) {
			if strings.EqualFold(f, "detect") {
				c.Detect = true
				continue
			}
			ap, err := netip.ParseAddrPort(f)
			if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() {
				return &config.Error{Value: f, Err: errAdvertise}
			}
			c.Advertise = append(c.Advertise, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
		if c.Detect && len(c.Advertise) > 0 {
			return errDetectMixed
		}
	case keyAllowedIPs:
		for _, f := range splitList(value) {
			pfx, err := netip.ParsePrefix(f)
			if err != nil {
				a, aerr := netip.ParseAddr(f)
				if aerr != nil {
					return &config.Error{Value: f, Err: errPrefixEntry}
				}
				pfx = netip.PrefixFrom(a, a.BitLen())
			}
			if pfx.Addr().Zone() != "" {
				return &config.Error{Value: f, Err: errPrefixEntry}
			}
			c.AllowedIPs = append(c.AllowedIPs, pfx.Masked())
		}
	case keyLabels:
		if c.Labels == nil {
			c.Labels = make(map[string]string)
		}
		return parseLabels(value, c.Labels)
	case keyPeers:
		if strings.EqualFold(value, "all") {
			c.Select = nil
			return nil
		}
		c.Select = make(map[string]string)
		if err := parseLabels(value, c.Select); err != nil {
			return err
		}
	case keyLeaseTTL:
		n, err := strconv.ParseUint(value, 10, 32)
		d := time.Duration(n) * time.Second
		if err != nil || d < MinLeaseTTL || d > MaxLeaseTTL {
			return errLeaseTTL
		}
		c.LeaseTTL = d
	case keyKeepalive:
		if strings.EqualFold(value, "off") {
			c.PersistentKeepalive = 0
			return nil
		}
		n, err := strconv.ParseUint(value, 10, 16)
		if err != nil {
			return errKeepalive
		}
		c.PersistentKeepalive = time.Duration(n) * time.Second
	case keyCacheFile:
		c.CacheFile = value
	}
	return nil
}

// finish checks what needs the whole file and fills in the defaults.
func (p *meshParser) finish(cfg *config.Config) error {
	c := p.c
	if p.headerLine == 0 {
		return &config.Error{File: p.file, Key: "[Mesh]", Err: errNoMesh}
	}
	missing := func(key string) error {
		return &config.Error{File: p.file, Line: p.headerLine, Key: key, Err: errMissingMesh}
	}
	switch {
	case len(c.Endpoints) == 0:
		return missing("Endpoints")
	case c.Network == "":
		return missing("Network")
	case c.Name == "":
		return missing("Name")
	case len(c.Advertise) == 0 && !c.Detect:
		return missing("Advertise")
	}
	if !c.Insecure {
		for _, k := range []struct {
			key   meshKey
			value string
		}{{keyCertFile, c.CertFile}, {keyKeyFile, c.KeyFile}, {keyCAFile, c.CAFile}} {
			if k.value == "" {
				return &config.Error{File: p.file, Line: p.headerLine, Key: meshKeys[k.key].name, Err: errNeedTLS}
			}
		}
		for _, e := range c.Endpoints {
			if strings.HasPrefix(strings.ToLower(e), "http://") {
				return &config.Error{File: p.file, Line: p.seen[keyEndpoints], Key: "Endpoints", Value: e, Err: errEndpointURL}
			}
		}
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.CacheFile == "" {
		c.CacheFile = filepath.Join(DefaultCacheDir, cfg.Name+".mesh")
	}
	if len(c.AllowedIPs) == 0 {
		for _, a := range cfg.Interface.Addresses {
			c.AllowedIPs = append(c.AllowedIPs, netip.PrefixFrom(a.Addr(), a.Addr().BitLen()))
		}
	}
	if len(c.AllowedIPs) == 0 {
		return &config.Error{File: p.file, Line: p.headerLine, Key: "AllowedIPs", Err: errNoAllowed}
	}
	c.AllowedIPs = dedupPrefixes(c.AllowedIPs)
	return nil
}

// splitList splits a list at commas and white space, dropping empty entries.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// validName reports whether s is a valid network, node or label name.
func validName(s string) bool {
	if s == "" || len(s) > maxNameLen || s[0] == '.' {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// validEndpointURL reports whether s is http:// or https:// with a host and
// port and nothing else.
func validEndpointURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Hostname() == "" {
		return false
	}
	return (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.User == nil && u.Fragment == ""
}

// parseLabels adds the key=value entries of s to m.
func parseLabels(s string, m map[string]string) error {
	entries := splitList(s)
	if len(entries) == 0 {
		return errPeersSel
	}
	for _, f := range entries {
		k, v, ok := strings.Cut(f, "=")
		if !ok || !validName(k) || !validName(v) {
			return &config.Error{Value: f, Err: errLabel}
		}
		m[k] = v
	}
	return nil
}

// dedupPrefixes returns ps without repeats, in first-seen order.
func dedupPrefixes(ps []netip.Prefix) []netip.Prefix {
	seen := make(map[netip.Prefix]bool, len(ps))
	out := ps[:0]
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
