// Package leakcheck fails a test whose goroutines outlive it (the idea of
// wireguard-go's goroutineLeakCheck). Tests only.
package leakcheck

import (
	"runtime"
	"testing"
	"time"
)

// timeout is how long Check waits for goroutines to finish after a test's
// other cleanups: goroutines exit asynchronously after Close returns.
const timeout = 5 * time.Second

// Check records the goroutine count now and, when t ends (after every
// cleanup registered later), fails t with all stacks if more goroutines are
// running than before, 5 s after the cleanups ran.
func Check(t testing.TB) {
	t.Helper()
	check(t, timeout)
}

// check is Check with the wait as a parameter, so that its own test need
// not wait 5 s to see a leak reported.
func check(t testing.TB, wait time.Duration) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(wait)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf)
				return
			}
			runtime.Gosched()
			time.Sleep(time.Millisecond)
		}
	})
}
