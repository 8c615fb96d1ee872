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

func TestCheckLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for Timeout")
	}
	leaky := &recorder{TB: t}
	Check(leaky)
	// Several leaks, so that a goroutine of an earlier test ending meanwhile
	// cannot hide them from the count.
	stop := make(chan struct{})
	for range 3 {
		go func() { <-stop }()
	}
	start := time.Now()
	leaky.run()
	close(stop)
	if !leaky.failed || time.Since(start) < Timeout {
		t.Errorf("Check did not report a goroutine that outlived the test")
	}
}
