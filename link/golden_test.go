package link

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestFatesAsBefore pins the trace of a spec using every model that
// existed before correlations, the 4-state model and the second stream
// (modelRNG): its SHA-256 was taken on the code before them, so a change
// that moves any older spec's fates fails here.
func TestFatesAsBefore(t *testing.T) {
	const spec = "loss=5%,burst=1%/30%,delay=10ms,jitter=5ms,reorder=2%,dup=1%,corrupt=1%,up:order=netem,seed=42"
	const want = "b75a7d3b189e472f28e396f6e32b30e81072288eff149cf7849cc23ee5c27212"
	sum := sha256.Sum256([]byte(spacedTrace(t, spec, 5000)))
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("trace of %s hashes to %s, want %s", spec, got, want)
	}
}
