package fec

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds arbitrary datagrams to the shard parser and to a
// decoder. The parser must never panic, and what it accepts must encode
// back to the same bytes; the decoder must deliver only what fits a shard
// and hold nothing once closed.
func FuzzDecode(f *testing.F) {
	c := newCodec(4, 2)
	for _, b := range c.send(f, []byte("Alice"), []byte(""), []byte("a longer message")) {
		f.Add(b) // data shards, a parity shard
	}
	f.Add([]byte{})
	f.Add([]byte{kindData})
	f.Add(dataShard(1, 3, []byte("x"))[:HeaderBytes])
	f.Add(parityShard(9, 1, 4, 2, 2))
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, shard, ok := parse(b, 4, 2)
		if ok {
			if again := encodeShard(h, shard); !bytes.Equal(again, b) {
				t.Fatalf("parse(% x) = %+v, which encodes as % x", b, h, again)
			}
		}
		c := newCodec(4, 2)
		c.feed(b)
		checkDecoder(t, c)
	})
}

// FuzzDecoder feeds a decoder a sequence of shards cut from the input, each
// one's checksum made right, so the fuzzer reaches past the checksum into
// the group logic: windows, contradictions, rebuilding.
func FuzzDecoder(f *testing.F) {
	c := newCodec(4, 2)
	pkts := c.send(f, msgs(6, 3)...) // a full group and a partial one
	f.Add(joinShards(pkts[1], pkts[2], pkts[4], pkts[5]))
	f.Add(joinShards(pkts[6], pkts[8], pkts[0], pkts[0]))
	f.Add(joinShards(pkts...))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := newCodec(4, 2)
		for len(in) > 0 {
			n := min(int(in[0]), len(in)-1)
			b := bytes.Clone(in[1 : 1+n])
			if len(b) >= headerBytes {
				seal(b)
			}
			c.feed(b)
			in = in[1+n:]
		}
		checkDecoder(t, c)
	})
}

// joinShards lays shards out as FuzzDecoder reads them: a length byte
// before each. Shards longer than 255 bytes are cut.
func joinShards(shards ...[]byte) []byte {
	var out []byte
	for _, s := range shards {
		s = s[:min(len(s), 255)]
		out = append(append(out, byte(len(s))), s...)
	}
	return out
}

// encodeShard builds the shard parse read as h and shard.
func encodeShard(h header, shard []byte) []byte {
	if h.kind == kindData {
		return dataShard(h.group, h.index, shard[lengthBytes:])
	}
	b := append(make([]byte, parityHeaderBytes), shard...)
	putParity(b, h.group, h.index, h.k, h.p)
	return b
}

// checkDecoder checks what c's decoder did: every message fits a shard,
// each delivery was counted, and closing returns every held byte.
func checkDecoder(t *testing.T, c *codec) {
	t.Helper()
	for _, m := range c.got {
		if len(m) > MaxMessage {
			t.Fatalf("delivered %d bytes, over MaxMessage", len(m))
		}
	}
	c.dec.close()
	st := c.st.stats()
	if st.Received+st.Recovered != uint64(len(c.got)) {
		t.Fatalf("stats %+v for %d deliveries", st, len(c.got))
	}
	if c.dec.held != 0 {
		t.Fatalf("holding %d bytes after close", c.dec.held)
	}
}
