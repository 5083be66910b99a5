package message

import (
	"errors"
	"sync/atomic"
)

// ServerStats counts what a server did with the messages it received.
type ServerStats struct {
	Requests uint64 // messages received
	Replies  uint64 // replies handed to the transport
	// BadRequests counts requests refused: by the handler (ErrBadRequest),
	// before it (a broken frame), or for being empty (see Counters.Reply).
	BadRequests uint64
	Oversized   uint64 // replies larger than the transport carries, dropped
	Errors      uint64 // socket or handler errors survived
	Consumed    uint64 // requests the handler took without a reply (ErrNoReply)
}

// Counters is the concurrency-safe form of ServerStats that servers update.
// The zero value is ready to use.
type Counters struct {
	requests, replies, badRequests, oversized, errors, consumed atomic.Uint64
}

// Reply runs h on req, appending to dst, and counts the outcome. ok is false
// when nothing must be sent: the request was empty or refused, or the reply
// is longer than max bytes. Either way the server goes on serving.
//
// An empty request never reaches h and is counted as a bad request, for
// every handler: nothing a client means to say fits in no bytes, and an
// answer to nothing is what a spoofed or looping datagram would draw (two
// servers echoing empty datagrams at each other, or a time server turning
// 28 bytes on the wire into 55).
func (c *Counters) Reply(h Handler, dst, req []byte, max int) (reply []byte, ok bool) {
	reply, ok = c.Handle(h, dst, req, max)
	if ok {
		c.replies.Add(1)
	}
	return reply, ok
}

// Handle is Reply for a server that checks a reply further before it sends
// it (against the 3× rule, say): it counts every outcome but a reply, which
// the server counts with Replied once it does send it.
func (c *Counters) Handle(h Handler, dst, req []byte, max int) (reply []byte, ok bool) {
	c.requests.Add(1)
	if len(req) == 0 {
		c.badRequests.Add(1)
		return dst, false
	}
	reply, err := h(dst, req)
	switch {
	case errors.Is(err, ErrNoReply):
		c.consumed.Add(1)
		return reply, false
	case errors.Is(err, ErrBadRequest):
		c.badRequests.Add(1)
		return reply, false
	case err != nil:
		c.errors.Add(1)
		return reply, false
	case len(reply)-len(dst) > max:
		c.oversized.Add(1)
		return reply, false
	}
	return reply, true
}

// Replied counts one reply Handle made that the server sent.
func (c *Counters) Replied() { c.replies.Add(1) }

// BadRequest counts one request refused before it reached a handler, such
// as a broken frame.
func (c *Counters) BadRequest() { c.badRequests.Add(1) }

// Error counts one survived socket error.
func (c *Counters) Error() { c.errors.Add(1) }

// Stats returns a snapshot of the counters.
func (c *Counters) Stats() ServerStats {
	return ServerStats{
		Requests:    c.requests.Load(),
		Replies:     c.replies.Load(),
		BadRequests: c.badRequests.Load(),
		Oversized:   c.oversized.Load(),
		Errors:      c.errors.Load(),
		Consumed:    c.consumed.Load(),
	}
}
