package uapi

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/warrenvpn/warren/crypto"
)

// MaxSetSize is the largest "set=1" request body a Server reads, in bytes
// (lines with their newlines): 64 MiB, six times a set of 100,000 peers
// with one allowed IP each. A larger request is refused as a whole with
// errno=-5 (ErrnoIO) and the connection closed, since the Change it parses
// into is held in memory whole before it is applied.
const MaxSetSize = 64 << 20

// maxLine is the longest request line accepted, as bufio.Scanner's limit in
// wireguard-go (64 KiB including the newline).
const maxLine = bufio.MaxScanTokenSize

var (
	errLineTooLong = errors.New("line too long")
	// errReadRequest marks a request that could not be read to its end: the
	// connection is out of step and must not be used further.
	errReadRequest = errors.New("read request")
)

// ParseSet reads the body of a "set=1" request from r (the lines after
// "set=1\n", up to a blank line or the end of input) and returns the change it
// asks for. The whole body is read and checked before anything is returned;
// on failure the error is an *Error carrying the errno wireguard-go reports
// for the first bad line.
func ParseSet(r io.Reader) (*Change, error) {
	return readSet(bufio.NewReaderSize(r, maxLine))
}

// readSet reads a set body from br up to and including its blank line (or
// the end of input). After a line-level failure it still consumes the rest
// of the request, so that the connection stays in step, unless the input
// itself broke (too long a line, a read error).
func readSet(br *bufio.Reader) (*Change, error) {
	var p setParser
	size := 0
	for {
		line, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &Error{Errno: ErrnoIO, Err: fmt.Errorf("%w: %v", errReadRequest, err)}
		}
		if line == "" {
			break
		}
		if size += len(line) + 1; size > MaxSetSize {
			return nil, &Error{Errno: ErrnoIO, Err: fmt.Errorf("%w: set request over %d bytes", errReadRequest, MaxSetSize)}
		}
		if p.err == nil {
			p.err = p.line(line)
		}
	}
	if p.err != nil {
		return nil, p.err
	}
	return &p.c, nil
}

// readLine returns the next line of br without its "\n" and one trailing
// "\r" (bufio.ScanLines semantics). A final line without "\n" is returned
// as is; after it, io.EOF.
func readLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		return "", errLineTooLong
	case err == io.EOF && len(b) > 0:
		// Last line without a newline: return it now, EOF next time.
	case err != nil:
		return "", err
	default:
		b = b[:len(b)-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return string(b), nil
}

// setParser accumulates a Change line by line.
type setParser struct {
	c    Change
	peer *PeerChange // the peer section being parsed; nil in the device section
	err  error       // the first bad line's error; later lines are only consumed
}

func (p *setParser) line(line string) error {
	k, v, ok := strings.Cut(line, "=")
	if !ok {
		return Errorf(ErrnoProtocol, "failed to parse line %q", line)
	}
	if k == "public_key" {
		pub, err := parseKey(v)
		if err != nil {
			return Errorf(ErrnoInvalid, "failed to get peer by public key: %v", err)
		}
		p.c.Peers = append(p.c.Peers, PeerChange{PublicKey: crypto.PublicKey(pub)})
		p.peer = &p.c.Peers[len(p.c.Peers)-1]
		return nil
	}
	if p.peer == nil {
		return p.deviceLine(k, v)
	}
	return p.peerLine(k, v)
}

func (p *setParser) deviceLine(k, v string) error {
	switch k {
	case "private_key":
		raw, err := parseKey(v)
		if err != nil {
			return Errorf(ErrnoInvalid, "failed to set private_key: %v", err)
		}
		var sk crypto.PrivateKey
		if raw != ([crypto.KeySize]byte{}) {
			// Clamp as wireguard-go does; an all-zero key stays zero (removal).
			if sk, err = crypto.ParsePrivateKeyHex(hex.EncodeToString(raw[:])); err != nil {
				return Errorf(ErrnoInvalid, "failed to set private_key: %v", err)
			}
		}
		p.c.PrivateKey = &sk
	case "listen_port":
		port, err := parseUint[uint16](v, 16)
		if err != nil {
			return Errorf(ErrnoInvalid, "failed to parse listen_port: %v", err)
		}
		p.c.ListenPort = &port
	case "fwmark":
		mark, err := parseUint[uint32](v, 32)
		if err != nil {
			return Errorf(ErrnoInvalid, "invalid fwmark: %v", err)
		}
		p.c.FwMark = &mark
	case "replace_peers":
		if v != "true" {
			return Errorf(ErrnoInvalid, "failed to set replace_peers, invalid value: %v", v)
		}
		p.c.ReplacePeers = true
	default:
		return Errorf(ErrnoInvalid, "invalid UAPI device key: %v", k)
	}
	return nil
}

