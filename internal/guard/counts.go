package guard

// Counts is what a server's checks refused: datagrams dropped for their
// source, and replies left unsent for the Factor rule.
type Counts struct {
	LoopsDropped             uint64 // datagrams from the server's own address
	LowPortsDropped          uint64 // datagrams from ports below LowPorts
	AmplificationCapped      uint64 // replies left unsent
	AmplificationCappedBytes uint64 // their wire bytes
}

// Read returns what s and c have refused so far.
func Read(s *Sources, c *Capped) Counts {
	var n Counts
	n.LoopsDropped, n.LowPortsDropped = s.Dropped()
	n.AmplificationCapped, n.AmplificationCappedBytes = c.Counts()
	return n
}
