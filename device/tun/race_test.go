//go:build race

package tun_test

// raceEnabled reports whether the race detector is on: it allocates where
// the code does not, so allocation counts are not checked under it.
const raceEnabled = true
