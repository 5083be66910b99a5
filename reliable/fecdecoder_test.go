package reliable

import (
	"encoding/binary"
	"testing"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
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
