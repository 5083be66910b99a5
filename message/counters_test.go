package message

import (
	"testing"
	"time"
)

// TestEmptyRequestUnanswered: no handler answers an empty request, and it
// counts as a bad request; the next request is answered.
func TestEmptyRequestUnanswered(t *testing.T) {
	handlers := map[string]Handler{"greet": Greet, "time": Time(time.Now), "echo": Echo}
	for name, h := range handlers {
		var c Counters
		for _, req := range [][]byte{nil, {}} {
			if reply, ok := c.Reply(h, nil, req, 1<<10); ok || len(reply) != 0 {
				t.Errorf("%s: Reply(%q) = %q, %v; want nothing", name, req, reply, ok)
			}
		}
		if _, ok := c.Reply(h, nil, []byte("a"), 1<<10); !ok {
			t.Errorf("%s: Reply(%q) refused after empty requests", name, "a")
		}
		if st := c.Stats(); st != (ServerStats{Requests: 3, Replies: 1, BadRequests: 2}) {
			t.Errorf("%s: stats = %+v, want 3 requests, 2 bad, 1 reply", name, st)
		}
	}
}

// TestHandleLeavesTheReplyUncounted: Handle counts a reply only once the
// server says it sent it.
func TestHandleLeavesTheReplyUncounted(t *testing.T) {
	var c Counters
	if reply, ok := c.Handle(Echo, nil, []byte("x"), 1); !ok || string(reply) != "x" {
		t.Fatalf("Handle = %q, %v", reply, ok)
	}
	if st := c.Stats(); st.Requests != 1 || st.Replies != 0 {
		t.Errorf("stats after Handle = %+v, want 1 request, 0 replies", st)
	}
	c.Replied()
	if st := c.Stats(); st.Replies != 1 {
		t.Errorf("stats after Replied = %+v, want 1 reply", st)
	}
}
