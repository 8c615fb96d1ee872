//go:build !race

package allowedips

const raceEnabled = false
