package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/udplab/udplab/internal/udpsock"
)

// A capture's two interfaces, in the order the file declares them.
const (
	captureEntered = 0 // datagrams as the proxy read them, before the link
	captureLeft    = 1 // datagrams as the proxy wrote them, after the link
)

// Capture tuning. A capture never blocks the link: what its writer cannot
// take at once is dropped and counted.
const (
	// captureQueue is how many packets may wait for the writer: about
	// 40 ms of a 100k packet/s flood, time for a disk to catch up.
	captureQueue = 4096
	// captureQueueBytes bounds the payload bytes waiting for the writer,
	// so that 4096 datagrams of 64 KiB cannot pin 256 MiB: 8 MiB hold
	// the whole queue of 1500-byte datagrams.
	captureQueueBytes = 8 << 20
	// captureTTL is the TTL (IPv4) or hop limit (IPv6) of the synthesized
	// headers: the proxy sees no real one, and 64 is what Linux sends.
	captureTTL = 64
)

// Capture writes what a Proxy's link did as a pcapng file: interface 0,
// "entered", holds each datagram as the proxy read it (from a client, or
// from the server), interface 1, "left", each datagram as the proxy
// wrote it on (to the server, or to the client). A datagram the link
// dropped appears on "entered" only; a duplicate twice on "left"; a
// corrupted one on "left" with its bit flipped. Each packet carries the
// time the proxy read or wrote it and synthesized IPv4 or IPv6 and UDP
// headers, with correct lengths and checksums (behind an Ethernet
// header with zero MAC addresses), holding the sockets' real
// addresses: client to listen address and upstream socket to server on
// the way up, server to upstream socket and listen address to client on
// the way down. A socket bound to every interface (0.0.0.0 or ::, as
// the upstream sockets are) appears with the address the kernel sends
// from towards its peer, looked up once per client: for the listening
// socket, the proxy cannot know which of the host's addresses a client
// sent to, and this is the usual one.
//
// One goroutine writes the file, from a queue bounded in packets and in
// bytes (captureQueue, captureQueueBytes): when the disk falls behind,
// the packets that do not fit are dropped from the capture and counted,
// never held up, and the link runs on unaware. Its methods are safe for
// concurrent use.
type Capture struct {
	ch     chan capturePacket
	stop   chan struct{}
	exited chan struct{}

	mu     sync.RWMutex // held for writing only by Close, so that no packet is queued after it
	closed bool

	queued  atomic.Int64 // payload bytes in ch
	written [2]atomic.Uint64
	dropped [2]atomic.Uint64

	w   *pcapgo.NgWriter // the writer goroutine's alone
	err error            // the first write error, read after exited closes

	closeOnce sync.Once
}

type capturePacket struct {
	intf     int
	at       time.Time
	src, dst netip.AddrPort
	buf      *[]byte // pooled copy of the payload (see bufs.go)
}

// CaptureStats counts a capture's packets per interface.
type CaptureStats struct {
	Entered, Left               uint64 // packets written to the file
	EnteredDropped, LeftDropped uint64 // packets left out: the writer was behind, failed, or closed
}

// NewCapture writes a pcapng section and the two interfaces' descriptions
// to w, and starts the goroutine writing packets to it until Close. It is
// the caller's responsibility to close w after Close.
func NewCapture(w io.Writer) (*Capture, error) {
	nw, err := pcapgo.NewNgWriterInterface(w, captureInterface("entered", "datagrams as they entered the link, before its impairments"),
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Hardware: runtime.GOARCH, OS: runtime.GOOS, Application: "udplab link"}})
	if err == nil {
		_, err = nw.AddInterface(captureInterface("left", "datagrams as they left the link; those it dropped are missing"))
	}
	if err == nil {
		err = nw.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("link: capture: %w", err)
	}
	c := &Capture{
		ch: make(chan capturePacket, captureQueue), stop: make(chan struct{}), exited: make(chan struct{}),
		w: nw,
	}
	go c.run()
	return c, nil
}

func captureInterface(name, desc string) pcapgo.NgInterface {
	// Ethernet, not raw IP, though the frames' MAC addresses mean
	// nothing: libpcap (tcpdump 4.99) refuses a second raw-IP interface,
	// comparing its link type (101) with the first one's as translated
	// (DLT_RAW, 12). Ethernet's numbers are the same in both.
	return pcapgo.NgInterface{Name: name, Description: desc, OS: runtime.GOOS, LinkType: layers.LinkTypeEthernet, TimestampResolution: 9}
}

