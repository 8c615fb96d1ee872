package uapi

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warrenvpn/warren/crypto"
)

// Dial connects to the control socket of iface in dir (DefaultDir for wg's).
func Dial(dir, iface string) (net.Conn, error) {
	if err := checkName(iface); err != nil {
		return nil, err
	}
	return net.Dial("unix", SocketPath(dir, iface))
}

// Get sends "get=1" on rw and returns the daemon's state. A non-zero errno
// is returned as an *Error.
func Get(rw io.ReadWriter) (*State, error) {
	if _, err := io.WriteString(rw, "get=1\n\n"); err != nil {
		return nil, fmt.Errorf("send get: %w", err)
	}
	return ReadState(bufio.NewReader(rw))
}

// ErrNotWarren is returned by GetWarren when the daemon closed the
// connection without a reply: it is not warren (wireguard-go does that with
// operations it does not know), or an older warren.
var ErrNotWarren = errors.New("daemon does not answer get=warren")

// GetWarren sends "get=warren" on rw and returns the daemon's state with its
// drop counters (see the package doc). A daemon that does not know the
// request closes the connection: the error then matches ErrNotWarren, and
// the caller may dial again and use Get.
func GetWarren(rw io.ReadWriter) (*State, error) {
	if _, err := io.WriteString(rw, "get=warren\n\n"); err != nil {
		return nil, fmt.Errorf("send get: %w", err)
	}
	br := bufio.NewReader(rw)
	if _, err := br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return nil, ErrNotWarren
		}
		return nil, fmt.Errorf("read state: %w", err)
	}
	return ReadState(br)
}

// Set sends c as a "set=1" request on rw and waits for the status. A
// non-zero errno is returned as an *Error.
func Set(rw io.ReadWriter, c *Change) error {
	if _, err := rw.Write(AppendChange([]byte("set=1\n"), c)); err != nil {
		return fmt.Errorf("send set: %w", err)
	}
	br := bufio.NewReader(rw)
	line, err := readLine(br)
	if err != nil {
		return fmt.Errorf("read status: %w", err)
	}
	if _, err := readLine(br); err != nil && err != io.EOF {
		return fmt.Errorf("read status: %w", err)
	}
	return statusError(line)
}

// statusError turns an "errno=N" line into nil or an *Error.
func statusError(line string) error {
	v, ok := strings.CutPrefix(line, "errno=")
	if !ok {
		return fmt.Errorf("unexpected reply line %q", line)
	}
	errno, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("unexpected reply line %q", line)
	}
	if errno != 0 {
		return &Error{Errno: errno, Err: errors.New("request refused")}
	}
	return nil
}

// ReadState parses a "get=1" or "get=warren" reply from r, up to and
// including its "errno=N" line and the blank line after it. Lines it does
// not know are an error, so that nothing is silently dropped.
func ReadState(r *bufio.Reader) (*State, error) {
	s := &State{}
	var p *PeerState
	var sec, nsec int64
	finishPeer := func() {
		if p != nil && (sec != 0 || nsec != 0) {
			p.LastHandshake = time.Unix(sec, nsec)
		}
		sec, nsec = 0, 0
	}
	for {
		line, err := readLine(r)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read state: %w", err)
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("read state: malformed line %q", line)
		}
		if k == "errno" {
			finishPeer()
			if err := statusError(line); err != nil {
				return nil, err
			}
			if _, err := readLine(r); err != nil && err != io.EOF {
				return nil, fmt.Errorf("read state: %w", err)
			}
			return s, nil
		}
		if k == "public_key" {
			finishPeer()
			pub, err := parseKey(v)
			if err != nil {
				return nil, fmt.Errorf("read state: %s: %w", k, err)
			}
			s.Peers = append(s.Peers, PeerState{PublicKey: crypto.PublicKey(pub)})
			p = &s.Peers[len(s.Peers)-1]
			continue
		}
		if err := stateLine(s, p, k, v, &sec, &nsec); err != nil {
			return nil, fmt.Errorf("read state: %s=%s: %w", k, v, err)
		}
	}
}

