package leakcheck

import (
	"testing"
	"time"
)

// recorder is a testing.TB that keeps its cleanups and failures.
type recorder struct {
	testing.TB
	cleanups []func()
	failed   bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Cleanup(f func())      { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) run() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestCheck(t *testing.T) {
	ok := &recorder{TB: t}
	Check(ok)
	done := make(chan struct{})
	go func() { <-done }()
	close(done)
	ok.run()
	if ok.failed {
		t.Errorf("Check failed a test whose goroutine ended")
	}
}

// testWait stands in for timeout in the tests: long enough for a goroutine
// that was told to stop to end, short enough to keep the tests quick.
const testWait = 50 * time.Millisecond

func TestCheckLeak(t *testing.T) {
	leaky := &recorder{TB: t}
	check(leaky, testWait)
	// Several leaks, so that a goroutine of an earlier test ending meanwhile
	// cannot hide them from the count.
	stop := make(chan struct{})
	for range 3 {
		go func() { <-stop }()
	}
	start := time.Now()
	leaky.run()
	close(stop)
	if !leaky.failed {
		t.Errorf("check did not report goroutines that outlived the test")
	}
	if waited := time.Since(start); waited < testWait {
		t.Errorf("check reported a leak after %v, before its wait of %v", waited, testWait)
	}
}

// TestCheckWaits checks that goroutines still ending after the test's
// cleanups are given time to finish and not reported.
func TestCheckWaits(t *testing.T) {
	slow := &recorder{TB: t}
	check(slow, 10*time.Second)
	stop := make(chan struct{})
	go func() { <-stop }()
	go func() {
		time.Sleep(testWait)
		close(stop)
	}()
	slow.run()
	if slow.failed {
		t.Errorf("check reported goroutines that ended within its wait")
	}
}
