// Package api controls running links from code, as toxiproxy does: a
// Server holds named links, each a link.Proxy in front of its own
// upstream, and serves a small HTTP/JSON API to list, create and delete
// them, read one's spec and counters, and replace its spec (both
// directions or one) atomically while traffic flows. A Client drives that
// API, so a Go test suite can cut the network mid-run and restore it.
//
// The endpoints, all JSON:
//
//	GET    /links              list every link: [Link, ...]
//	POST   /links              create one: LinkConfig in, Link out (201)
//	GET    /links/NAME         one link: Link
//	DELETE /links/NAME         stop and forget it (204)
//	PUT    /links/NAME/spec    replace its spec: SpecChange in, Link out
//	POST   /links/NAME/spec    the same
//
// An error is {"error": "...", "field": "..."} with a 4xx or 5xx status;
// field names the request's field at fault, when one is.
package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/udplab/udplab/link"
)

// LinkConfig is a link to create, as POST /links and udplab link's
// --config file give it.
type LinkConfig struct {
	// Name names the link in the API's paths: 1 to 64 letters, digits,
	// '.', '_' or '-'.
	Name string `json:"name"`
	// Listen is the UDP address clients send to, such as
	// "127.0.0.1:7001"; port 0 picks a free one (Link.Listen says which).
	Listen string `json:"listen"`
	// Upstream is the server's UDP address.
	Upstream string `json:"upstream"`
	// Spec is the impairments in udplab's link grammar, such as
	// "loss=5%,delay=20ms"; empty is a perfect link.
	Spec string `json:"spec"`
}

// SpecChange replaces a link's spec, as PUT /links/NAME/spec takes it.
type SpecChange struct {
	// Spec is the new impairments in the link grammar; empty is a perfect
	// link. It replaces the old spec whole in the directions it applies
	// to. The seed is the link's for good: a seed= item may only repeat it.
	Spec string `json:"spec"`
	// Direction is "up" or "down" to change one direction only (that
	// direction of Spec is taken), or empty for both.
	Direction string `json:"direction,omitempty"`
}

// Link is a link as the API shows it.
type Link struct {
	Name     string `json:"name"`
	Listen   string `json:"listen"` // the address bound, its port resolved
	Upstream string `json:"upstream"`
	Spec     string `json:"spec"` // in the grammar, as link.Spec.String writes it
	Up       Stats  `json:"up"`
	Down     Stats  `json:"down"`
	Clients  int    `json:"clients"` // client addresses with an upstream socket now
	Refused  uint64 `json:"refused"` // datagrams from clients past the proxy's limit
}

// Stats is one direction's link.Stats, with the names udplab link's
// summary line gives them. Lateness is in microseconds.
type Stats struct {
	Offered        uint64            `json:"offered"`
	OfferedBytes   uint64            `json:"bytes_in"`
	Delivered      uint64            `json:"delivered"`
	DeliveredBytes uint64            `json:"bytes_out"`
	Lost           uint64            `json:"lost"`
	QueueDrops     uint64            `json:"queue_drops"`
	LimitDrops     uint64            `json:"limit_drops"`
	MTUDrops       uint64            `json:"mtu_drops"`
	OutageDrops    uint64            `json:"outage_drops"`
	Duplicated     uint64            `json:"dup"`
	Corrupted      uint64            `json:"corrupt"`
	Reordered      uint64            `json:"reordered"`
	QueueHigh      int               `json:"queue_high"`
	Queued         int               `json:"queued"`
	HeldBytes      int               `json:"held_bytes"`
	HeldBytesHigh  int               `json:"held_bytes_high"`
	WriteErrors    uint64            `json:"write_errors"`
	LateCount      uint64            `json:"late_count"`
	LateP50us      int64             `json:"late_p50_us"`
	LateP99us      int64             `json:"late_p99_us"`
	LateMaxus      int64             `json:"late_max_us"`
	Bursts         map[uint64]uint64 `json:"bursts,omitempty"` // loss-burst length to how many bursts had it
}

// Dropped is every datagram the link itself dropped, as link.Stats.Dropped.
func (s Stats) Dropped() uint64 {
	return s.Lost + s.QueueDrops + s.LimitDrops + s.MTUDrops + s.OutageDrops
}

// String renders s as link.Stats.String does, as udplab link's summary
// prints it.
func (s Stats) String() string { return s.link().String() }

// link is s as a link.Stats, its lateness whole microseconds.
func (s Stats) link() link.Stats {
	us := func(n int64) time.Duration { return time.Duration(n) * time.Microsecond }
	return link.Stats{
		Offered: s.Offered, OfferedBytes: s.OfferedBytes, Delivered: s.Delivered, DeliveredBytes: s.DeliveredBytes,
		Lost: s.Lost, QueueDrops: s.QueueDrops, LimitDrops: s.LimitDrops, MTUDrops: s.MTUDrops, OutageDrops: s.OutageDrops,
		Duplicated: s.Duplicated, Corrupted: s.Corrupted, Reordered: s.Reordered,
		QueueHigh: s.QueueHigh, Queued: s.Queued, HeldBytes: s.HeldBytes, HeldBytesHigh: s.HeldBytesHigh,
		WriteErrors: s.WriteErrors,
		Lateness:    link.Lateness{Count: s.LateCount, P50: us(s.LateP50us), P99: us(s.LateP99us), Max: us(s.LateMaxus)},
		Bursts:      s.Bursts,
	}
}

func statsOf(s link.Stats) Stats {
	us := func(d time.Duration) int64 { return d.Microseconds() }
	return Stats{
		Offered: s.Offered, OfferedBytes: s.OfferedBytes, Delivered: s.Delivered, DeliveredBytes: s.DeliveredBytes,
		Lost: s.Lost, QueueDrops: s.QueueDrops, LimitDrops: s.LimitDrops, MTUDrops: s.MTUDrops, OutageDrops: s.OutageDrops,
		Duplicated: s.Duplicated, Corrupted: s.Corrupted, Reordered: s.Reordered,
		QueueHigh: s.QueueHigh, Queued: s.Queued, HeldBytes: s.HeldBytes, HeldBytesHigh: s.HeldBytesHigh,
		WriteErrors: s.WriteErrors, LateCount: s.Lateness.Count,
		LateP50us: us(s.Lateness.P50), LateP99us: us(s.Lateness.P99), LateMaxus: us(s.Lateness.Max),
		Bursts: s.Bursts,
	}
}

// Errors an API call can match with errors.Is; an *Error carries the
// details.
var (
	ErrNotFound = errors.New("no such link")                          // 404
	ErrExists   = errors.New("a link of that name exists")            // 409
	ErrInvalid  = errors.New("invalid request")                       // 400, 405, 413, 415
	ErrFull     = errors.New("the server holds all the links it may") // 503, or closed
)

// Error is an error the API answered with. errors.Is matches it against
// ErrNotFound, ErrExists, ErrInvalid or ErrFull by its status.
type Error struct {
	Status  int    `json:"-"`               // the HTTP status, such as 404
	Message string `json:"error"`           // what went wrong and what is accepted
	Field   string `json:"field,omitempty"` // the request's field at fault, if one is
}

func (e *Error) Error() string {
	return fmt.Sprintf("api: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Is matches e with the sentinel error its status stands for.
func (e *Error) Is(target error) bool {
	return target != nil && target == sentinel(e.Status)
}

func sentinel(status int) error {
	switch status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrExists
	case http.StatusServiceUnavailable:
		return ErrFull
	}
	if status >= 400 && status < 500 {
		return ErrInvalid
	}
	return nil
}