func (p *setParser) peerLine(k, v string) error {
	pc := p.peer
	// record reports whether the line changes anything: not after remove=true.
	record := !pc.Remove
	switch k {
	case "update_only":
		if v != "true" {
			return Errorf(ErrnoInvalid, "failed to set update only, invalid value: %v", v)
		}
		if record {
			pc.UpdateOnly = true
		}
	case "remove":
		if v != "true" {
			return Errorf(ErrnoInvalid, "failed to set remove, invalid value: %v", v)
		}
		if !record {
			break
		}
		if pc.isEmpty() {
			pc.Remove = true
			break
		}
		// wireguard-go has applied the lines so far (allowed IPs taken from
		// other peers stay taken) before it removes the peer: keep them as
		// an entry of their own, followed by the removal.
		p.c.Peers = append(p.c.Peers, PeerChange{PublicKey: pc.PublicKey, Remove: true})
		p.peer = &p.c.Peers[len(p.c.Peers)-1]
	case "preshared_key":
		raw, err := parseKey(v)
		if err != nil {
			return Errorf(ErrnoInvalid, "failed to set preshared key: %v", err)
		}
		if record {
			psk := crypto.PresharedKey(raw)
			pc.PresharedKey = &psk
		}
	case "endpoint":
		ep, err := netip.ParseAddrPort(v)
		if err != nil {
			return Errorf(ErrnoInvalid, "failed to set endpoint %v: %v", v, err)
		}
		if record {
			pc.Endpoint = &ep
		}
	case "persistent_keepalive_interval":
		secs, err := parseUint[uint16](v, 16)
		if err != nil {
			return Errorf(ErrnoInvalid, "failed to set persistent keepalive interval: %v", err)
		}
		if record {
			pc.PersistentKeepalive = &secs
		}
	case "replace_allowed_ips":
		if v != "true" {
			return Errorf(ErrnoInvalid, "failed to replace allowedips, invalid value: %v", v)
		}
		if record {
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = foldBeforeReplace(pc.AllowedIPs)
		}
	case "allowed_ip":
		remove := strings.HasPrefix(v, "-")
		prefix, err := netip.ParsePrefix(strings.TrimPrefix(v, "-"))
		if err != nil {
			return Errorf(ErrnoInvalid, "failed to set allowed ip: %v", err)
		}
		if record {
			pc.AllowedIPs = append(pc.AllowedIPs, AllowedIPChange{Prefix: prefix, Remove: remove})
		}
	case "protocol_version":
		if v != "1" {
			return Errorf(ErrnoInvalid, "invalid protocol version: %v", v)
		}
	default:
		return Errorf(ErrnoInvalid, "invalid UAPI peer key: %v", k)
	}
	return nil
}

// isEmpty reports whether pc changes nothing beyond naming its peer.
func (pc *PeerChange) isEmpty() bool {
	return !pc.Remove && !pc.UpdateOnly && pc.PresharedKey == nil && pc.Endpoint == nil &&
		pc.PersistentKeepalive == nil && !pc.ReplaceAllowedIPs && len(pc.AllowedIPs) == 0
}

// foldBeforeReplace rewrites the allowed-IP lines that came before a
// replace_allowed_ips=true line so that they can be applied after the
// replacement, as PeerChange requires, with wireguard-go's effect: each
// prefix added before it was taken from whichever peer held it and then
// removed with the rest, so it becomes "add, then remove"; a removal before
// it changes nothing the replacement does not.
func foldBeforeReplace(ops []AllowedIPChange) []AllowedIPChange {
	var out []AllowedIPChange
	for _, op := range ops {
		if !op.Remove {
			out = append(out, op, AllowedIPChange{Prefix: op.Prefix, Remove: true})
		}
	}
	return out
}

// parseKey decodes a 32-byte key written as 64 hex digits (either case, as
// wireguard-go's hex.DecodeString accepts).
func parseKey(s string) ([crypto.KeySize]byte, error) {
	var k [crypto.KeySize]byte
	if len(s) != hex.EncodedLen(crypto.KeySize) {
		return k, crypto.ErrKeyFormat
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, crypto.ErrKeyFormat
	}
	return k, nil
}

// parseUint parses a decimal number of at most bits bits (T's size).
func parseUint[T uint16 | uint32](s string, bits int) (T, error) {
	n, err := strconv.ParseUint(s, 10, bits)
	return T(n), err
}