// Stats returns the capture's counters so far.
func (c *Capture) Stats() CaptureStats {
	return CaptureStats{
		Entered: c.written[captureEntered].Load(), Left: c.written[captureLeft].Load(),
		EnteredDropped: c.dropped[captureEntered].Load(), LeftDropped: c.dropped[captureLeft].Load(),
	}
}

// record queues a copy of b for interface intf, or drops and counts it
// when the queue is full or the capture closed. It never blocks.
func (c *Capture) record(intf int, at time.Time, src, dst netip.AddrPort, b []byte) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed || c.queued.Add(int64(len(b))) > captureQueueBytes {
		if !c.closed {
			c.queued.Add(-int64(len(b)))
		}
		c.dropped[intf].Add(1)
		return
	}
	p := capturePacket{intf: intf, at: at, src: src, dst: dst, buf: getBuf(b)}
	select {
	case c.ch <- p:
	default:
		c.queued.Add(-int64(len(b)))
		putBuf(p.buf)
		c.dropped[intf].Add(1)
	}
}

// run is the capture's one writer goroutine. It flushes whenever it has
// caught up, so that the file is readable while the link runs.
func (c *Capture) run() {
	defer close(c.exited)
	s := newCaptureSerializer()
	dirty := false
	for {
		select {
		case p := <-c.ch:
			c.write(s, p)
			dirty = true
			continue
		default:
		}
		if dirty {
			c.flush()
			dirty = false
		}
		select {
		case p := <-c.ch:
			c.write(s, p)
			dirty = true
		case <-c.stop:
			for {
				select {
				case p := <-c.ch:
					c.write(s, p)
				default:
					c.flush()
					return
				}
			}
		}
	}
}

func (c *Capture) write(s *captureSerializer, p capturePacket) {
	defer putBuf(p.buf)
	c.queued.Add(-int64(len(*p.buf)))
	if c.err == nil {
		var data []byte
		if data, c.err = s.serialize(p.src, p.dst, *p.buf); c.err == nil {
			c.err = c.w.WritePacket(gopacket.CaptureInfo{Timestamp: p.at, CaptureLength: len(data), Length: len(data), InterfaceIndex: p.intf}, data)
		}
	}
	if c.err != nil {
		c.dropped[p.intf].Add(1)
		return
	}
	c.written[p.intf].Add(1)
}

func (c *Capture) flush() {
	if c.err == nil {
		c.err = c.w.Flush()
	}
}

// Close writes the packets still queued, then each interface's
// statistics (packets dropped from the capture), and flushes. Packets
// recorded after Close are dropped and counted. It returns the first
// error writing the file, and is safe to call twice; it does not close
// the io.Writer.
func (c *Capture) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
		<-c.exited
		if c.err == nil {
			now := time.Now()
			for i := range c.dropped {
				c.err = c.w.WriteInterfaceStats(i, pcapgo.NgInterfaceStatistics{
					LastUpdate: now, PacketsReceived: c.written[i].Load() + c.dropped[i].Load(), PacketsDropped: c.dropped[i].Load(),
				})
				if c.err != nil {
					break
				}
			}
		}
		if c.err == nil {
			c.err = c.w.Flush()
		}
		if c.err != nil {
			c.err = fmt.Errorf("link: capture: %w", c.err)
		}
	})
	return c.err
}

// captureSerializer builds each packet's headers, reusing its layers and
// buffer from one packet to the next.
type captureSerializer struct {
	buf  gopacket.SerializeBuffer
	ip4  layers.IPv4
	ip6  layers.IPv6
	udp  layers.UDP
	opts gopacket.SerializeOptions
}

func newCaptureSerializer() *captureSerializer {
	return &captureSerializer{
		buf:  gopacket.NewSerializeBuffer(),
		ip4:  layers.IPv4{Version: 4, IHL: 5, TTL: captureTTL, Protocol: layers.IPProtocolUDP},
		ip6:  layers.IPv6{Version: 6, HopLimit: captureTTL, NextHeader: layers.IPProtocolUDP},
		opts: gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
	}
}

// errCaptureTooLong is a datagram too long for the IP header's length
// field: no UDP socket delivers one.
var errCaptureTooLong = errors.New("datagram too long for an IP header")

