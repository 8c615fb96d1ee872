package tunnel

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenvpn/warren/device/tun/tuntest"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/transport/transporttest"
	"github.com/warrenvpn/warren/uapi"
)

// removedError is how an adapter reports its interface deleted from
// outside (the Adapter contract; device/tun.ErrRemoved has this method).
type removedError struct{ removed bool }

func (e removedError) Error() string { return fmt.Sprintf("interface gone (removed %v)", e.removed) }
func (e removedError) Removed() bool { return e.removed }

// failingAdapter is a Memory adapter whose Read returns err once fail is
// closed.
type failingAdapter struct {
	*tuntest.Memory
	fail chan struct{}
	err  error
}

func (a *failingAdapter) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-a.fail:
		return 0, a.err
	default:
	}
	return a.Memory.Read(bufs, sizes, offset)
}

// TestAdapterFailures checks how the end of the adapter ends the engine:
// removal from outside is a normal stop (Done closes, Err matches
// ErrAdapterRemoved, Close reports nothing), an error that is not a removal
// is retried and then fatal (Close reports it), and Close itself reports
// nothing.
func TestAdapterFailures(t *testing.T) {
	errGone := removedError{removed: true}
	errOther := removedError{removed: false}
	tests := []struct {
		name      string
		err       error // Read's error once failing; nil: no failure, just Close
		wantErr   error // Err once Done
		wantClose error // Close
	}{
		{"removed", errGone, ErrAdapterRemoved, nil},
		{"removed wrapped", fmt.Errorf("read TUN: %w", errGone), ErrAdapterRemoved, nil},
		{"read fails for good", errOther, errOther, errOther},
		{"closed", nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t)
			ad := &failingAdapter{Memory: tuntest.NewMemory(tuntest.MemoryOptions{}), fail: make(chan struct{}), err: tc.err}
			nw := transporttest.NewNetwork(transporttest.Config{})
			tr, err := nw.NewTransport(outerA)
			if err != nil {
				t.Fatal(err)
			}
			e := newEngine(ad, tr, Options{TickInterval: -1})
			e.retryDelay = time.Millisecond
			e.wg.Go(e.readLoop)
			if tc.err == nil {
				if err := e.Close(); err != nil {
					t.Errorf("Close = %v, want nil", err)
				}
				select {
				case <-e.Done():
					t.Errorf("Done closed by Close (Err %v)", e.Err())
				default:
				}
				return
			}
			close(ad.fail)
			waitFor(t, e.Done(), "Done")
			if err := e.Err(); !errors.Is(err, tc.wantErr) {
				t.Errorf("Err = %v, want %v", err, tc.wantErr)
			}
			if err := e.Close(); !errors.Is(err, tc.wantClose) || (tc.wantClose == nil && err != nil) {
				t.Errorf("Close = %v, want %v", err, tc.wantClose)
			}
			if err := e.Close(); !errors.Is(err, tc.wantClose) || (tc.wantClose == nil && err != nil) {
				t.Errorf("second Close = %v, want %v", err, tc.wantClose)
			}
		})
	}
}

