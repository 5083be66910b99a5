package reliable

import (
	"testing"

	kcp "github.com/xtaci/kcp-go/v5"
)

// TestKCPFlush holds kcpFlush, reached through go:linkname, to what the
// sessions rely on: it sends nothing and says an interval when nothing
// waits; it sends a queued message at once, as one push, and says when
// it next has work, within an interval; an acknowledgement settles it.
// A kcp-go whose flush changed its signature or meaning fails here.
func TestKCPFlush(t *testing.T) {
	var out [][]byte
	cfg := &Config{Profile: "fast3", SendWindow: 128, ReceiveWindow: 512}
	k := newKCP(7, func(b []byte, n int) { out = append(out, append([]byte(nil), b[:n]...)) }, cfg, 1300)
	interval := uint32(Profiles[cfg.Profile].Interval)
	if next := kcpFlush(k, kcp.IKCP_FLUSH_FULL); len(out) != 0 || next != interval {
		t.Fatalf("an idle flush sent %d packets and asked again in %d ms; want none, and %d", len(out), next, interval)
	}
	k.Send([]byte("hello"))
	next := kcpFlush(k, kcp.IKCP_FLUSH_FULL)
	if len(out) != 1 || next == 0 || next > interval {
		t.Fatalf("a flush of one message sent %d packets and asked again in %d ms; want 1, and 1 to %d", len(out), next, interval)
	}
	seg, rest, ok := nextSegment(out[0])
	if data := out[0][kcp.IKCP_OVERHEAD:]; !ok || len(rest) != 0 || seg.conv != 7 || seg.cmd != kcp.IKCP_CMD_PUSH || seg.sn != 0 || string(data) != "hello" {
		t.Fatalf("flushed %+v %q, want conversation 7's push of sn 0, hello", seg, data)
	}
	ack := appendSegment(nil, segment{conv: 7, cmd: kcp.IKCP_CMD_ACK, wnd: 128, ts: seg.ts, sn: 0, una: 1})
	if k.Input(ack, kcp.IKCP_PACKET_REGULAR, false) != 0 || k.WaitSnd() != 0 {
		t.Errorf("after its acknowledgement %d segments wait, want 0", k.WaitSnd())
	}
}
