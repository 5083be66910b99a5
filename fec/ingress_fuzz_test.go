package fec

import (
	"bytes"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// ingressMax is the table FuzzIngress gives its server: fewer than
// conntest.ForgedSources, so it fills and refuses.
const ingressMax = 8

// FuzzIngress hands a server arbitrary datagrams from forged source
// addresses, as conntest.Forged reads them; a source byte's top bit has
// the checksum made right, so that half of them reach the group logic.
// Nothing may panic, the server must keep at most MaxPeers peers, and a
// client greeted before must still be greeted after every batch. Peers are never reaped, so the table stays
// full and keeps refusing.
func FuzzIngress(f *testing.F) {
	c := newCodec(DefaultDataShards, DefaultParityShards)
	for _, b := range c.send(f, []byte("Alice"), []byte("Bob\n"), []byte("exit"), []byte("")) {
		f.Add(shards(0, false, b))
	}
	f.Add(shards(1, false, c.send(f, msgs(DefaultDataShards+2, 5)...)...))
	f.Add(shards(2, true, []byte{kindData}, make([]byte, headerBytes+lengthBytes), []byte{kindParity, 9, 9, 9, 9, 0, 0, 0, 1, 0, 10, 3, 0, 0}))
	f.Add(shards(3, true, dataShard(1<<31, 9, []byte("Carol")), dataShard(0, 9, []byte("Carol")), parityShard(1<<31-restartGap, 0, 1, 1, 300)))
	f.Add(shards(4, true, parityShard(7, 2, 10, 3, 1000), parityShard(7, 0, 1, 1, 5)))
	cfg := Config{MaxPeers: ingressMax, Idle: time.Hour}
	mn := conntest.NewMemNet()
	s := newServer(f, mn.Listen("10.0.0.1:1"), message.Greet, &cfg)
	good := newClient(f, mn.Listen("10.0.0.2:40000"), s.Addr(), &cfg)
	if got := conntest.RoundTrip(f, good, "Alice"); got != "Hello Alice!\n" {
		f.Fatalf("greeting = %q", got)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		conntest.Forged(in, func(src byte, d []byte) {
			if src&0x80 != 0 && len(d) >= headerBytes {
				d = bytes.Clone(d)
				seal(d)
			}
			mn.Inject(s.Addr(), conntest.ForgedAddr(src), d)
		})
		// The greeting's request queues behind every datagram above.
		if got := conntest.RoundTrip(t, good, "Carol"); got != "Hello Carol!\n" {
			t.Fatalf("greeting = %q", got)
		}
		s.mu.Lock()
		n := len(s.peers)
		s.mu.Unlock()
		if n > ingressMax {
			t.Fatalf("%d peers, MaxPeers is %d", n, ingressMax)
		}
	})
}

// shards lays datagrams out as FuzzIngress reads them, from src, with
// the checksum made right if seal is set.
func shards(src byte, seal bool, datagrams ...[]byte) []byte {
	if seal {
		src |= 0x80
	}
	return conntest.Batch(src, datagrams...)
}
