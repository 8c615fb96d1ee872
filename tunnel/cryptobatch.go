package tunnel

// Sealing and opening a batch (DESIGN.md "A packet's way out", "A packet's
// way in"): the shared state of a keypair is touched once per batch, not
// once per packet. A batch's send counters are reserved in one step
// (crypto.Keypair.ReserveCounters), so that message i of the batch carries
// the i-th counter, and the counters of a run of opened packets pass the
// replay window under one lock (crypto.Keypair.AcceptCounters), in order.

// sealBatch seals each msgs[i], a buffer holding sizes[i] bytes of
// plaintext at Offset, in place under kp, padding to mtu; msgs[i] becomes
// the message. The counters are reserved for the whole batch first, in
// msgs' order. It returns how many messages got a counter: those from there
// on are left intact, the keypair having run out (ErrRejectAfterMessages),
// for the caller to stage. A sealed message is empty when its plaintext
// does not fit its buffer (keepSealed drops it). With f (crypto helpers,
// helpers.go) a large batch is shared with the helpers.
func sealBatch(kp *keypair, msgs [][]byte, sizes []int, mtu int, f *fork) int {
	first, got, _ := kp.ReserveCounters(len(msgs))
	if f != nil && got >= helperMinBatch {
		f.run(got, func(p *forkPart, lo, hi int) {
			p.kp, p.msgs, p.sizes, p.mtu, p.first = kp, msgs[lo:hi], sizes[lo:hi], mtu, first+uint64(lo)
		}, func(lo, hi int) { sealRange(kp, msgs[lo:hi], sizes[lo:hi], mtu, first+uint64(lo)) })
		return got
	}
	sealRange(kp, msgs[:got], sizes, mtu, first)
	return got
}

// sealRange seals msgs[i] with counter first+i.
func sealRange(kp *keypair, msgs [][]byte, sizes []int, mtu int, first uint64) {
	for i, b := range msgs {
		m, err := kp.SealCounter(b, sizes[i], mtu, first+uint64(i))
		if err != nil {
			m = 0
		}
		msgs[i] = b[:m]
	}
}

// keepSealed removes the empty messages sealBatch left in msgs, counting
// them as DropSendError, and returns the rest and their bytes.
func (e *Engine) keepSealed(msgs [][]byte) ([][]byte, uint64) {
	var bytes uint64
	k := 0
	for _, m := range msgs {
		if len(m) == 0 {
			e.drops.add(DropSendError, 1)
			continue
		}
		msgs[k] = m
		k++
		bytes += uint64(len(m))
	}
	clear(msgs[k:])
	return msgs[:k], bytes
}

// openBatch opens every datagram i < n of in with a keypair in.kps[i]
// (set by processInbound for the data messages it looked up): in.pts[i]
// and in.ctrs[i] become the plaintext and counter and in.ok[i] true; one
// that fails is counted (DropAuthFailed) and its in.kps[i] set to nil.
// With in.fork (crypto helpers, helpers.go) a large batch is shared with
// the helpers.
func (e *Engine) openBatch(in *inbound, n int) {
	if in.fork != nil && n >= helperMinBatch {
		in.fork.run(n, func(p *forkPart, lo, hi int) { p.in, p.lo, p.hi = in, lo, hi },
			func(lo, hi int) { openRange(in, lo, hi) })
	} else {
		openRange(in, 0, n)
	}
	for i := range n {
		if in.kps[i] != nil && !in.ok[i] {
			in.kps[i] = nil
			e.drops.add(DropAuthFailed, 1)
		}
	}
}

// openRange opens datagrams lo..hi-1 of in (openBatch); it writes only
// their entries.
func openRange(in *inbound, lo, hi int) {
	for i := lo; i < hi; i++ {
		kp := in.kps[i]
		if kp == nil {
			in.ok[i] = false
			continue
		}
		pt, counter, err := kp.Open(in.bufs[i][:in.sizes[i]])
		in.pts[i], in.ctrs[i], in.ok[i] = pt, counter, err == nil
	}
}

// acceptBatch passes the counters of the opened datagrams i < n of in
// through their keypairs' replay windows in batch order, one lock per run
// of datagrams under one keypair; in.ok[i] stays true for those accepted.
func acceptBatch(in *inbound, n int) {
	for i := 0; i < n; {
		kp := in.kps[i]
		if kp == nil || !in.ok[i] {
			i++
			continue
		}
		j := i + 1
		for j < n && (in.kps[j] == kp || in.kps[j] == nil) {
			j++
		}
		kp.AcceptCounters(in.ctrs[i:j], in.ok[i:j])
		i = j
	}
}
