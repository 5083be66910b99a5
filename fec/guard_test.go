package fec

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// forge returns a conn whose datagrams say they come from addr, as a forged
// source's would: replies to addr go to whoever is there, or nowhere.
func forge(n *conntest.MemNet, addr string) *conntest.MemConn {
	c := n.Listen("10.9.9.9:9999")
	c.Claim(addr)
	return c
}

// TestForgedSourcesDropped: a shard from the server's own address (a loop
// with itself) and one from port 53 (a reflection) create no peer and get
// no reply; they are counted, and a real client is served. With
// AllowLowPorts, port 53 is answered.
func TestForgedSourcesDropped(t *testing.T) {
	for _, allow := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			n := conntest.NewMemNet()
			s := newServer(t, n.Listen("10.0.0.1:4000"), message.Echo, &Config{AllowLowPorts: allow})
			forge(n, "10.0.0.1:4000").WriteTo(dataShard(1, 0, []byte("loop")), s.Addr())
			forge(n, "10.0.0.2:53").WriteTo(dataShard(1, 0, []byte("dns")), s.Addr())
			c := newClient(t, n.Listen("10.0.0.3:4000"), s.Addr(), nil)
			if got := conntest.RoundTrip(t, c, "after"); got != "after" {
				t.Fatalf("reply = %q, want after", got)
			}
			want := ServerStats{Peers: 1}
			want.LoopsDropped, want.LowPortsDropped, want.Requests, want.Replies = 1, 1, 1, 1
			if allow {
				want.Peers, want.LowPortsDropped, want.Requests, want.Replies = 2, 0, 2, 2
			}
			st := s.Stats()
			if st.Peers != want.Peers || st.Counts != want.Counts || st.ServerStats != want.ServerStats {
				t.Errorf("AllowLowPorts %v: stats = %+v, want %+v", allow, st, want)
			}
		})
	}
}

// TestReplyCapped: a reply whose data shard would put more than 3 times its
// request's wire bytes on the wire is not sent, and is counted; one byte
// less is sent.
func TestReplyCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		// "x" is 13 bytes of shard, 41 on the wire: 123 may come back, 83
		// bytes of reply.
		size := 83
		h := func(dst, req []byte) ([]byte, error) { return append(dst, make([]byte, size)...), nil }
		s := newServer(t, n.Listen("10.0.0.1:4000"), h, nil)
		c := newClient(t, n.Listen("10.0.0.2:4000"), s.Addr(), nil)
		if got := conntest.RoundTrip(t, c, "x"); len(got) != 83 {
			t.Fatalf("reply of %d bytes, want 83", len(got))
		}
		size = 84
		if _, err := conntest.Request(c, []byte("x"), time.Second); err == nil {
			t.Fatal("a reply of 84 bytes to x came back")
		}
		if st := s.Stats(); st.Replies != 1 || st.AmplificationCapped != 1 || st.AmplificationCappedBytes != 84+HeaderBytes+28 {
			t.Errorf("stats = %+v, want 1 reply sent and 1 of 124 bytes capped", st)
		}
	})
}

// TestShutdownDrains: a request in the handler when Shutdown comes is
// answered, and its group's parity goes at once rather than at its flush
// time; Shutdown returns nil.
func TestShutdownDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		entered, release := make(chan struct{}), make(chan struct{})
		h := func(dst, req []byte) ([]byte, error) {
			close(entered)
			<-release
			return message.Echo(dst, req)
		}
		s := newServer(t, n.Listen("10.0.0.1:4000"), h, &Config{Flush: time.Hour})
		client := n.Listen("10.0.0.2:4000")
		client.WriteTo(dataShard(1, 0, []byte("hi")), s.Addr())
		<-entered
		start := time.Now()
		done := make(chan error)
		go func() { done <- s.Shutdown(context.Background()) }()
		synctest.Wait()
		close(release)
		if err := <-done; err != nil {
			t.Errorf("Shutdown = %v", err)
		}
		if got := sent(t, client, start, DefaultDataShards, DefaultParityShards); got != "data 0 @0s, parity 0/1+1 @0s" {
			t.Errorf("client got %s, want the reply and its parity at once", got)
		}
	})
}

// TestShutdownCutOff: with ctx already done, Shutdown closes the socket
// while the handler holds its request, and says it cut that one off.
func TestShutdownCutOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := conntest.NewMemNet()
		spc := n.Listen("10.0.0.1:4000")
		entered := make(chan struct{})
		s := newServer(t, spc, func(dst, req []byte) ([]byte, error) {
			close(entered)
			<-spc.Closed() // released by Shutdown's Close
			return message.Echo(dst, req)
		}, nil)
		n.Listen("10.0.0.2:4000").WriteTo(dataShard(1, 0, []byte("late")), s.Addr())
		<-entered
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := s.Shutdown(ctx)
		conntest.WantCutOff(t, err, 1)
	})
}
