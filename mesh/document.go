package mesh

// What a node publishes. Each node owns one key,
//
//	PREFIX/NETWORK/nodes/PUBLIC_KEY
//
// PUBLIC_KEY being its WireGuard public key in URL-safe base64 (RFC 4648
// section 5, with padding: '-' and '_' instead of '+' and '/', so that the
// key has no '/' of its own). The value is a JSON document:
//
//	{"v":1,"name":"node1","publicKey":"<standard base64>",
//	 "endpoints":["198.18.0.2:51820"],"allowedIPs":["198.18.100.1/32"],
//	 "labels":{"site":"a"},"mode":"tun","updatedAt":"2026-12-02T13:40:00Z"}
//
// Only public information goes in: never a private or preshared key.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
)

// DocumentVersion is the version of the document this package writes and
// reads; a document of another version is foreign and ignored.
const DocumentVersion = 1

// Limits on a document read from the store; a larger one is malformed.
const (
	maxDocumentSize = 64 << 10 // bytes
	maxEndpoints    = 16
	maxAllowedIPs   = 1024
	maxLabels       = 32
)

// Node is one node of the mesh as published in the store.
type Node struct {
	Name       string
	PublicKey  wgcrypto.PublicKey
	Endpoints  []netip.AddrPort
	AllowedIPs []netip.Prefix // masked
	Labels     map[string]string
	Mode       config.Mode
	UpdatedAt  time.Time
}

// document is Node's JSON form.
type document struct {
	Version    int               `json:"v"`
	Name       string            `json:"name"`
	PublicKey  string            `json:"publicKey"`
	Endpoints  []string          `json:"endpoints"`
	AllowedIPs []string          `json:"allowedIPs"`
	Labels     map[string]string `json:"labels,omitempty"`
	Mode       string            `json:"mode"`
	UpdatedAt  time.Time         `json:"updatedAt"`
}

// Marshal returns n's document.
func (n *Node) Marshal() ([]byte, error) {
	d := document{
		Version:    DocumentVersion,
		Name:       n.Name,
		PublicKey:  n.PublicKey.String(),
		Endpoints:  make([]string, len(n.Endpoints)),
		AllowedIPs: make([]string, len(n.AllowedIPs)),
		Labels:     n.Labels,
		Mode:       n.Mode.String(),
		UpdatedAt:  n.UpdatedAt.UTC(),
	}
	for i, e := range n.Endpoints {
		d.Endpoints[i] = e.String()
	}
	for i, p := range n.AllowedIPs {
		d.AllowedIPs[i] = p.String()
	}
	return json.Marshal(d)
}

var (
	errTooLarge   = fmt.Errorf("document larger than %d bytes", maxDocumentSize)
	errVersion    = errors.New("foreign document: unknown version")
	errKeyMatch   = errors.New("public key does not match the key it is stored under")
	errDocName    = errors.New("invalid node name")
	errDocMode    = errors.New("invalid mode")
	errDocList    = errors.New("too many endpoints, allowed IPs or labels")
	errDocLabel   = errors.New("invalid label")
	errDocEntry   = errors.New("invalid endpoint or allowed IP")
	errNoPrefixes = errors.New("no allowed IPs")
)

// ParseNode reads the document stored under the node key whose last path
// element is keyName. Anything unexpected is an error; the caller logs it
// and ignores the document.
func ParseNode(keyName string, b []byte) (Node, error) {
	if len(b) > maxDocumentSize {
		return Node{}, errTooLarge
	}
	var d document
	if err := json.Unmarshal(b, &d); err != nil {
		return Node{}, fmt.Errorf("not a node document: %v", err)
	}
	if d.Version != DocumentVersion {
		return Node{}, fmt.Errorf("%w %d", errVersion, d.Version)
	}
	pub, err := wgcrypto.ParsePublicKey(d.PublicKey)
	if err != nil {
		return Node{}, fmt.Errorf("public key: %v", err)
	}
	if keyName != keyElement(pub) {
		return Node{}, errKeyMatch
	}
	n := Node{Name: d.Name, PublicKey: pub, Labels: d.Labels, UpdatedAt: d.UpdatedAt}
	if !validName(d.Name) {
		return Node{}, fmt.Errorf("%w %q", errDocName, d.Name)
	}
	switch d.Mode {
	case "tun":
		n.Mode = config.ModeTUN
	case "tap":
		n.Mode = config.ModeTAP
	default:
		return Node{}, fmt.Errorf("%w %q", errDocMode, d.Mode)
	}
	if len(d.Endpoints) > maxEndpoints || len(d.AllowedIPs) > maxAllowedIPs || len(d.Labels) > maxLabels {
		return Node{}, errDocList
	}
	for k, v := range d.Labels {
		if !validName(k) || !validName(v) {
			return Node{}, fmt.Errorf("%w %q=%q", errDocLabel, k, v)
		}
	}
	for _, s := range d.Endpoints {
		ap, err := netip.ParseAddrPort(s)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() {
			return Node{}, fmt.Errorf("%w %q", errDocEntry, s)
		}
		n.Endpoints = append(n.Endpoints, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	for _, s := range d.AllowedIPs {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return Node{}, fmt.Errorf("%w %q", errDocEntry, s)
		}
		n.AllowedIPs = append(n.AllowedIPs, p.Masked())
	}
	if len(n.AllowedIPs) == 0 {
		return Node{}, errNoPrefixes
	}
	n.AllowedIPs = dedupPrefixes(n.AllowedIPs)
	return n, nil
}

// keyElement is the last path element of pub's node key.
func keyElement(pub wgcrypto.PublicKey) string {
	return base64.URLEncoding.EncodeToString(pub[:])
}

// nodesPrefix is the key prefix under which the network's nodes live,
// ending in '/'.
func nodesPrefix(c *Config) string {
	return c.Prefix + "/" + c.Network + "/nodes/"
}

// nodeKey is the key of pub's document.
func nodeKey(c *Config, pub wgcrypto.PublicKey) string {
	return nodesPrefix(c) + keyElement(pub)
}

// lastElement returns the part of key after its last '/'.
func lastElement(key string) string {
	return key[strings.LastIndexByte(key, '/')+1:]
}
