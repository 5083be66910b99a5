// Package fec is udplab's forward-error-correction transport: messages go
// out as UDP datagrams, and Reed-Solomon parity sent after them lets the
// receiver rebuild lost ones, with no acknowledgement, no retransmission and
// no ordering. Its delivery class is unreliable-unordered, as raw's: a
// message arrives at most once, in any order, or is lost when its group lost
// more datagrams than it had parity. It shows what parity alone buys on a
// lossy link, apart from KCP's retransmissions.
//
// # Groups
//
// A sender groups its messages D at a time (Config.DataShards). Each message
// leaves at once as one data shard, one datagram; only parity waits. When a
// group has D messages its P parity shards (Config.ParityShards) leave at
// once. A group that has not filled within Config.Flush of its first message
// is closed early with parity over the k messages it has, so a sparse
// sender's messages are protected within Flush instead of waiting for D-k
// more (kcp-go's FEC waits, which is what holds back slow traffic; kcptun
// issue 865). A partial group keeps the configured ratio: it gets
// ceil(k×P/D) parity shards, at least 1; a full group gets P.
//
// The receiver delivers each message as soon as its data shard arrives or
// as soon as enough shards of its group have arrived to rebuild it: any k of
// the group's k+p shards rebuild all k messages. It delivers each message
// once. A group that lost more than its parity count cannot be rebuilt: its
// missing messages are counted as lost and nothing is made up.
//
// Both directions are coded: a Conn encodes its requests and decodes the
// replies, and a Server keeps, for each peer address, an encoder for its
// replies and a decoder for its requests. Both ends must use the same
// DataShards and ParityShards: a receiver drops shards whose counts do not
// fit its own as malformed.
//
// # Wire format (version 1)
//
// Every datagram is one shard. Integers are big-endian. A data shard:
//
//	offset 0      1             5             9       10        12
//	       +------+-------------+-------------+-------+---------+---------------+
//	       | 0x10 | CRC-32C     | group       | index | length  | message       |
//	       +------+-------------+-------------+-------+---------+---------------+
//	         1      4             4             1       2         length bytes
//
// A parity shard:
//
//	offset 0      1             5             9       10      11      12
//	       +------+-------------+-------------+-------+-------+-------+-----------+
//	       | 0x11 | CRC-32C     | group       | index | k     | p     | parity    |
//	       +------+-------------+-------------+-------+-------+-------+-----------+
//	         1      4             4             1       1       1       S bytes
//
// The fields:
//
//   - Byte 0 is the version (high four bits, 1) and the kind (low four bits:
//     0 data, 1 parity). A receiver drops any other value.
//   - CRC-32C (Castagnoli) covers every byte after it, offset 5 to the end. A
//     shard that fails it is dropped, so a corrupted datagram becomes a loss
//     that parity can repair: an erasure code rebuilds correctly only from
//     shards that are intact.
//   - group numbers a sender's groups, one more for each (modulo 2^32); the
//     first is arbitrary (random here), so a restarted sender does not look
//     like an old one.
//   - index is a data shard's place in its group, 0 to D-1, in the order the
//     messages were sent, or a parity shard's, 0 to p-1.
//   - length is the message's length; it must equal the bytes that follow.
//   - k is the group's number of data shards, 1 to D, and p its number of
//     parity shards, which must be max(1, ceil(k×P/D)).
//   - S, the parity's length, is 2 plus the group's longest message.
//
// The code is Reed-Solomon over GF(2^8) with polynomial 0x11D, from a
// Vandermonde matrix made systematic (Backblaze's JavaReedSolomon code, and
// github.com/klauspost/reedsolomon's default: New(k, p)). Its k data shards
// are, for each message in index order, the 2-byte length and the message
// zero-padded to S bytes; the padding exists only for the arithmetic and is
// never sent. A rebuilt shard's length field says how much of it is the
// message. Parity shard j is the code's parity output j.
//
// A receiver keeps the 64 most recent group numbers (the newest seen and
// the 63 before it, modulo 2^32). A shard of an older group is dropped; one
// 65536 or more groups behind the newest means the sender started over,
// and the receiver does so too. It holds copies of the shards of its open
// groups, for rebuilding, up to a full group of the largest shards or 1 MiB,
// whichever is more, and gives up its oldest open groups past that. Lost counts a group's missing messages when
// the group leaves the window or the receiver closes, counting those it
// knows of: below k once a parity shard has told it k, otherwise below the
// highest index that arrived. A group lost whole, or whose parity and last
// messages were all lost, hides those messages from it.
package fec

import (
	"fmt"
	"log/slog"
	"time"
)

// MaxMessage is the largest message fec carries: the largest UDP payload
// over IPv4 (65535 − 20 − 8 = 65507 bytes, the limit raw keeps) less a
// parity shard's header and the 2-byte length inside its shard, since the
// parity of a group holding such a message is 14 bytes longer than it.
const MaxMessage = maxPayload - parityHeaderBytes - lengthBytes

