package tunnel

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// batchStats counts what each call of the data path carried, for tuning:
// packets per adapter read and write, datagrams per transport send and
// receive. Each loop adds once per call, never per packet. With debug
// logging on, timerLoop logs the averages every batchStatsEvery.
type batchStats struct {
	adapterRead, transportSend, transportReceive, adapterWrite batchCounter
}

// batchCounter counts calls and the items they carried.
type batchCounter struct {
	calls, items atomic.Uint64
}

func (c *batchCounter) add(items int) {
	c.calls.Add(1)
	c.items.Add(uint64(items))
}

// batchSnapshot is a batchCounter read at one moment.
type batchSnapshot struct{ calls, items uint64 }

func (c *batchCounter) load() batchSnapshot {
	return batchSnapshot{calls: c.calls.Load(), items: c.items.Load()}
}

// average returns the items per call since the earlier snapshot.
func (s batchSnapshot) average(earlier batchSnapshot) float64 {
	calls := s.calls - earlier.calls
	if calls == 0 {
		return 0
	}
	return float64(s.items-earlier.items) / float64(calls)
}

// batchLog remembers the snapshots of the previous debug log.
type batchLog struct {
	read, send, receive, write batchSnapshot
}

// logBatchStats logs, at debug level, the calls and average batch sizes
// since the previous call, if any packet moved.
func (e *Engine) logBatchStats(prev *batchLog) {
	if !e.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	s := &e.batches
	cur := batchLog{
		read:    s.adapterRead.load(),
		send:    s.transportSend.load(),
		receive: s.transportReceive.load(),
		write:   s.adapterWrite.load(),
	}
	if cur == *prev {
		return
	}
	e.log.Debug("batches",
		"adapter_reads", cur.read.calls-prev.read.calls, "packets_per_read", cur.read.average(prev.read),
		"sends", cur.send.calls-prev.send.calls, "datagrams_per_send", cur.send.average(prev.send),
		"receives", cur.receive.calls-prev.receive.calls, "datagrams_per_receive", cur.receive.average(prev.receive),
		"adapter_writes", cur.write.calls-prev.write.calls, "packets_per_write", cur.write.average(prev.write))
	*prev = cur
}
