package gomaxprocs

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestObserve walks a Governor with Low 1 and High 2 through windows of
// CPU use: up after two windows at 90 % of a core or more, down after five
// at 75 % or less, and a window in between resets either count.
func TestObserve(t *testing.T) {
	tests := []struct {
		name string
		busy []float64
		want []int // Ps after each window
	}{
		{"idle stays low", []float64{0, 0.1, 0.5, 0.89}, []int{1, 1, 1, 1}},
		{"busy goes high after two windows", []float64{0.95, 1.0}, []int{1, 2}},
		{"one busy window is not enough", []float64{0.95, 0.5, 0.95, 0.3}, []int{1, 1, 1, 1}},
		{"high stays while busy", []float64{0.9, 0.9, 1.5, 0.8, 0.76, 1.2}, []int{1, 2, 2, 2, 2, 2}},
		{"high goes low after five quiet windows", []float64{0.9, 0.9, 0.7, 0.7, 0.7, 0.7, 0.75}, []int{1, 2, 2, 2, 2, 2, 1}},
		{"a busy window restarts the quiet count", []float64{0.9, 0.9, 0.7, 0.7, 0.7, 0.7, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7}, []int{1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := &Governor{Low: 1, High: 2}
			var got []int
			for _, b := range tc.busy {
				n, _ := g.Observe(b)
				got = append(got, n)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Ps %v, want %v", got, tc.want)
			}
		})
	}
}

// TestObserveScales: the thresholds are shares of Low cores, so a process
// with four pipelines goes high only when it keeps about four cores busy.
func TestObserveScales(t *testing.T) {
	g := &Governor{Low: 4, High: 16}
	for _, b := range []float64{3.5, 3.5} {
		if n, changed := g.Observe(b); changed || n != 4 {
			t.Fatalf("at %.1f cores: %d Ps (changed %v), want 4", b, n, changed)
		}
	}
	g.Observe(3.7)
	if n, changed := g.Observe(3.7); !changed || n != 16 {
		t.Fatalf("at 3.7 of 4 cores twice: %d Ps (changed %v), want 16", n, changed)
	}
}

// TestRun: Run sets Low at once, measures CPU over each Interval and sets
// High once the process is busy, until its context ends; a Governor whose
// High is not above Low sets nothing.
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var cpu time.Duration
		var set []int
		g := &Governor{
			Low: 1, High: 2, Interval: time.Second,
			CPU: func() (time.Duration, error) {
				mu.Lock()
				defer mu.Unlock()
				return cpu, nil
			},
			Set: func(n int) {
				mu.Lock()
				defer mu.Unlock()
				set = append(set, n)
			},
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			g.Run(ctx)
		}()
		synctest.Wait()
		for range 3 {
			mu.Lock()
			cpu += 950 * time.Millisecond // 95 % of a core per window
			mu.Unlock()
			time.Sleep(time.Second)
			synctest.Wait()
		}
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(set, []int{1, 2}) {
			t.Errorf("Set calls %v, want [1 2]", set)
		}
	})

	g := &Governor{Low: 2, High: 2, Set: func(n int) { t.Errorf("Set(%d) with High = Low", n) }}
	g.Run(t.Context())
}