// HeaderBytes is what each data shard carries on the wire besides its
// message: the 10-byte shard header and the 2-byte length. A parity shard
// carries 12 header bytes and 2 plus the group's longest message.
const HeaderBytes = headerBytes + lengthBytes

// Defaults, each with the reason for its value.
const (
	// DefaultDataShards and DefaultParityShards: 3 parity per 10 data
	// repair up to 3 losses in 13 datagrams for 30% more datagrams, kcptun's
	// default and the reliable transport's, so the two compare alike.
	DefaultDataShards   = 10
	DefaultParityShards = 3
	// DefaultFlush is the longest a message waits for its group's parity,
	// and so the longest repair delay a partial group adds. It is shorter
	// than the 5 ms between the comparison's messages, so at that pace a
	// message mostly closes its own group (one parity shard, 1 ms before
	// the next message); a send late by more than the 1 ms margin shares
	// the group instead, so which messages share a group, and so the
	// datagrams' order, depends on timing. A faster sender fills groups
	// and never waits for it.
	DefaultFlush = 4 * time.Millisecond
	// DefaultIdle: fec has no connection to end, so a server forgets a peer
	// after this long without a datagram from it, as reliable.DefaultIdle
	// forgets a silent session.
	DefaultIdle = 60 * time.Second
	// DefaultMaxPeers bounds the server's peer table (each peer holds a
	// decoder's window and an encoder's open group) against floods of new
	// source addresses, as reliable.DefaultMaxSessions does.
	DefaultMaxPeers = 1024
)

// Config configures both ends of the fec transport. The zero value (or a
// nil *Config) works. Client and server must agree on DataShards and
// ParityShards.
type Config struct {
	// DataShards is D, the messages in a full group; zero means 10.
	// ParityShards is P, a full group's parity shards; zero means 3. Each
	// is at least 1, and D+P at most 256.
	DataShards, ParityShards int
	// Flush is how long a group may wait for its D messages before it is
	// closed with parity over those it has. Zero means DefaultFlush (4ms).
	Flush time.Duration
	// Idle is how long a server keeps a peer it hears nothing from. Zero
	// means 60s. Clients ignore it.
	Idle time.Duration
	// MaxPeers bounds the peers a server keeps; datagrams from a new
	// address beyond it are dropped and counted. Zero means 1024. Clients
	// ignore it.
	MaxPeers int
	// Logger receives the server's warnings (a failing socket, a full peer
	// table). Nil discards them.
	Logger *slog.Logger
	// AllowLowPorts: a server answers sources on ports below 1024 too. By default
	// they are dropped and counted: ordinary clients never send from one,
	// and reflection attacks aim replies at the services there.
	AllowLowPorts bool
}

// WithDefaults returns a copy of c with every zero field at the default the
// transport would use.
func (c Config) WithDefaults() Config {
	if c.DataShards == 0 {
		c.DataShards = DefaultDataShards
	}
	if c.ParityShards == 0 {
		c.ParityShards = DefaultParityShards
	}
	if c.Flush == 0 {
		c.Flush = DefaultFlush
	}
	if c.Idle == 0 {
		c.Idle = DefaultIdle
	}
	if c.MaxPeers == 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first setting in c, after defaults, that the
// transport would refuse. A nil c is the zero Config.
func (c *Config) Validate() error {
	_, err := c.populate()
	return err
}

// populate returns c (or the zero Config) with defaults filled in, checked.
func (c *Config) populate() (Config, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	cfg = cfg.WithDefaults()
	return cfg, cfg.check()
}

func (c *Config) check() error {
	switch {
	case c.DataShards < 1 || c.ParityShards < 1 || c.DataShards+c.ParityShards > maxShards:
		return fmt.Errorf("fec: DataShards %d, ParityShards %d: want at least 1 each and at most %d together",
			c.DataShards, c.ParityShards, maxShards)
	case c.Flush < 0:
		return fmt.Errorf("fec: Flush %v: want a positive duration", c.Flush)
	case c.Idle < 0:
		return fmt.Errorf("fec: Idle %v: want a positive duration", c.Idle)
	case c.MaxPeers < 0:
		return fmt.Errorf("fec: MaxPeers %d: want at least 1", c.MaxPeers)
	}
	return nil
}

// Stats is what one Conn's or Server's FEC did. Every counter is
// cumulative; a Server's sums all its peers, forgotten ones included.
type Stats struct {
	DataSent   uint64 // data shards sent: messages
	ParitySent uint64 // parity shards sent
	// Received counts data shards that arrived and were delivered; a
	// duplicate is not counted again.
	Received uint64
	// Recovered counts messages rebuilt from parity and delivered.
	Recovered uint64
	// Lost counts messages known missing from a closed group that could
	// not be rebuilt (see the package doc for what a receiver knows).
	Lost uint64
	// Malformed counts datagrams dropped for a bad header, checksum or
	// shard, or for counts that contradict their group's.
	Malformed uint64
	// Groups counts groups closed by the sender, and Flushed those of them
	// closed early, by the flush timeout, before they filled.
	Groups, Flushed uint64
}
