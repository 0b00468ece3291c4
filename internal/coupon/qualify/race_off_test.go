//go:build !race

package qualify_test

// raceEnabled: the race detector is on (its sync.Pool drops objects at random).
const raceEnabled = false
