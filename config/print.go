package config

import (
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// String returns c as a config file that Parse reads back to an equal
// Config. It contains the private key: never log it.
//
// Keys are written in canonical case, lists on one line, and only where
// they differ from the default, except MTU, which is always written;
// Mode is written only for tap, so a tun config stays readable by
// wg-quick. Hook commands and host names are written as stored, so a
// Config built by hand must not hold newlines or '#' in them, and
// PersistentKeepalive is written in whole seconds (rounded down).
func (c *Config) String() string {
	var b strings.Builder
	ifc := &c.Interface
	b.WriteString("[Interface]\n")
	writeKey(&b, "PrivateKey", ifc.PrivateKey.String())
	if ifc.ListenPort != 0 {
		writeKey(&b, "ListenPort", strconv.Itoa(int(ifc.ListenPort)))
	}
	if ifc.FwMark != 0 {
		writeKey(&b, "FwMark", "0x"+strconv.FormatUint(uint64(ifc.FwMark), 16))
	}
	writePrefixes(&b, "Address", ifc.Addresses)
	writeKey(&b, "MTU", strconv.Itoa(ifc.MTU))
	switch {
	case ifc.TableName != "":
		writeKey(&b, "Table", ifc.TableName)
	case ifc.Table != TableAuto:
		writeKey(&b, "Table", ifc.Table.String())
	}
	if len(ifc.DNS)+len(ifc.DNSSearch) > 0 {
		writeKey(&b, "DNS", strings.Join(append(ifc.DNS[:len(ifc.DNS):len(ifc.DNS)], ifc.DNSSearch...), ", "))
	}
	if ifc.Mode != ModeTUN {
		writeKey(&b, "Mode", ifc.Mode.String())
	}
	if ifc.Threads > 0 {
		writeKey(&b, "Threads", strconv.Itoa(ifc.Threads))
	}
	if ifc.Bridge != "" {
		writeKey(&b, "Bridge", ifc.Bridge)
	}
	if ifc.Forward {
		writeKey(&b, "Forward", "true")
	}
	if ifc.MACAgeing > 0 {
		writeKey(&b, "MACAgeing", strconv.FormatInt(int64(ifc.MACAgeing.Seconds()), 10))
	}
	if ifc.OffloadOff {
		writeKey(&b, "Offload", "off")
	}
	writePaths(&b, ifc)
	if ifc.SaveConfig {
		writeKey(&b, "SaveConfig", "true")
	}
	if ifc.DNSOptional {
		writeKey(&b, "DNSRequired", "false")
	}
	if ifc.FirewallOptional {
		writeKey(&b, "FirewallRequired", "false")
	}
	if ifc.MetricsListen.IsValid() {
		writeKey(&b, "MetricsListen", ifc.MetricsListen.String())
	}
	for _, hooks := range []struct {
		key  string
		cmds []string
	}{{"PreUp", ifc.PreUp}, {"PostUp", ifc.PostUp}, {"PreDown", ifc.PreDown}, {"PostDown", ifc.PostDown}} {
		for _, cmd := range hooks.cmds {
			writeKey(&b, hooks.key, cmd)
		}
	}
	for i := range c.Peers {
		p := &c.Peers[i]
		b.WriteString("\n[Peer]\n")
		writeKey(&b, "PublicKey", p.PublicKey.String())
		if !p.PresharedKey.IsZero() {
			writeKey(&b, "PresharedKey", p.PresharedKey.String())
		}
		writePrefixes(&b, "AllowedIPs", p.AllowedIPs)
		if len(p.AllowedMACs) > 0 {
			macs := make([]string, len(p.AllowedMACs))
			for i, m := range p.AllowedMACs {
				macs[i] = m.String()
			}
			writeKey(&b, "AllowedMACs", strings.Join(macs, ", "))
		}
		if p.Endpoint != "" {
			writeKey(&b, "Endpoint", p.Endpoint)
		}
		if s := int64(p.PersistentKeepalive.Seconds()); s > 0 {
			writeKey(&b, "PersistentKeepalive", strconv.FormatInt(s, 10))
		}
	}
	return b.String()
}

// WriteTo writes c.String() to w.
func (c *Config) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, c.String())
	return int64(n), err
}

func writeKey(b *strings.Builder, key, value string) {
	b.WriteString(key)
	b.WriteString(" = ")
	b.WriteString(value)
	b.WriteByte('\n')
}

func writePrefixes(b *strings.Builder, key string, prefixes []netip.Prefix) {
	if len(prefixes) == 0 {
		return
	}
	b.WriteString(key)
	b.WriteString(" = ")
	for i, p := range prefixes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.String())
	}
	b.WriteByte('\n')
}
