package link

import (
	"encoding/binary"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/batch"
	"github.com/udplab/udplab/internal/sockstat"
)

// loadRate and loadDelay are BenchmarkProxyDelayedLoad's offered load and
// the delay it goes through.
const (
	loadRate  = 50_000 // packets a second
	loadDelay = 10 * time.Millisecond
	loadSize  = 100 // bytes a packet
)

// BenchmarkProxyDelayedLoad sends 50,000 packets a second from a socket
// through a real proxy on loopback with delay=10ms to a receiving socket,
// each packet stamped with the time it is due (sent + 10ms), and reports
// how late each arrived against it: p50 and p99 in µs, received from the
// receiver's socket, so the proxy's reads and writes count along with the
// link's waits. It also reports every way a packet can go missing: socket
// drops at the proxy's listening socket (up) and upstream socket (down),
// the link's drops and write errors, drops at the receiver's socket, and
// packets never received. Target on an idle machine: no drops and a p99
// under 1 ms. b.N is the number of packets.
func BenchmarkProxyDelayedLoad(b *testing.B) {
	preciseWaits.Store(true) // as udplab runs; TestMain turns it off for synctest
	defer preciseWaits.Store(false)
	rx := bigConn(b)
	l, err := New(Spec{Up: Params{Delay: loadDelay}, Down: Params{Delay: loadDelay}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	p, err := NewProxy(ProxyConfig{Listen: "127.0.0.1:0", To: rx.LocalAddr().String(), Link: l})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	tx := bigConn(b)
	late := make([]time.Duration, 0, b.N)
	got := make(chan []time.Duration)
	go func() { got <- receiveLate(rx, late, b.N) }()

	b.ResetTimer()
	sendPaced(b, tx, p.Addr().(*net.UDPAddr), b.N)
	late = <-got
	b.StopTimer()

	st := l.Stats(Up)
	up, down := p.SocketDrops(Up).N, p.SocketDrops(Down).N
	rxDrops, _ := sockstat.Drops(sockstat.Of(rx))
	b.ReportMetric(float64(up), "proxy-listen-drops")
	b.ReportMetric(float64(down), "proxy-upstream-drops")
	b.ReportMetric(float64(st.Dropped()+st.WriteErrors), "link-drops")
	b.ReportMetric(float64(rxDrops), "receiver-drops")
	b.ReportMetric(float64(b.N-len(late)), "missing")
	if len(late) == 0 {
		b.Fatal("nothing received")
	}
	slices.Sort(late)
	b.ReportMetric(float64(late[len(late)/2].Microseconds()), "p50-late-µs")
	b.ReportMetric(float64(late[len(late)*99/100].Microseconds()), "p99-late-µs")
	b.ReportMetric(float64(st.Lateness.P50.Microseconds()), "link-p50-late-µs") // the link's own figures: its wait only
	b.ReportMetric(float64(st.Lateness.P99.Microseconds()), "link-p99-late-µs")
}

// sendPaced sends n packets from c to addr at loadRate, one datagram per
// call as an ordinary program does. Sleeps wake in bursts, but each
// packet's due time is stamped as it is sent, so the pacing does not bias
// the measurement.
func sendPaced(b *testing.B, c *net.UDPConn, addr *net.UDPAddr, n int) {
	to := addr.AddrPort()
	buf := make([]byte, loadSize)
	const gap = time.Second / loadRate
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * gap)); wait > 0 {
			time.Sleep(wait)
		}
		binary.LittleEndian.PutUint64(buf, uint64(time.Now().Add(loadDelay).UnixNano()))
		if _, err := c.WriteToUDPAddrPort(buf, to); err != nil {
			b.Fatal(err)
		}
	}
}

// receiveLate reads up to n packets from c and appends to late how late
// each reached c against the due time it carries; it stops once a second
// has passed with nothing more. Where the kernel stamps arrivals, a
// packet's time is its stamp, so the receiver's own scheduling does not
// count against the link.
func receiveLate(c *net.UDPConn, late []time.Duration, n int) []time.Duration {
	r := batch.NewReader(c, 64, 2048)
	r.EnableTimestamps()
	for len(late) < n {
		c.SetReadDeadline(time.Now().Add(time.Second))
		ms, err := r.Read()
		if err != nil {
			return late
		}
		for _, m := range ms {
			if len(m.Buf) >= 8 {
				late = append(late, m.At.Sub(time.Unix(0, int64(binary.LittleEndian.Uint64(m.Buf)))))
			}
		}
	}
	return late
}
