package uapi

import (
	"io"
	"strconv"
)

// flushAt is the buffered size at which WriteState hands its output to the
// writer, so that a state with 100,000s of allowed IPs is not built whole.
const flushAt = 32 << 10

// dropPrefix starts the key of a drop counter in a "get=warren" reply.
const dropPrefix = "warren_drop_"

// WriteState writes the body of a "get=1" reply for s (every key=value line,
// without the errno line), in wireguard-go's order and format. s.Drops and
// the Extras are not part of it.
func WriteState(w io.Writer, s *State) error { return writeState(w, s, false) }

// writeState is WriteState, with s.Drops and the Extras when warren is set
// (a "get=warren" reply).
func writeState(w io.Writer, s *State, warren bool) error {
	b := make([]byte, 0, flushAt+512)
	flush := func() error {
		_, err := w.Write(b)
		b = b[:0]
		return err
	}
	if !s.PrivateKey.IsZero() {
		b = appendKey(b, "private_key", s.PrivateKey)
	}
	if s.ListenPort != 0 {
		b = appendUint(b, "listen_port", uint64(s.ListenPort))
	}
	if s.FwMark != 0 {
		b = appendUint(b, "fwmark", uint64(s.FwMark))
	}
	if warren {
		for _, d := range s.Drops {
			if d.Count != 0 && isReason(d.Reason) {
				b = appendUint(b, dropPrefix+d.Reason, d.Count)
			}
		}
		b = appendExtras(b, s.Extras)
	}
	for i := range s.Peers {
		p := &s.Peers[i]
		b = appendKey(b, "public_key", p.PublicKey)
		b = appendKey(b, "preshared_key", p.PresharedKey)
		b = append(b, "protocol_version=1\n"...)
		if p.Endpoint.IsValid() {
			b = append(b, "endpoint="...)
			b = p.Endpoint.AppendTo(b)
			b = append(b, '\n')
		}
		var sec, nsec int64
		if !p.LastHandshake.IsZero() {
			nano := p.LastHandshake.UnixNano()
			sec, nsec = nano/1e9, nano%1e9
		}
		b = appendInt(b, "last_handshake_time_sec", sec)
		b = appendInt(b, "last_handshake_time_nsec", nsec)
		b = appendUint(b, "tx_bytes", p.TxBytes)
		b = appendUint(b, "rx_bytes", p.RxBytes)
		b = appendUint(b, "persistent_keepalive_interval", uint64(p.PersistentKeepalive))
		for _, prefix := range p.AllowedIPs {
			b = append(b, "allowed_ip="...)
			b = prefix.AppendTo(b)
			b = append(b, '\n')
			if len(b) >= flushAt {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if warren {
			b = appendExtras(b, p.Extras)
		}
		if len(b) >= flushAt {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// appendExtras appends the valid extras of es as key=value lines.
func appendExtras(b []byte, es []Extra) []byte {
	for _, e := range es {
		if isExtra(e) {
			b = append(b, e.Key...)
			b = append(b, '=')
			b = append(b, e.Value...)
			b = append(b, '\n')
		}
	}
	return b
}

func appendKey[K ~[32]byte](b []byte, name string, k K) []byte {
	const digits = "0123456789abcdef"
	b = append(b, name...)
	b = append(b, '=')
	for _, c := range k {
		b = append(b, digits[c>>4], digits[c&0xf])
	}
	return append(b, '\n')
}

func appendUint(b []byte, name string, v uint64) []byte {
	b = append(b, name...)
	b = append(b, '=')
	b = strconv.AppendUint(b, v, 10)
	return append(b, '\n')
}

func appendInt(b []byte, name string, v int64) []byte {
	b = append(b, name...)
	b = append(b, '=')
	b = strconv.AppendInt(b, v, 10)
	return append(b, '\n')
}
