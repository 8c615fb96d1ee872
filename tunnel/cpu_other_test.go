//go:build !linux

package tunnel

import "time"

// processCPU returns 0: the benchmarks report wall time only here.
func processCPU() time.Duration { return 0 }
