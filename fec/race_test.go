//go:build race

package fec

// raceEnabled: under the race detector sync.Pool drops buffers at random,
// so the allocation tests have nothing to measure.
const raceEnabled = true
