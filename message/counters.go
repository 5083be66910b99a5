package message

import (
	"errors"
	"sync/atomic"
)

// ServerStats counts what a server did with the messages it received.
type ServerStats struct {
	Requests    uint64 // messages received
	Replies     uint64 // replies handed to the transport
	BadRequests uint64 // requests the handler refused (ErrBadRequest)
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
// when nothing must be sent: the request was refused, or the reply is longer
// than max bytes. Either way the server goes on serving.
func (c *Counters) Reply(h Handler, dst, req []byte, max int) (reply []byte, ok bool) {
	c.requests.Add(1)
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
	c.replies.Add(1)
	return reply, true
}

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
