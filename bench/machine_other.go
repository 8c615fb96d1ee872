//go:build !linux

package bench

import "runtime"

// kernelRelease names the operating system; only Linux has a lab.
func kernelRelease() string { return runtime.GOOS }

// cpuModel is unknown outside Linux.
func cpuModel() string { return "unknown" }
