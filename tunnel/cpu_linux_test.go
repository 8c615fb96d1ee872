package tunnel

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user and system) the process has used,
// which, unlike wall time, other processes on a busy machine do not
// inflate.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
