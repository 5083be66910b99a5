package compare

import (
	"context"
	"time"

	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/message"
)

// probeTimeout bounds the connection probe: a loss-free link answers in a
// few round trips, so only a broken transport takes this long.
const probeTimeout = 10 * time.Second

// probeACKWait outlasts the delayed acknowledgements: KCP's 10 ms flush,
// QUIC's 25 ms max_ack_delay, TCP's 40 ms delayed ACK.
const probeACKWait = 50 * time.Millisecond

// probeConnect measures what mode name spends before its first reply: on
// a loss-free copy of spec (the same delays, jitter and rate), with its
// own link, sockets and greeting server, it dials, sends one greeting and
// waits for the answer. A loss on the way would add a retransmission
// timeout that says nothing about the handshake, hence the copy. It
// returns nil when the probe gets no answer.
//
// Links that differ only in what lossFree removes give the same loss-free
// copy, so a comparison probes each mode once per copy and gives every
// such link that figure: the default matrix's four links share one.
func (c *Config) probeConnect(ctx context.Context, name string, spec link.Spec) *Connect {
	clean := link.Spec{Seed: spec.Seed, Up: lossFree(spec.Up), Down: lossFree(spec.Down)}
	key := probeKey{name, clean}
	if clean.Up.Jitter == 0 && clean.Down.Jitter == 0 {
		key.clean.Seed = 0 // nothing random is left for the seed to choose
	}
	if p, ok := c.probed[key]; ok {
		return p
	}
	p := c.probe(ctx, name, clean, roundTrip(spec))
	if p != nil && c.probed != nil {
		c.probed[key] = p
	}
	return p
}

// probeKey names a probe: the mode and the loss-free link.
type probeKey struct {
	mode  string
	clean link.Spec
}

// probe dials name over a link with spec clean and measures the first
// reply against the round trip rtt.
func (c *Config) probe(ctx context.Context, name string, clean link.Spec, rtt time.Duration) *Connect {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	e, err := newLocalRun(clean)
	if err != nil {
		return nil
	}
	defer e.close()
	_, tr := c.transport(name)
	begin := time.Now()
	srv, conn, _, err := e.start(ctx, tr, message.Greet)
	if err != nil {
		return nil
	}
	defer srv.Close()
	defer conn.Close()
	if _, err := message.RoundTrip(ctx, conn, []byte("probe")); err != nil {
		return nil
	}
	took := time.Since(begin)
	// Count the acknowledgements the reply draws too, which every mode
	// but raw and fec sends within its delayed-ACK time, so that a timer's
	// phase does not decide whether they are in.
	if sleep(ctx, probeACKWait) != nil {
		return nil
	}
	up, down := e.link.Stats(link.Up), e.link.Stats(link.Down)
	p := &Connect{FirstReplyMS: ms(took), Packets: up.Offered + down.Offered, Bytes: up.OfferedBytes + down.OfferedBytes}
	if !tr.Traits().IPPackets {
		p.Bytes += p.Packets * (ipv4Header + udpHeader)
	}
	if rtt > 0 {
		n := float64(took) / float64(rtt)
		p.RTTs = &n
	}
	return p
}

// lossFree is p without its random impairments: what remains is what
// every packet meets.
func lossFree(p link.Params) link.Params {
	return link.Params{Delay: p.Delay, Jitter: p.Jitter, Dist: p.Dist, Order: p.Order, Rate: p.Rate, Queue: p.Queue, MTU: p.MTU,
		Limit: p.Limit, LimitBytes: p.LimitBytes}
}
