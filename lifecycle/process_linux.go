package lifecycle

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// processStart returns the start time of process pid, in clock ticks since
// boot (field 22 of /proc/PID/stat): with the pid, it names one process
// across pid reuse.
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses itself: the fields that follow start after the last
	// ')'. Field 3 is then the first of them, field 22 the 20th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(string(f[19]), 10, 64)
}
