package lifecycle

import (
	"runtime"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/tunnel"
)

// DefaultThreads is the number of pipelines when the config sets no
// Threads: one per two cores, since each pipeline keeps two goroutines
// busy under load (reading and sealing, receiving and opening), so one
// already fills a machine of two cores; at most config.MaxThreads.
//
// On the 2-core machine of issue 10, shared with other work, two pipelines
// measured no better than one in warren bench (six alternating runs of
// --runs 3 --duration 5s: throughput within the noise, RTT p50 higher with
// two), so one it is there; machines with more cores were not measured.
func DefaultThreads() int {
	return max(1, min(runtime.NumCPU()/2, config.MaxThreads))
}

// threads returns how many pipelines ifc runs: Threads, else
// DefaultThreads (1 with openers injected for one adapter); Mode = tap
// runs one (a multi-queue TAP is not done).
func (t *Tunnel) threads(ifc *config.Interface) int {
	switch {
	case ifc.Mode == config.ModeTAP:
		return 1
	case ifc.Threads > 0:
		return ifc.Threads
	case t.opts.onePipeline:
		return 1
	}
	return DefaultThreads()
}

// openQueues is step 5 with several pipelines: n queues of one multi-queue
// TUN. Until the engine owns them, the undo stack closes them. The first
// is the engine's adapter, the others go to t.pipelines with the
// transports listenGroup adds.
func (t *Tunnel) openQueues(mtu, n int) (tunnel.Adapter, error) {
	qs, err := t.opts.OpenAdapterQueues(t.name, mtu, n)
	if err != nil {
		return nil, err
	}
	t.undo.push(func() error {
		if t.eng != nil {
			return nil // the engine closed them
		}
		return closeAll(qs)
	})
	t.pipelines = make([]tunnel.Pipeline, 0, n-1)
	for _, q := range qs[1:] {
		t.pipelines = append(t.pipelines, tunnel.Pipeline{Adapter: q})
	}
	return qs[0], nil
}

// listenGroup is step 6 with several pipelines: one socket per pipeline on
// one port (an SO_REUSEPORT group). Until the engine owns them, the undo
// stack closes them.
func (t *Tunnel) listenGroup(port uint16, mark uint32) (tunnel.Transport, error) {
	trs, err := t.opts.ListenGroup(port, mark, len(t.pipelines)+1)
	if err != nil {
		return nil, err
	}
	t.undo.push(func() error {
		if t.eng != nil {
			return nil // the engine closed them
		}
		return closeAll(trs)
	})
	for i := range t.pipelines {
		t.pipelines[i].Transport = trs[i+1]
	}
	if p, ok := trs[0].(interface{ Port() uint16 }); ok {
		t.listenPort = p.Port()
	}
	return trs[0], nil
}

// closeAll closes each of cs and returns the first error.
func closeAll[C interface{ Close() error }](cs []C) error {
	var first error
	for _, c := range cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
