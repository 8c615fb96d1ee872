package tunnel

// Crypto helpers (DESIGN.md "Goroutines"): long-lived goroutines that seal
// or open parts of one pipeline's large batch, so that one fast flow can
// use cores the pipelines leave spare. Fork and join within the batch: the
// pipeline splits the batch into contiguous parts, one per helper and one
// for itself, offers the helpers' parts on a channel, does its own part,
// then does every offered part no helper has claimed yet, and waits only
// for those a helper claimed. The batch keeps its order (counters are
// reserved for the whole batch before, the replay window sees the counters
// after, and the batch is sent or written in order), so no reorder queue is
// needed; and the pipeline never depends on a helper being scheduled: on a
// busy machine it does the whole batch itself at the cost of a channel
// send per part. Without helpers (the default on a machine with no core
// beyond two per pipeline) sealBatch and openBatch cost one branch.

import (
	"runtime"
	"sync/atomic"
)

// helperMinBatch is the smallest batch shared with helpers: below it waking
// a helper costs more than the part it would seal (measured with
// BenchmarkHelpers).
const helperMinBatch = 16

// helperCount returns the number of crypto helpers for opt (Options.
// CryptoHelpers) with pipelines pipelines: automatic (0) is the cores left
// after two goroutines per pipeline.
func helperCount(opt, pipelines int) int {
	switch {
	case opt > 0:
		return opt
	case opt < 0:
		return 0
	}
	return max(0, runtime.GOMAXPROCS(0)-2*pipelines)
}

// helperPool is the engine's crypto helpers: the channel they take parts
// from. Nil without helpers.
type helperPool struct {
	n    int
	work chan helperOffer
}

// helperOffer offers part p of the batch numbered gen.
type helperOffer struct {
	p   *forkPart
	gen uint64
}

func newHelperPool(n int) *helperPool {
	if n <= 0 {
		return nil
	}
	return &helperPool{n: n, work: make(chan helperOffer, 4*n)}
}

// startHelpers starts e's helpers; they return when the engine closes.
func (e *Engine) startHelpers() {
	if e.helpers == nil {
		return
	}
	for range e.helpers.n {
		e.wg.Go(func() { e.helpers.run(e.done) })
	}
}

// run is one helper: it claims offered parts until done is closed.
func (h *helperPool) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case o := <-h.work:
			if o.p.claim(o.gen) {
				o.p.do()
				o.p.f.finished <- struct{}{}
			}
		}
	}
}

// fork is one pipeline direction's scratch for sharing a batch; nil
// without helpers. Only its owner goroutine forks with it.
type fork struct {
	h        *helperPool
	parts    []forkPart    // the helpers' parts; the owner's is done in place
	finished chan struct{} // a helper finished a part it claimed
	gen      uint64        // the current batch, advanced by 4 per batch
}

// forkPart is one part of a forked batch: a range to seal (kp, msgs,
// sizes, mtu, first) or to open (in, lo, hi).
type forkPart struct {
	f *fork
	// state is gen once offered, gen+1 once claimed (by a helper or by
	// the owner); a stale offer of an earlier batch never claims it.
	state atomic.Uint64

	kp    *keypair
	msgs  [][]byte
	sizes []int
	mtu   int
	first uint64

	in     *inbound
	lo, hi int
}

func (p *forkPart) claim(gen uint64) bool { return p.state.CompareAndSwap(gen, gen+1) }

func (p *forkPart) do() {
	if p.in != nil {
		openRange(p.in, p.lo, p.hi)
	} else {
		sealRange(p.kp, p.msgs, p.sizes, p.mtu, p.first)
	}
}

// newFork returns a fork for one pipeline direction of e, or nil without
// helpers.
func (e *Engine) newFork() *fork {
	h := e.helpers
	if h == nil {
		return nil
	}
	f := &fork{h: h, parts: make([]forkPart, h.n), finished: make(chan struct{}, h.n), gen: 4}
	for i := range f.parts {
		f.parts[i].f = f
		f.parts[i].state.Store(2) // matches no offer
	}
	return f
}

// run does part 0 of n items (own) itself and the parts of the rest as
// described in the file comment; set(p, lo, hi) fills in part p's work.
func (f *fork) run(n int, set func(p *forkPart, lo, hi int), own func(lo, hi int)) {
	parts := len(f.parts) + 1
	step := (n + parts - 1) / parts
	gen := f.gen
	f.gen += 4
	offered := 0
	for i := range f.parts {
		lo, hi := min(n, (i+1)*step), min(n, (i+2)*step)
		if lo == hi {
			break
		}
		p := &f.parts[i]
		set(p, lo, hi)
		p.state.Store(gen)
		offered++
		select {
		case f.h.work <- helperOffer{p, gen}:
		default: // helpers busy: the owner does it below
		}
	}
	own(0, min(n, step))
	claimed := 0 // by helpers
	for i := range offered {
		if p := &f.parts[i]; p.claim(gen) {
			p.do()
		} else {
			claimed++
		}
	}
	for range claimed {
		<-f.finished
	}
	for i := range offered {
		f.parts[i].kp, f.parts[i].msgs, f.parts[i].sizes, f.parts[i].in = nil, nil, nil, nil
	}
}
