package tcpinfo

import (
	"io"
	"net"
	"runtime"
	"testing"

	"github.com/udplab/udplab/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// TestRead: after a write and its echo over loopback, the kernel has
// counted both directions' bytes and segments.
func TestRead(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_INFO is read on Linux only")
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.CopyN(c, c, 1000)
	}()
	c, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	info, ok := Read(c.(*net.TCPConn))
	<-done
	if !ok {
		t.Fatal("TCP_INFO unread on Linux")
	}
	// The kernel counts sequence space: the peer's FIN, if it came, is
	// one more byte received.
	if info.BytesSent != 1000 || info.BytesReceived < 1000 || info.BytesReceived > 1001 ||
		info.SegmentsOut < 2 || info.SegmentsIn < 2 {
		t.Errorf("info = %+v, want 1000 bytes each way (1001 in with the FIN) in at least 2 segments each", info)
	}
	if info.HeaderBytes != 40 && info.HeaderBytes != 52 {
		t.Errorf("header bytes %d, want 40 or 52 (with timestamps)", info.HeaderBytes)
	}
}
