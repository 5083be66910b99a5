package sockstat

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// TestDropsCountOverflow fills a small receive buffer that nobody reads and
// checks that the counter accounts for every datagram that did not fit:
// what was sent equals what is queued plus what was dropped.
func TestDropsCountOverflow(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the drop counter is read from /proc on Linux only")
	}
	rx, tx := smallSocket(t)
	s := Of(rx)
	if !s.Known() {
		t.Fatal("Of(*net.UDPConn) is unknown on Linux")
	}
	if n, ok := Drops(s); !ok || n != 0 {
		t.Fatalf("Drops before sending = %d, %v; want 0, true", n, ok)
	}
	const sent = 500
	for range sent {
		if _, err := tx.Write(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	drops, ok := Drops(s)
	if !ok || drops == 0 {
		t.Fatalf("Drops after %d datagrams into a 4 KiB buffer = %d, %v; want some", sent, drops, ok)
	}
	// Loopback delivers synchronously within Write, so everything not
	// dropped is queued already: exactly sent - drops datagrams can be
	// read (each read may wait long, in case the test is descheduled), and
	// then none more (a short wait: load can only make that pass).
	want := sent - int(drops)
	buf := make([]byte, 200)
	for i := range want {
		rx.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := rx.Read(buf); err != nil {
			t.Fatalf("read %d of the %d queued (%d sent - %d dropped): %v", i, want, sent, drops, err)
		}
	}
	rx.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := rx.Read(buf); err == nil {
		t.Errorf("more than %d queued: %d sent, %d counted as dropped", want, sent, drops)
	}
}

// smallSocket returns a loopback socket with a 4 KiB receive buffer, and
// one connected to it; the test's cleanup closes both.
func smallSocket(t *testing.T) (rx, tx *net.UDPConn) {
	t.Helper()
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	if err := rx.SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	tx, err = net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	return rx, tx
}

func TestUnknownSocket(t *testing.T) {
	var s Socket
	if s.Known() {
		t.Fatal("zero Socket is known")
	}
	if _, ok := Drops(s); ok {
		t.Fatal("Drops(zero Socket) reported a count")
	}
	if Of(struct{}{}).Known() {
		t.Fatal("Of(non-conn) is known")
	}
}

// TestCounterKeepsLastReading: the kernel forgets a closed socket's
// counter, so the count Counter.Close took is what remains.
func TestCounterKeepsLastReading(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the drop counter is read from /proc on Linux only")
	}
	rx, tx := smallSocket(t)
	c := NewCounter(rx)
	for range 500 {
		tx.Write(make([]byte, 100))
	}
	before, ok := c.Drops()
	if !ok || before == 0 {
		t.Fatalf("Drops after 500 datagrams into a 4 KiB buffer = %d, %v; want some", before, ok)
	}
	s := Of(rx)
	c.Close()
	rx.Close()
	if _, ok := Drops(s); ok {
		t.Error("a closed socket's counter is still readable; Counter is not needed")
	}
	if after, ok := c.Drops(); !ok || after != before {
		t.Errorf("Drops after Close = %d, %v; want %d, true", after, ok, before)
	}
}

func TestCounterUnknown(t *testing.T) {
	c := NewCounter(struct{}{})
	if _, ok := c.Drops(); ok {
		t.Error("Drops of a non-socket reported a count")
	}
	c.Close()
	if _, ok := c.Drops(); ok {
		t.Error("Drops of a non-socket after Close reported a count")
	}
}
