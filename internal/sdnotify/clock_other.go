//go:build !linux

package sdnotify

// monotonicUsec: systemd runs only on Linux; elsewhere the field is left
// out.
func monotonicUsec() (uint64, bool) { return 0, false }