// serialize returns b behind Ethernet, IP and UDP headers from src to dst. The
// result is valid until the next call.
func (s *captureSerializer) serialize(src, dst netip.AddrPort, b []byte) ([]byte, error) {
	sa, da := captureAddrs(src.Addr(), dst.Addr())
	s.udp.SrcPort, s.udp.DstPort = layers.UDPPort(src.Port()), layers.UDPPort(dst.Port())
	var (
		ip      gopacket.SerializableLayer
		ethType layers.EthernetType
	)
	if sa.Is4() {
		if len(b) > 0xffff-20-8 {
			return nil, errCaptureTooLong
		}
		s.ip4.SrcIP, s.ip4.DstIP = sa.AsSlice(), da.AsSlice()
		ip = &s.ip4
		ethType = layers.EthernetTypeIPv4
		_ = s.udp.SetNetworkLayerForChecksum(&s.ip4)
	} else {
		if len(b) > 0xffff-8 {
			return nil, errCaptureTooLong
		}
		s.ip6.SrcIP, s.ip6.DstIP = sa.AsSlice(), da.AsSlice()
		ip = &s.ip6
		ethType = layers.EthernetTypeIPv6
		_ = s.udp.SetNetworkLayerForChecksum(&s.ip6)
	}
	if err := gopacket.SerializeLayers(s.buf, s.opts, ip, &s.udp, gopacket.Payload(b)); err != nil {
		return nil, err
	}
	// The Ethernet header by hand: gopacket's pads frames to Ethernet's
	// 60-byte minimum, and readers would show the padding as a trailer.
	eth, err := s.buf.PrependBytes(14)
	if err != nil {
		return nil, err
	}
	clear(eth[:12]) // no MAC addresses
	binary.BigEndian.PutUint16(eth[12:], uint16(ethType))
	return s.buf.Bytes(), nil
}

// captureAddrs puts src and dst in one family for a header: IPv4 when
// both are (an unspecified or unknown one taking the other's family),
// IPv6 otherwise, an IPv4 address then mapped.
func captureAddrs(src, dst netip.Addr) (netip.Addr, netip.Addr) {
	src, dst = src.Unmap(), dst.Unmap()
	v4 := func(a, other netip.Addr) bool {
		return a.Is4() || (!a.IsValid() || a.IsUnspecified()) && !other.Is6()
	}
	if v4(src, dst) && v4(dst, src) {
		return as4(src), as4(dst)
	}
	return as6(src), as6(dst)
}

func as4(a netip.Addr) netip.Addr {
	if a.Is4() {
		return a
	}
	return netip.IPv4Unspecified()
}

func as6(a netip.Addr) netip.Addr {
	if !a.IsValid() || a.Is4() && a.IsUnspecified() {
		return netip.IPv6Unspecified()
	}
	return netip.AddrFrom16(a.As16())
}

// captureAddr is a's address and port for a capture: a UDP address's,
// unmapped, or the zero AddrPort for any other kind.
func captureAddr(a net.Addr) netip.AddrPort { return udpsock.AddrPort(a) }

// captureSink writes to out, recording each datagram written on the
// "left" interface as sent from src.
type captureSink struct {
	out sink
	c   *Capture
	src netip.AddrPort
}

func (s *captureSink) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := s.out.WriteTo(b, addr)
	if err == nil {
		s.c.record(captureLeft, time.Now(), s.src, captureAddr(addr), b)
	}
	return n, err
}

// captureOut is out, recording on c's "left" interface as sent from src
// when c is set.
func captureOut(out sink, c *Capture, src netip.AddrPort) sink {
	if c == nil {
		return out
	}
	return &captureSink{out: out, c: c, src: src}
}

// captureLocal is a socket's address local as the peer sees it: local
// itself, unless its address is unspecified (a socket bound to every
// interface), then the address the kernel would send to peer from, as a
// connected socket finds it.
func captureLocal(local net.Addr, peer net.Addr) netip.AddrPort {
	ap := captureAddr(local)
	u, ok := peer.(*net.UDPAddr)
	if ap.Addr().IsValid() && !ap.Addr().IsUnspecified() || !ok {
		return ap
	}
	c, err := net.DialUDP("udp", nil, u)
	if err != nil {
		return ap
	}
	defer c.Close()
	return netip.AddrPortFrom(captureAddr(c.LocalAddr()).Addr(), ap.Port())
}
