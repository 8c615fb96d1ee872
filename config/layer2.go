package config

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/warrenvpn/warren/mactable"
)

// Layer 2 keys (Mode = tap).
const maxMACAgeing = 1_000_000 * time.Second // about 11.5 days

var (
	errTUNOnly    = errors.New("only with Mode = tap")
	errTAPThreads = errors.New("Mode = tap runs one pipeline (a multi-queue TAP is not done): want 1 or no Threads")
	errMAC        = errors.New("invalid MAC address: want six hex octets such as 02:00:00:00:00:01")
	errGroupMAC   = errors.New("a multicast or broadcast MAC cannot be a source")
	errMACAgeing  = errors.New("invalid MAC ageing: want whole seconds from 1 to 1000000")
	errBridgeName = errors.New("invalid bridge name: " + NameRule)
	errOnOff      = errors.New("invalid value: want on or off")
)

// setLayer2 stores the [Interface] keys of layer 2 mode.
func (p *parser) setLayer2(k key, value string) error {
	ifc := &p.c.Interface
	p.layer2Keys = append(p.layer2Keys, keyLine{p.line, k})
	switch k {
	case keyBridge:
		if !ValidName(value) {
			return errBridgeName
		}
		ifc.Bridge = value
	case keyForward:
		switch {
		case equalFold(value, "true"):
			ifc.Forward = true
		case equalFold(value, "false"):
			ifc.Forward = false
		default:
			return errBool
		}
	case keyMACAgeing:
		n, err := parseDecimal(value, 32)
		if err != nil || n < 1 || time.Duration(n)*time.Second > maxMACAgeing {
			return errMACAgeing
		}
		ifc.MACAgeing = time.Duration(n) * time.Second
	case keyOffload:
		switch {
		case equalFold(value, "on"):
			ifc.OffloadOff = false
		case equalFold(value, "off"):
			ifc.OffloadOff = true
		default:
			return errOnOff
		}
	}
	return nil
}

// addAllowedMACs adds a comma-separated list of MACs to peer. A MAC twice
// in one peer is kept once; a MAC in two peers is refused: frames from
// either would be spoofed by the other's list, so anti-spoofing (T1) could
// not say whose it is.
func (p *parser) addAllowedMACs(peer *Peer, value string) error {
	p.layer2Keys = append(p.layer2Keys, keyLine{p.line, keyAllowedMACs})
	header := p.peers[len(p.peers)-1].header
	for s := range strings.SplitSeq(value, ",") {
		s = trimSpace(s)
		if s == "" {
			continue
		}
		hw, err := net.ParseMAC(s)
		if err != nil || len(hw) != 6 {
			return &Error{Value: s, Err: errMAC}
		}
		m := mactable.MAC(hw)
		if m.IsGroup() {
			return &Error{Value: s, Err: errGroupMAC}
		}
		if first, ok := p.allowedMACs[m]; ok {
			if first == header {
				continue
			}
			return &Error{Value: s, Err: fmt.Errorf("%w: %v is also allowed for the peer at line %d", ErrDuplicate, m, first)}
		}
		if p.allowedMACs == nil {
			p.allowedMACs = make(map[mactable.MAC]int)
		}
		p.allowedMACs[m] = header
		peer.AllowedMACs = append(peer.AllowedMACs, m)
	}
	return nil
}

// finishLayer2 refuses the layer 2 keys in TUN mode and more than one
// pipeline in TAP mode, and sets the TAP's default MTU.
func (p *parser) finishLayer2() error {
	ifc := &p.c.Interface
	if ifc.Mode != ModeTAP {
		if len(p.layer2Keys) > 0 {
			kl := p.layer2Keys[0]
			return &Error{File: p.file, Line: kl.line, Key: keys[kl.k].name, Err: errTUNOnly}
		}
		return nil
	}
	if ifc.Threads > 1 {
		return &Error{File: p.file, Line: p.threadsLine, Key: "Threads", Value: strconv.Itoa(ifc.Threads), Err: errTAPThreads}
	}
	if !p.mtuSet {
		ifc.MTU = DefaultTAPMTU
	}
	return nil
}

// keyLine is a key and the line it is on.
type keyLine struct {
	line int
	k    key
}
