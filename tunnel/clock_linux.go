package tunnel

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Boot time is CLOCK_BOOTTIME, so that time spent suspended counts (RELIABILITY
// L11: no 540 s stall after resume). Reading it is a real system call (x/sys
// has no vDSO path), so Now adds a cached offset to the monotonic clock,
// which the vDSO serves, and refreshes the offset from CLOCK_BOOTTIME at most
// every bootRefresh of monotonic time. After a resume the clock is at most
// bootRefresh behind.
const bootRefresh = 20 * time.Millisecond

var boot struct {
	offset    atomic.Int64 // CLOCK_BOOTTIME - monotonicNow, ns
	refreshed atomic.Int64 // monotonicNow at the last refresh, ns; 0: never
}

// Now returns boot time.
func (systemClock) Now() time.Duration {
	mono := monotonicNow()
	if last := boot.refreshed.Load(); last == 0 || mono-time.Duration(last) >= bootRefresh {
		var ts unix.Timespec
		if readBootTime(&ts) {
			// The offset only grows (by suspended time); keeping the
			// largest reading hides measurement noise, so Now never
			// goes back.
			off := int64(time.Duration(ts.Nano()) - mono)
			for old := boot.offset.Load(); off > old && !boot.offset.CompareAndSwap(old, off); old = boot.offset.Load() {
			}
		}
		boot.refreshed.Store(int64(max(mono, 1)))
	}
	return mono + time.Duration(boot.offset.Load())
}

// readBootTime reads CLOCK_BOOTTIME. It is a raw system call: the call
// never blocks, and unix.ClockGettime would enter the scheduler's system
// call state, which wakes the runtime's monitor thread (sysmon) whenever
// the process was idle, a futex wake and a second thread running for
// every packet that ends an idle spell.
func readBootTime(ts *unix.Timespec) bool {
	_, _, e := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_BOOTTIME, uintptr(unsafe.Pointer(ts)), 0)
	return e == 0
}
