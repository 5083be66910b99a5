package modes

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/link/linktest"
	"github.com/udplab/udplab/message"
)

// kcpSegment is a bare KCP segment of cmd carrying data.
func kcpSegment(cmd byte, data string) []byte {
	b := make([]byte, 24, 24+len(data))
	b[4] = cmd
	binary.LittleEndian.PutUint32(b[20:], uint32(len(data)))
	return append(b, data...)
}

// TestKCPData: kcp-rt protects a datagram from its first data segment on;
// acknowledgements alone go unprotected, and what does not parse is
// protected whole.
func TestKCPData(t *testing.T) {
	ack, push := kcpSegment(kcp.IKCP_CMD_ACK, ""), kcpSegment(kcp.IKCP_CMD_PUSH, "Hello")
	cat := func(bs ...[]byte) (out []byte) {
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	for _, tt := range []struct {
		name string
		b    []byte
		want int
	}{
		{"push", push, 0},
		{"ack", ack, 24},
		{"two acks", cat(ack, ack), 48},
		{"ack then push", cat(ack, push), 24},
		{"ack then window probe", cat(ack, kcpSegment(kcp.IKCP_CMD_WASK, "")), 48},
		{"length past the end", cat(ack, kcpSegment(kcp.IKCP_CMD_ACK, "x")[:24]), 0},
		{"short", []byte{1, 2, 3}, 3},
		{"empty", nil, 0},
	} {
		if got := kcpData(tt.b); got != tt.want {
			t.Errorf("kcpData(%s) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestKCPRTOverLossyLink greets 200 times across a link losing 10% each
// way at a fixed seed: every reply comes back, in order, and parity
// rebuilt some of the losses.
func TestKCPRTOverLossyLink(t *testing.T) {
	l := linktest.New(t, "loss=10%,delay=2ms,seed=5")
	tr, err := KCPRT.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	spc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	s, err := tr.Serve(l.Wrap(spc, link.Down), message.Greet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cpc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := tr.Dial(context.Background(), l.Wrap(cpc, link.Up), spc.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 200 {
		name := fmt.Sprintf("n%03d", i)
		if got, want := conntest.RoundTrip(t, c, name), "Hello "+name+"!\n"; got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
	}
	if up, down := l.Stats(link.Up), l.Stats(link.Down); up.Lost == 0 || down.Lost == 0 {
		t.Fatalf("the link lost %d up and %d down; the seed should lose some each way", up.Lost, down.Lost)
	}
	if got := tr.Counters().FECRecovered; got == 0 {
		t.Errorf("FECRecovered = 0 after losses both ways")
	}
}
