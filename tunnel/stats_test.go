package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

var errPartial = errors.New("part of the batch failed")

// partialTransport is a stepTransport whose Send refuses the datagrams at
// the positions in refuse and reports what the others did.
type partialTransport struct {
	*stepTransport
	refuse map[int]bool
	err    error // returned even when nothing is refused
}

func (t *partialTransport) Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error) {
	var pass [][]byte
	for i, b := range bufs {
		if !t.refuse[i] {
			pass = append(pass, b)
		}
	}
	n, err := t.stepTransport.Send(pass, ep, local)
	if len(pass) < len(bufs) {
		err = errors.Join(err, errPartial)
	}
	return n, errors.Join(err, t.err)
}

// partialAdapter is a stepAdapter whose Write takes only the first accept
// packets of a call.
type partialAdapter struct {
	*stepAdapter
	accept int
}

func (a *partialAdapter) Write(bufs [][]byte, offset int) (int, error) {
	k := min(a.accept, len(bufs))
	n, err := a.stepAdapter.Write(bufs[:k], offset)
	if k < len(bufs) {
		err = errors.Join(err, errPartial)
	}
	return n, err
}

// pings returns n packets from a to b numbered from 0.
func pings(n int) [][]byte {
	var pkts [][]byte
	for i := range n {
		pkts = append(pkts, ping(innerA, innerB, fmt.Sprint(i)))
	}
	return pkts
}

// TestSendDropsCountUnsent checks that a send failing for part of a batch
// counts only the datagrams the transport did not take as send_error.
func TestSendDropsCountUnsent(t *testing.T) {
	tests := []struct {
		name      string
		refuse    []int
		err       error
		wantDrops uint64
		want      string // payloads b receives
	}{
		{"all sent", nil, nil, 0, "0,1,2,3,4,5"},
		{"two refused", []int{1, 4}, nil, 2, "0,2,3,5"},
		{"all refused", []int{0, 1, 2, 3, 4, 5}, nil, 6, ""},
		{"error but all sent", nil, errPartial, 0, "0,1,2,3,4,5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := established(t, pairOptions{})
			pt := &partialTransport{stepTransport: p.a.tr, refuse: make(map[int]bool), err: tc.err}
			for _, i := range tc.refuse {
				pt.refuse[i] = true
			}
			p.a.e.tr.Store(newTransportBox(pt))
			p.a.ad.inject(pings(6)...)
			p.run()
			if got := p.a.e.Drops(DropSendError); got != tc.wantDrops {
				t.Errorf("send_error drops = %d, want %d", got, tc.wantDrops)
			}
			if got := payloads(p.b.ad.written()); got != tc.want {
				t.Errorf("b received %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWriteDropsCountUnwritten checks that an adapter write taking only part
// of a batch counts only the packets it did not take as write_error.
func TestWriteDropsCountUnwritten(t *testing.T) {
	tests := []struct {
		accept    int
		wantDrops uint64
		want      string
	}{
		{6, 0, "0,1,2,3,4,5"},
		{4, 2, "0,1,2,3"},
		{0, 6, ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint("accept ", tc.accept), func(t *testing.T) {
			p := established(t, pairOptions{})
			p.b.e.adapter = &partialAdapter{stepAdapter: p.b.ad, accept: tc.accept}
			p.a.ad.inject(pings(6)...)
			p.run()
			if got := p.b.e.Drops(DropWriteError); got != tc.wantDrops {
				t.Errorf("write_error drops = %d, want %d", got, tc.wantDrops)
			}
			if got := payloads(p.b.ad.written()); got != tc.want {
				t.Errorf("written %q, want %q", got, tc.want)
			}
		})
	}
}
