package tuntest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func packets(n, size int) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = bytes.Repeat([]byte{byte(i + 1)}, size)
	}
	return pkts
}

func buffers(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

func TestMemoryRead(t *testing.T) {
	const offset = 16
	tests := []struct {
		name     string
		batch    int
		injected int
		bufs     int
		bufSize  int
		want     []int // packets per Read
		wantErr  error
	}{
		{name: "one", batch: 4, injected: 1, bufs: 4, bufSize: 100, want: []int{1}},
		{name: "batch limit", batch: 4, injected: 10, bufs: 8, bufSize: 100, want: []int{4, 4, 2}},
		{name: "buffer limit", batch: 8, injected: 5, bufs: 2, bufSize: 100, want: []int{2, 2, 1}},
		{name: "short buffer", batch: 8, injected: 1, bufs: 8, bufSize: offset + 10, want: []int{0}, wantErr: io.ErrShortBuffer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemory(MemoryOptions{BatchSize: tc.batch})
			defer m.Close()
			in := packets(tc.injected, 20)
			if err := m.Inject(in...); err != nil {
				t.Fatalf("Inject: %v", err)
			}
			var got [][]byte
			var counts []int
			for range tc.want {
				bufs, sizes := buffers(tc.bufs, tc.bufSize)
				n, err := m.Read(bufs, sizes, offset)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Read() error = %v, want %v", err, tc.wantErr)
				}
				counts = append(counts, n)
				for i := range n {
					got = append(got, bufs[i][offset:offset+sizes[i]])
				}
			}
			if diff := cmp.Diff(counts, tc.want); diff != "" {
				t.Errorf("packets per Read (-got +want):\n%s", diff)
			}
			if tc.wantErr == nil {
				if diff := cmp.Diff(got, in); diff != "" {
					t.Errorf("packets read (-got +want):\n%s", diff)
				}
			}
		})
	}
}

func TestMemoryWrite(t *testing.T) {
	tests := []struct {
		name    string
		batch   int
		writes  []int // packets per Write
		offset  int
		wantErr bool
	}{
		{name: "single", batch: 4, writes: []int{1}, offset: 16},
		{name: "batches", batch: 4, writes: []int{4, 3, 0, 1}, offset: 16},
		{name: "no offset", batch: 4, writes: []int{2}, offset: 0},
		{name: "over batch", batch: 2, writes: []int{3}, offset: 16, wantErr: true},
		{name: "offset past buffer", batch: 4, writes: []int{1}, offset: 100, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemory(MemoryOptions{BatchSize: tc.batch})
			var want [][]byte
			for _, n := range tc.writes {
				pkts := packets(n, 30)
				bufs := make([][]byte, n)
				for i, p := range pkts {
					bufs[i] = append(make([]byte, min(tc.offset, 16)), p...)
				}
				got, err := m.Write(bufs, tc.offset)
				if (err != nil) != tc.wantErr {
					t.Fatalf("Write() = %d, %v; want error %v", got, err, tc.wantErr)
				}
				if err == nil {
					if got != n {
						t.Errorf("Write() = %d, want %d", got, n)
					}
					want = append(want, pkts...)
				}
			}
			m.Close()
			var got [][]byte
			for p := range m.Written() {
				got = append(got, p)
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("written packets (-got +want):\n%s", diff)
			}
		})
	}
}

// TestMemoryClose covers L7: Close twice, Close right after construction,
// and Close waking calls blocked in Read, Write and Inject.
func TestMemoryClose(t *testing.T) {
	tests := []struct {
		name string
		op   func(m *Memory) error
	}{
		{"read", func(m *Memory) error {
			bufs, sizes := buffers(1, 100)
			_, err := m.Read(bufs, sizes, 0)
			return err
		}},
		{"write full queue", func(m *Memory) error {
			_, err := m.Write(packets(2, 10), 0) // queue holds 1
			return err
		}},
		{"inject full queue", func(m *Memory) error {
			return m.Inject(packets(2, 10)...)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name+" blocked", func(t *testing.T) {
			m := NewMemory(MemoryOptions{Queue: 1})
			errc := make(chan error, 1)
			go func() { errc <- tc.op(m) }()
			m.Close()
			if err := <-errc; !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s during Close = %v, want net.ErrClosed", tc.name, err)
			}
		})
		t.Run(tc.name+" after", func(t *testing.T) {
			m := NewMemory(MemoryOptions{})
			if err := m.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := m.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := tc.op(m); !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s after Close = %v, want net.ErrClosed", tc.name, err)
			}
		})
	}
}

// TestMemoryConcurrent runs reader, writer, injector and Close at once for
// the race detector.
func TestMemoryConcurrent(t *testing.T) {
	m := NewMemory(MemoryOptions{BatchSize: 8, Queue: 16})
	const total = 1000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range total {
			if m.Inject([]byte(fmt.Sprint(i))) != nil {
				return
			}
		}
	})
	received := make(chan int, 1)
	wg.Go(func() {
		bufs, sizes := buffers(8, 64)
		out := make([][]byte, 8)
		n := 0
		for n < total {
			k, err := m.Read(bufs, sizes, 0)
			if err != nil {
				break
			}
			for i := range k {
				out[i] = bufs[i][:sizes[i]]
			}
			if _, err := m.Write(out[:k], 0); err != nil {
				break
			}
			n += k
		}
		received <- n
	})
	next := 0
	for p := range m.Written() {
		if got, want := string(p), fmt.Sprint(next); got != want {
			t.Fatalf("packet %d = %q, want %q", next, got, want)
		}
		next++
		if next == total {
			m.Close()
		}
	}
	wg.Wait()
	if n := <-received; n != total {
		t.Errorf("read %d packets, want %d", n, total)
	}
}

func TestMemoryOptions(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	if m.Name() != DefaultName || m.MTU() != DefaultMTU || m.BatchSize() != DefaultBatchSize {
		t.Errorf("defaults = %s, %d, %d; want %s, %d, %d", m.Name(), m.MTU(), m.BatchSize(), DefaultName, DefaultMTU, DefaultBatchSize)
	}
	m.SetMTU(1280)
	if m.MTU() != 1280 {
		t.Errorf("MTU() after SetMTU(1280) = %d", m.MTU())
	}
}
