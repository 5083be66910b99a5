package reliable

import (
	"runtime"
	"testing"

	"github.com/udplab/udplab/message"
)

// TestServerSocketDrops: on Linux the server reads its socket's drop count,
// before and after Close; elsewhere it says the count is unknown.
func TestServerSocketDrops(t *testing.T) {
	s := startServer(t, "udp4", "127.0.0.1:0", message.Greet, Config{})
	known := runtime.GOOS == "linux"
	if n, ok := s.SocketDrops(); ok != known || n != 0 {
		t.Errorf("SocketDrops = %d, %v; want 0, %v", n, ok, known)
	}
	s.Close()
	if n, ok := s.SocketDrops(); ok != known || n != 0 {
		t.Errorf("SocketDrops after Close = %d, %v; want 0, %v", n, ok, known)
	}
}
