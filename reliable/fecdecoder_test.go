package reliable

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

// TestFECDecoderOldGroupsBounded sends one group, then single shards of
// a thousand groups each older than maxShardSets behind it: kcp-go's
// decoder drops each as it comes, so a peer cannot make one hold more
// than maxShardSets+1 groups.
func TestFECDecoderOldGroupsBounded(t *testing.T) {
	f, err := newFECCodec(10, 3)
	if err != nil {
		t.Fatal(err)
	}
	d := newFECDecoder(f)
	defer d.release()
	shard := func(seqid uint32) []byte {
		b := make([]byte, fecOverhead+kcp.IKCP_OVERHEAD)
		binary.LittleEndian.PutUint32(b, seqid)
		binary.LittleEndian.PutUint16(b[4:], fecTypeData)
		binary.LittleEndian.PutUint16(b[6:], uint16(len(b)-fecHeader))
		return b
	}
	now := time.Now()
	d.decode(f, shard(100*uint32(f.shards)), now)
	for k := range uint32(1000) {
		d.decode(f, shard((100-maxShardSets-1-k)*uint32(f.shards)%f.paws), now)
	}
	if n := len(d.sets); n > maxShardSets+1 {
		t.Errorf("the decoder holds %d groups, want at most %d", n, maxShardSets+1)
	}
}

// TestFECDecoderStartsAtPeersGroup makes a decoder, as a session does
// again after fecHold of silence, while the peer's sequence ids are half
// way round: it still rebuilds a lost data shard.
func TestFECDecoderStartsAtPeersGroup(t *testing.T) {
	f, err := newFECCodec(2, 1)
	if err != nil {
		t.Fatal(err)
	}
	var enc fecEncoder
	enc.next = f.paws - 30*uint32(f.shards) // 2^32 less 30 groups: older than 0
	now := time.Now()
	enc.last = now
	var pkts [][]byte
	for i := range f.data {
		p := make([]byte, fecOverhead+kcp.IKCP_OVERHEAD+i)
		pkts = append(pkts, p)
		pkts = append(pkts, enc.encode(f, p, 0, now)...)
	}
	if len(pkts) != f.shards {
		t.Fatalf("the encoder sent %d packets, want %d", len(pkts), f.shards)
	}
	d := newFECDecoder(f)
	defer d.release()
	var got int
	for _, p := range pkts[1:] { // the first data shard is lost
		for _, r := range d.decode(f, p, now) {
			got++
			putPacket(r)
		}
	}
	if got != 1 {
		t.Errorf("recovered %d shards, want 1", got)
	}
}

// TestFECOtherShardCountsRefused greets the server (FEC 10,3) from kcp-go
// clients with other shard counts, and with its own: a client with other
// counts is answered, its session counted once in FECRefused, and its
// shards rebuild nothing.
func TestFECOtherShardCountsRefused(t *testing.T) {
	for _, tc := range []struct{ data, parity, refused int }{{10, 3, 0}, {10, 2, 1}, {4, 4, 1}} {
		t.Run(fmt.Sprintf("%d,%d", tc.data, tc.parity), func(t *testing.T) {
			s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, Config{})
			sess, err := kcp.DialWithOptions(s.Addr().String(), nil, tc.data, tc.parity)
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			sess.SetDeadline(time.Now().Add(conntest.Timeout))
			buf := make([]byte, 1500)
			for i := range 30 {
				name := fmt.Sprint("n", i)
				if _, err := sess.Write([]byte(name)); err != nil {
					t.Fatal(err)
				}
				if n, err := sess.Read(buf); err != nil || string(buf[:n]) != "Hello "+name+"!\n" {
					t.Fatalf("reply %d = %q, %v", i, buf[:n], err)
				}
			}
			if got := s.Stats().FECRefused; got != uint64(tc.refused) {
				t.Errorf("FECRefused = %d, want %d", got, tc.refused)
			}
		})
	}
}

// TestFECDecoderForeignLayout hands a 10,3 decoder a 10,2 sender's first
// two groups, none lost: it takes the first data shard past the first
// group (in its parity's place) as the sign, and rebuilds nothing (the
// second group's parity fell where its data shards go, and made one up).
func TestFECDecoderForeignLayout(t *testing.T) {
	ours, _ := newFECCodec(10, 3)
	theirs, _ := newFECCodec(10, 2)
	var enc fecEncoder
	now := time.Now()
	enc.last = now
	d := newFECDecoder(ours)
	defer d.release()
	for range 2 * theirs.data {
		p := make([]byte, fecOverhead+kcp.IKCP_OVERHEAD)
		ps := enc.encode(theirs, p, 0, now)
		for _, q := range append([][]byte{p}, ps...) {
			if rs := d.decode(ours, q, now); len(rs) != 0 {
				t.Fatalf("rebuilt %d shards from another layout's group", len(rs))
			}
		}
	}
	if !d.foreign {
		t.Error("the decoder did not see the other layout")
	}
}