// stateLine stores one key of a get reply in s (p == nil) or in peer p.
func stateLine(s *State, p *PeerState, k, v string, sec, nsec *int64) error {
	var err error
	if p == nil {
		switch k {
		case "private_key":
			var raw [crypto.KeySize]byte
			raw, err = parseKey(v)
			s.PrivateKey = crypto.PrivateKey(raw)
		case "listen_port":
			s.ListenPort, err = parseUint[uint16](v, 16)
		case "fwmark":
			s.FwMark, err = parseUint[uint32](v, 32)
		default:
			if e := (Extra{Key: k, Value: v}); isExtra(e) {
				s.Extras = append(s.Extras, e)
				return nil
			}
			reason, ok := strings.CutPrefix(k, dropPrefix)
			if !ok || !isReason(reason) {
				return errors.New("unknown device key")
			}
			var n uint64
			n, err = strconv.ParseUint(v, 10, 64)
			s.Drops = append(s.Drops, Drop{Reason: reason, Count: n})
		}
		return err
	}
	switch k {
	case "preshared_key":
		var raw [crypto.KeySize]byte
		raw, err = parseKey(v)
		p.PresharedKey = crypto.PresharedKey(raw)
	case "protocol_version":
		if v != "1" {
			err = errors.New("unsupported protocol version")
		}
	case "endpoint":
		p.Endpoint, err = netip.ParseAddrPort(v)
	case "last_handshake_time_sec":
		*sec, err = strconv.ParseInt(v, 10, 64)
	case "last_handshake_time_nsec":
		*nsec, err = strconv.ParseInt(v, 10, 64)
	case "tx_bytes":
		p.TxBytes, err = strconv.ParseUint(v, 10, 64)
	case "rx_bytes":
		p.RxBytes, err = strconv.ParseUint(v, 10, 64)
	case "persistent_keepalive_interval":
		p.PersistentKeepalive, err = parseUint[uint16](v, 16)
	case "allowed_ip":
		var prefix netip.Prefix
		prefix, err = netip.ParsePrefix(v)
		p.AllowedIPs = append(p.AllowedIPs, prefix)
	default:
		if e := (Extra{Key: k, Value: v}); isExtra(e) {
			p.Extras = append(p.Extras, e)
			return nil
		}
		err = errors.New("unknown peer key")
	}
	return err
}

// AppendChange appends the body of a "set=1" request for c to b, ending
// with the blank line: the request ParseSet reads back as c.
func AppendChange(b []byte, c *Change) []byte {
	if c.PrivateKey != nil {
		b = appendKey(b, "private_key", *c.PrivateKey)
	}
	if c.ListenPort != nil {
		b = appendUint(b, "listen_port", uint64(*c.ListenPort))
	}
	if c.FwMark != nil {
		b = appendUint(b, "fwmark", uint64(*c.FwMark))
	}
	if c.ReplacePeers {
		b = append(b, "replace_peers=true\n"...)
	}
	for i := range c.Peers {
		p := &c.Peers[i]
		b = appendKey(b, "public_key", p.PublicKey)
		if p.Remove {
			b = append(b, "remove=true\n"...)
			continue
		}
		if p.UpdateOnly {
			b = append(b, "update_only=true\n"...)
		}
		if p.PresharedKey != nil {
			b = appendKey(b, "preshared_key", *p.PresharedKey)
		}
		if p.Endpoint != nil {
			b = append(b, "endpoint="...)
			b = p.Endpoint.AppendTo(b)
			b = append(b, '\n')
		}
		if p.PersistentKeepalive != nil {
			b = appendUint(b, "persistent_keepalive_interval", uint64(*p.PersistentKeepalive))
		}
		if p.ReplaceAllowedIPs {
			b = append(b, "replace_allowed_ips=true\n"...)
		}
		for _, a := range p.AllowedIPs {
			b = append(b, "allowed_ip="...)
			if a.Remove {
				b = append(b, '-')
			}
			b = a.Prefix.AppendTo(b)
			b = append(b, '\n')
		}
	}
	return append(b, '\n')
}
