package modes

import (
	"context"
	"net"
	"testing"

	"github.com/udplab/udplab/message"
)

// TestServersDrain: the raw, fec, tcp and quic servers drain on Shutdown,
// over a PacketConn and at an address alike: the adapters keep the
// package servers' Shutdown, and a server with nothing under way shuts
// down without error. Their Summary names the guard counters.
func TestServersDrain(t *testing.T) {
	for _, m := range []*Mode{Raw, FEC, TCP, QUIC} {
		t.Run(m.Name, func(t *testing.T) {
			tr, err := m.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			over, err := tr.Serve(pc, message.Greet)
			if err != nil {
				t.Fatal(err)
			}
			at, err := tr.Listen("127.0.0.1:0", message.Greet)
			if err != nil {
				over.Close()
				t.Fatal(err)
			}
			for _, s := range []Server{over, at} {
				if _, ok := s.(interface{ Shutdown(context.Context) error }); !ok {
					t.Errorf("%T has no Shutdown", s)
				}
				if err := Shutdown(context.Background(), s); err != nil {
					t.Errorf("Shutdown = %v", err)
				}
			}
		})
	}
}

// TestGuardSummary: the UDP servers' summaries carry every guard counter,
// by the names metrics scrape.
func TestGuardSummary(t *testing.T) {
	for _, m := range []*Mode{Raw, FEC, KCPRT} {
		tr, err := m.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := tr.Listen("127.0.0.1:0", message.Greet)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		sum := s.Summary()
		for i := 0; i < len(sum); i += 2 {
			names[sum[i].(string)] = true
		}
		for _, want := range []string{"loops_dropped", "low_ports_dropped", "amplification_capped", "amplification_capped_bytes"} {
			if !names[want] {
				t.Errorf("%s: Summary %v lacks %s", m.Name, sum, want)
			}
		}
		s.Close()
	}
}
