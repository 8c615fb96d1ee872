//go:build !race

package tun_test

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
