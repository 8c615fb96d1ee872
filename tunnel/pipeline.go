package tunnel

// Pipelines (DESIGN.md "Goroutines"). The engine moves packets through one
// or more independent pipelines. Each owns one adapter queue (a queue of a
// multi-queue TUN) and one transport (a UDP socket of an SO_REUSEPORT
// group), and runs its own readLoop and receiveLoop on its own buffers.
// The kernel spreads flows over the queues and the sockets by a hash of the
// flow, so one flow stays on one pipeline, in order, while many flows use
// many cores.
//
// Pipeline 0 is the adapter and transport given to New (Engine.adapter and
// Engine.tr); Options.Pipelines adds the others. Everything else is shared
// and already safe for concurrent use: peers (peer.mu), keypairs (an atomic
// send counter, a locked replay window), the index table, the allowed-IPs
// table, the counters. A handshake message or a staged packet goes out on
// pipeline 0's transport, which has the same port as the others.

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// Pipeline is one more adapter queue and transport beside the pair given
// to New (Options.Pipelines).
type Pipeline struct {
	Adapter   Adapter
	Transport Transport
}

// pipeline is a running pipeline other than pipeline 0.
type pipeline struct {
	index   int
	adapter Adapter
	tr      atomic.Pointer[transportBox] // replaced by a rebind
}

// addPipelines makes the pipelines after 0, or in layer 2 mode closes
// what they were given.
func (e *Engine) addPipelines(pls []Pipeline) {
	for i, pl := range pls {
		if e.l2 != nil {
			pl.Transport.Close()
			pl.Adapter.Close()
			continue
		}
		p := &pipeline{index: i + 1, adapter: pl.Adapter}
		p.tr.Store(newTransportBox(pl.Transport))
		e.extra = append(e.extra, p)
	}
}

// Pipelines returns how many pipelines the engine runs.
func (e *Engine) Pipelines() int { return 1 + len(e.extra) }

// DataPathCores is how many cores the data path keeps busy when each
// pipeline's two directions take turns on one: its pipelines and its
// crypto helpers.
func (e *Engine) DataPathCores() int {
	n := e.Pipelines()
	if e.helpers != nil {
		n += e.helpers.n
	}
	return n
}

// adapterOf returns pipe's adapter; nil is pipeline 0.
func (e *Engine) adapterOf(pipe *pipeline) Adapter {
	if pipe == nil {
		return e.adapter
	}
	return pipe.adapter
}

// boxOf returns where pipe's transport is kept; nil is pipeline 0.
func (e *Engine) boxOf(pipe *pipeline) *atomic.Pointer[transportBox] {
	if pipe == nil {
		return &e.tr
	}
	return &pipe.tr
}

// transportOf returns pipe's current transport; nil is pipeline 0.
func (e *Engine) transportOf(pipe *pipeline) Transport {
	return e.boxOf(pipe).Load().Transport
}

// startPipelines starts the loops of every pipeline.
func (e *Engine) startPipelines() {
	e.wg.Go(e.readLoop)
	e.wg.Go(e.receiveLoop)
	for _, p := range e.extra {
		e.wg.Go(func() { e.readPipe(p) })
		e.wg.Go(func() { e.receivePipe(p) })
	}
}

// openTransports opens one transport per pipeline on port and mark for a
// rebind: with RebindPipelines in one call, else with Rebind once per
// pipeline, the first choosing the port when port is 0. On failure none
// stays open.
func (e *Engine) openTransports(port uint16, mark uint32) ([]Transport, error) {
	n := e.Pipelines()
	if e.rebindN != nil && n > 1 {
		trs, err := e.rebindN(port, mark, n)
		if err != nil {
			return nil, err
		}
		if len(trs) != n {
			closeAll(trs)
			return nil, fmt.Errorf("opened %d transports for %d pipelines", len(trs), n)
		}
		return trs, nil
	}
	if e.rebind == nil {
		return nil, errRebind
	}
	trs := make([]Transport, 0, n)
	for range n {
		tr, err := e.rebind(port, mark)
		if err != nil {
			closeAll(trs)
			return nil, err
		}
		trs = append(trs, tr)
		if p := portOf(tr); p != 0 {
			port = p
		}
	}
	return trs, nil
}

// canRebind reports whether the engine can open transports.
func (e *Engine) canRebind() bool {
	return e.rebind != nil || (e.rebindN != nil && e.Pipelines() > 1)
}

func closeAll(trs []Transport) {
	for _, tr := range trs {
		tr.Close()
	}
}

