package compare

import (
	"context"
	"net"
	"sync/atomic"

	"github.com/udplab/udplab/internal/sockstat"
	"github.com/udplab/udplab/internal/udpsock"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/modes"
)

// targetWire is what a run against a target counts of the wire.
type targetWire struct {
	packets, bytes uint64
	headers        uint64  // IP and transport header bytes, where the kernel counts segments
	retrans        uint64  // segments sent again, where the kernel counts them
	drops          *uint64 // the client socket's drops, nil when unknown
	// beforeClose reads what the kernel forgets when the socket closes;
	// after reads the rest once the run is over.
	beforeClose, after func()
}

// dialTarget opens the client's conversation with a running server and
// the means to count its wire. A datagram mode runs over a socket of the
// client's own that counts what it sends and reads; a stream counts itself
// (modes.WireCounter).
func dialTarget(ctx context.Context, tr modes.Transport, addr string) (message.Conn, *targetWire, error) {
	w := &targetWire{}
	if tr.Traits().Network != "udp" {
		conn, err := tr.DialAddr(ctx, addr)
		if err != nil {
			return nil, nil, err
		}
		// A stream's wire is read once the run is over: the Conn took its
		// last reading as it closed, whenever that was.
		w.beforeClose = func() {}
		w.after = func() {
			if wc, ok := conn.(modes.WireCounter); ok {
				if n, ok := wc.Wire(); ok {
					w.packets, w.bytes, w.headers = n.Packets, n.Bytes, n.HeaderBytes // whole IP packets, as over the link
					w.retrans = n.Retransmissions
				}
			}
		}
		return conn, w, nil
	}
	pc, raddr, err := udpsock.Dial(addr)
	if err != nil {
		return nil, nil, err
	}
	sockstat.SetBuffers(pc)
	sock := sockstat.Of(pc)
	cc := &countingConn{PacketConn: pc}
	conn, err := tr.Dial(ctx, cc, raddr)
	if err != nil {
		return nil, nil, err
	}
	w.beforeClose = func() {
		if n, ok := sockstat.Drops(sock); ok {
			w.drops = &n
		}
	}
	w.after = func() { w.packets, w.bytes = cc.packets.Load(), cc.bytes.Load() }
	return conn, w, nil
}

// countingConn counts the datagrams and bytes a socket sends and
// receives.
type countingConn struct {
	net.PacketConn
	packets, bytes         atomic.Uint64 // both ways
	reads                  atomic.Uint64 // datagrams read
	sentPackets, sentBytes atomic.Uint64 // written
}

func (c *countingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(p, addr)
	if err == nil {
		c.packets.Add(1)
		c.bytes.Add(uint64(n))
		c.sentPackets.Add(1)
		c.sentBytes.Add(uint64(n))
	}
	return n, err
}

func (c *countingConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		c.packets.Add(1)
		c.bytes.Add(uint64(n))
		c.reads.Add(1)
	}
	return n, addr, err
}
