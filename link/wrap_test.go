package link

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
	"github.com/udplab/udplab/reliable"
)

// TestTransportsOverWrap runs both transports unchanged over wrapped
// loopback sockets, client egress up and server egress down, as compare
// does: with 10% loss each way the reliable transport still answers every
// request, in order, and raw loses about 19% of round trips.
func TestTransportsOverWrap(t *testing.T) {
	const n = 300
	spec, _ := Parse("loss=10%,delay=2ms,seed=3")
	for _, mode := range []string{"raw", "reliable"} {
		t.Run(mode, func(t *testing.T) {
			l, err := New(spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			spc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
			cpc, _ := net.ListenPacket("udp4", "127.0.0.1:0")
			srvConn, cliConn := l.Wrap(spc, Down), l.Wrap(cpc, Up)
			var c message.Conn
			if mode == "raw" {
				s := raw.NewServer(srvConn, message.Echo, nil)
				defer s.Close()
				c = raw.NewConn(cliConn, spc.LocalAddr())
			} else {
				s, err := reliable.NewServer(srvConn, message.Echo, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				if c, err = reliable.NewConn(cliConn, spc.LocalAddr(), nil); err != nil {
					t.Fatal(err)
				}
			}
			defer c.Close()
			got := 0
			for i := range n {
				msg := fmt.Sprintf("m%04d", i)
				timeout := conntest.Timeout
				if mode == "raw" {
					timeout = 50 * time.Millisecond // raw does not retransmit: a loss is a loss
				}
				reply, err := conntest.Request(c, []byte(msg), timeout)
				if err == nil && string(reply) == msg {
					got++
				} else if mode == "reliable" {
					t.Fatalf("reliable request %d: %q, %v", i, reply, err)
				}
			}
			if mode == "raw" {
				within3Sigma(t, "raw round trips", uint64(got), n, 0.81)
			}
			if st := l.Stats(Up); st.Lost == 0 {
				t.Errorf("the link lost nothing: %v", st)
			}
		})
	}
}
