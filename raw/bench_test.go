package raw

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/paired"
	"github.com/udplab/udplab/message"
)

// inFlight is how many greetings the benchmark client keeps outstanding.
const inFlight = 32

// BenchmarkGreetingVsBaseline measures greetings per second through the raw
// server and through a minimal ReadFrom/WriteTo loop that answers the same
// greeting, alternately in the same run, with 32 requests in flight, and
// reports the median raw/baseline over 7 rounds: the cost of udplab's server
// over bare sockets. b.N is the number of greetings per side.
func BenchmarkGreetingVsBaseline(b *testing.B) {
	b.ReportAllocs()
	paired.Compare(b, 7, "baseline-req/s", "raw-req/s", "raw/baseline",
		func() float64 { return conntest.GreetingRate(b, startBaseline(b), b.N, inFlight) },
		func() float64 { return conntest.GreetingRate(b, startRaw(b), b.N, inFlight) })
}

// BenchmarkGreetingVsPython measures greetings per second through the raw
// server and through the tutorial's Python server (the twin of the client
// the README quotes: recvfrom(1024), then sendto "Hello NAME!\n"),
// alternately in the same run, with 32 requests in flight from the same
// generator, and reports the median raw/python over 7 rounds. It skips
// where there is no python3. b.N is the number of greetings per side.
func BenchmarkGreetingVsPython(b *testing.B) {
	py := startPython(b)
	b.ReportAllocs()
	paired.Compare(b, 7, "python-req/s", "raw-req/s", "raw/python",
		func() float64 { return conntest.GreetingRate(b, py, b.N, inFlight) },
		func() float64 { return conntest.GreetingRate(b, startRaw(b), b.N, inFlight) })
}

// pythonServer is the classic tutorial's UDP greeting server.
const pythonServer = `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    data, addr = s.recvfrom(1024)
    s.sendto(b"Hello " + data + b"!\n", addr)
`

// startPython runs pythonServer on a free loopback port until the
// benchmark ends, and returns its address once it answers.
func startPython(b *testing.B) net.Addr {
	python, err := exec.LookPath("python3")
	if err != nil {
		b.Skip("no python3")
	}
	pc := listenBench(b) // a free port, let go for python to bind
	addr := pc.LocalAddr().(*net.UDPAddr)
	pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, python, "-c", pythonServer, strconv.Itoa(addr.Port))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); cmd.Wait() })
	if err := awaitGreeting(addr); err != nil {
		b.Fatalf("python server on %v: %v", addr, err)
	}
	return addr
}

// awaitGreeting asks the server at addr for a greeting until it answers,
// for up to 10s: python takes a moment to start.
func awaitGreeting(addr *net.UDPAddr) error {
	c, err := net.DialUDP("udp4", nil, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 64)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		c.Write([]byte("ready"))
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "Hello ready!\n" {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // a closed port answers at once, with an error
	}
	return errors.New("no answer within 10s")
}

func startRaw(b *testing.B) net.Addr {
	pc := listenBench(b)
	s := NewServer(pc, message.Greet, nil)
	b.Cleanup(func() { s.Close() })
	return s.Addr()
}

// startBaseline serves the greeting with the least code that can: the
// yardstick, not a server anyone should run.
func startBaseline(b *testing.B) net.Addr {
	pc := listenBench(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, readBufferSize)
		reply := make([]byte, 0, readBufferSize)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			reply = append(append(append(reply[:0], "Hello "...), buf[:n]...), "!\n"...)
			pc.WriteTo(reply, from)
		}
	}()
	b.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr()
}

func listenBench(b *testing.B) net.PacketConn {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	return pc
}
