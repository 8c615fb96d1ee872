//go:build race

package tunnel

// raceEnabled reports whether the race detector is on: it slows the
// engine several times, so timing goals are not checked under it.
const raceEnabled = true