// replaceTransports makes trs the pipelines' transports, in order, and
// closes the old ones; each receive loop moves over when its Receive fails.
func (e *Engine) replaceTransports(trs []Transport) {
	e.replaceTransport(trs[0])
	for i, p := range e.extra {
		old := p.tr.Swap(newTransportBox(trs[i+1]))
		close(old.replaced)
		old.Close()
	}
}

// closeTransports closes every pipeline's transport (a rebind that keeps
// the port must free it first).
func (e *Engine) closeTransports() {
	e.tr.Load().Close()
	for _, p := range e.extra {
		p.tr.Load().Close()
	}
}

// closePipelines closes the transports and adapters of the pipelines other
// than 0 and returns the errors other than net.ErrClosed.
func (e *Engine) closePipelines() []error {
	var errs []error
	for _, p := range e.extra {
		if err := p.tr.Load().Close(); err != nil && !isClosedErr(err) {
			errs = append(errs, err)
		}
		if err := p.adapter.Close(); err != nil && !isClosedErr(err) {
			errs = append(errs, err)
		}
	}
	return errs
}

// errQueueLost is the fatal error when a pipeline's adapter was closed
// while the engine runs: one lost queue stops the whole interface, as a
// removed one does.
var errQueueLost = errors.New("adapter queue closed")

func isClosedErr(err error) bool { return errors.Is(err, net.ErrClosed) }

// pipeOf returns pipeline i (nil for 0).
func (e *Engine) pipeOf(i int) *pipeline {
	if i == 0 {
		return nil
	}
	return e.extra[i-1]
}

// sendGate keeps one peer's pipelines from drifting apart further than the
// receiver's replay window tolerates. The pipelines share the peer's
// keypair, so each batch takes its nonces from one counter; a batch whose
// pipeline is held up between sealing and sending (its thread descheduled
// on a busy machine) arrives after the batches sealed meanwhile, and once
// more than ReplayWindowSize counters came after it the receiver drops it
// as too old. So a batch starts only while every batch of the same peer
// still in flight started at most maxLag batches ago: with batches of at
// most B packets, a batch arrives at most (maxLag+1)*B counters late,
// which maxLag keeps within half the window, whatever the number of
// pipelines. An engine with one pipeline has no gate.
type sendGate struct {
	seq   atomic.Uint64                   // batches started
	slots atomic.Pointer[[]atomic.Uint64] // per pipeline: seq of its batch in flight, 0 none
}

// enterGate waits until a batch of p may start on pipe and records it.
func (e *Engine) enterGate(p *peer, pipe *pipeline) {
	if len(e.extra) == 0 {
		return
	}
	slots := p.gate.slots.Load()
	if slots == nil {
		s := make([]atomic.Uint64, e.Pipelines())
		if !p.gate.slots.CompareAndSwap(nil, &s) {
			slots = p.gate.slots.Load()
		} else {
			slots = &s
		}
	}
	i := pipeIndex(pipe)
	s := p.gate.seq.Add(1)
	for j := range *slots {
		if j == i {
			continue
		}
		for spins := 0; ; spins++ {
			v := (*slots)[j].Load()
			if v == 0 || s-v <= e.maxLag || e.isClosing() {
				break
			}
			e.gateWaits.Add(1)
			if spins < 100 {
				runtime.Gosched()
			} else {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
	(*slots)[i].Store(s)
}

// leaveGate records that pipe's batch of p was handed to the transport.
func (e *Engine) leaveGate(p *peer, pipe *pipeline) {
	if len(e.extra) == 0 {
		return
	}
	(*p.gate.slots.Load())[pipeIndex(pipe)].Store(0)
}

func pipeIndex(pipe *pipeline) int {
	if pipe == nil {
		return 0
	}
	return pipe.index
}

// gateLag returns maxLag for batches of up to batch packets.
func gateLag(batch int) uint64 {
	return uint64(max(1, crypto.ReplayWindowSize/2/max(batch, 1)-1))
}

// maxBatch returns the most packets one batch of any pipeline holds.
func (e *Engine) maxBatch() int {
	n := batchSize(e.adapter.BatchSize())
	for _, p := range e.extra {
		n = max(n, batchSize(p.adapter.BatchSize()))
	}
	return n
}

// pipelineExtras returns, with several pipelines, their number as a
// get=warren line (`warren show` prints "threads: N"):
//
//	warren_threads=<pipelines>
func (e *Engine) pipelineExtras() []uapi.Extra {
	if len(e.extra) == 0 {
		return nil
	}
	return []uapi.Extra{{Key: "warren_threads", Value: strconv.Itoa(e.Pipelines())}}
}
