package tcprelay

import "time"

// Every tuning constant of the package, each with why it has its value.
const (
	// DefaultMaxConns is Config.MaxConns when zero. A connection holds a
	// user-space TCP host of its own (a reader goroutine and one TCP
	// worker per CPU), a UDP socket, four copy buffers, and up to a few
	// MiB in the two middle endpoints' buffers (a 1 MiB send buffer each,
	// a receive buffer that starts at 1 MiB and grows only for a reader
	// that keeps up): 64 of them stay within a few hundred MiB however
	// slow the end programs read.
	DefaultMaxConns = 64

	// DefaultDialTimeout is Config.DialTimeout when zero: how long the far
	// side tries to connect to the server, as a browser's or curl's
	// connect timeout would be on a LAN.
	DefaultDialTimeout = 10 * time.Second

	// middleDialTimeout bounds the middle leg's handshake across the
	// simulated link: netstack sends a SYN, then again after 1 s, 2 s, 4 s
	// and 8 s, so 30 s lets five SYNs (or their SYN-ACKs) be lost in a
	// row before the end program's connection is reset.
	middleDialTimeout = 30 * time.Second

	// middleLinger is how long the near side's Close waits for its last
	// data and FIN to be acknowledged across the link before it stops
	// that connection's host. Netstack's RTO starts at 200 ms and doubles:
	// seven tries take 25.4 s, so 30 s lets the last segment be lost six
	// times before the far end loses the tail of the stream. A relay's
	// Close does not wait for it: it resets every connection.
	middleLinger = 30 * time.Second

	// copyBuffer is the size of each of the four buffers a connection
	// copies through (two directions on each side): io.Copy's own size,
	// enough to keep a stream busy; the TCP buffers on either side do the
	// real buffering.
	copyBuffer = 32 << 10
)