// TestRebindRestoreFails covers a fwmark change whose new socket cannot be
// bound: the old one is restored; if that fails too, the engine has no
// socket and fails with an error naming the port, which Close returns.
func TestRebindRestoreFails(t *testing.T) {
	errBind := errors.New("bind refused")
	errRestore := errors.New("restore refused")
	tests := []struct {
		name      string
		restore   bool // the second Rebind call (the restore) succeeds
		wantFatal bool
	}{
		{"restored", true, false},
		{"restore fails", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Check(t)
			nw := transporttest.NewNetwork(transporttest.Config{})
			tr, err := nw.NewTransport(outerA)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex // guards calls
			var calls []string
			rebind := func(port uint16, mark uint32) (Transport, error) {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, fmt.Sprintf("%d/%#x", port, mark))
				if len(calls) == 1 || !tc.restore {
					return nil, []error{errBind, errRestore}[min(len(calls)-1, 1)]
				}
				return nw.NewTransport(outerA)
			}
			e := New(tuntest.NewMemory(tuntest.MemoryOptions{}), tr, Options{TickInterval: -1, Rebind: rebind})
			t.Cleanup(func() { e.Close() })
			mark := uint32(0x51820)
			err = e.Apply(&uapi.Change{FwMark: &mark})
			var uerr *uapi.Error
			if !errors.As(err, &uerr) || uerr.Errno != uapi.ErrnoPortInUse {
				t.Errorf("Apply = %v, want ErrnoPortInUse", err)
			}
			mu.Lock()
			if got, want := strings.Join(calls, " "), "51820/0x51820 51820/0x0"; got != want {
				t.Errorf("Rebind calls %q, want %q", got, want)
			}
			mu.Unlock()
			if !tc.wantFatal {
				select {
				case <-e.Done():
					t.Fatalf("Done after a restored rebind: %v", e.Err())
				default:
				}
				if err := e.Close(); err != nil {
					t.Errorf("Close = %v, want nil", err)
				}
				return
			}
			waitFor(t, e.Done(), "Done")
			err = e.Err()
			if !errors.Is(err, errRestore) || !strings.Contains(err.Error(), "UDP port 51820") || strings.Contains(err.Error(), "\n") {
				t.Errorf("Err = %q, want one line naming UDP port 51820 and wrapping the restore error", err)
			}
			if cerr := e.Close(); cerr != err {
				t.Errorf("Close = %v, want %v", cerr, err)
			}
		})
	}
}

// TestReceiveClosedForGood checks that the receive loop, waiting on a
// socket closed by a rebind, returns once the rebind has failed for good
// instead of waiting for a replacement that never comes.
func TestReceiveClosedForGood(t *testing.T) {
	leakcheck.Check(t)
	nw := transporttest.NewNetwork(transporttest.Config{})
	tr, err := nw.NewTransport(outerA)
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(tuntest.NewMemory(tuntest.MemoryOptions{}), tr, Options{TickInterval: -1})
	stopped := make(chan struct{})
	e.wg.Go(func() {
		e.receiveLoop()
		close(stopped)
	})
	tr.Close()
	e.setFatal(net.ErrClosed)
	waitFor(t, stopped, "the receive loop to stop")
	e.Close()
}

// droppedError is how an adapter reports a malformed packet it read and
// discarded (the Adapter contract; device/tun's read errors have it).
type droppedError struct{}

func (droppedError) Error() string { return "packet dropped: bad virtio header" }
func (droppedError) Dropped() bool { return true }

// droppingAdapter is a Memory adapter whose first reads each report one
// discarded packet; done is closed once they are used up.
type droppingAdapter struct {
	*tuntest.Memory
	left atomic.Int32
	done chan struct{}
}

func (a *droppingAdapter) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	switch n := a.left.Add(-1); {
	case n > 0:
		return 0, fmt.Errorf("read TUN: %w", droppedError{})
	case n == 0:
		close(a.done)
		return 0, fmt.Errorf("read TUN: %w", droppedError{})
	}
	return a.Memory.Read(bufs, sizes, offset)
}

// TestAdapterDropsMalformed checks that malformed packets the adapter
// discards are counted and cost no pause: many more of them than
// maxReadFailures, with a retry delay far beyond the test's time, neither
// stop the engine nor stall it.
func TestAdapterDropsMalformed(t *testing.T) {
	leakcheck.Check(t)
	const malformed = 10 * maxReadFailures
	ad := &droppingAdapter{Memory: tuntest.NewMemory(tuntest.MemoryOptions{}), done: make(chan struct{})}
	ad.left.Store(malformed)
	nw := transporttest.NewNetwork(transporttest.Config{})
	tr, err := nw.NewTransport(outerA)
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(ad, tr, Options{TickInterval: -1})
	e.retryDelay = time.Hour
	e.wg.Go(e.readLoop)
	defer e.Close()
	waitFor(t, ad.done, "the malformed reads")
	// The loop is back in Memory.Read once the counter is complete.
	deadline := time.Now().Add(10 * time.Second)
	for e.Drops(DropAdapterMalformed) != malformed && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := e.Drops(DropAdapterMalformed); got != malformed {
		t.Errorf("adapter_malformed drops = %d, want %d", got, malformed)
	}
	select {
	case <-e.Done():
		t.Errorf("engine stopped after malformed packets: %v", e.Err())
	default:
	}
}
