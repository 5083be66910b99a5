package reliable

import kcp "github.com/xtaci/kcp-go/v5"

// Counters are what KCP has done in this process so far: kcp-go's clients
// and udplab's server sessions, which count into kcp-go's process-wide
// counters (the KCP core counts retransmissions itself; the sessions add
// their FEC recoveries and failed decryptions). Counting is per process,
// not per session, so a measurement reads them as deltas around its run
// (Sub) and never overlaps two KCP runs.
type Counters struct {
	Retransmissions uint64 // segments sent again: on timeout, fast or early
	FECRecovered    uint64 // segments rebuilt from FEC parity
	AuthFailures    uint64 // packets dropped for a failed decryption or checksum
}

// ReadCounters returns the process-wide counters now.
func ReadCounters() Counters {
	s := kcp.DefaultSnmp.Copy()
	return Counters{Retransmissions: s.RetransSegs, FECRecovered: s.FECRecovered, AuthFailures: s.InCsumErrors}
}

// Sub returns c minus before: what happened between the two readings.
func (c Counters) Sub(before Counters) Counters {
	return Counters{
		Retransmissions: c.Retransmissions - before.Retransmissions,
		FECRecovered:    c.FECRecovered - before.FECRecovered,
		AuthFailures:    c.AuthFailures - before.AuthFailures,
	}
}
