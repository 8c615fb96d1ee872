package lifecycle

import "syscall"

// isRunning reports whether a process with this pid exists.
func isRunning(pid int) bool { return syscall.Kill(pid, 0) == nil }
