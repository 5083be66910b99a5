package quic

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	quicgo "github.com/quic-go/quic-go"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/message"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// startServer serves h on addr until the test ends. It skips t if it
// cannot bind (no IPv6, say).
func startServer(t testing.TB, addr string, h message.Handler, cfg *ServerConfig) *Server {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	s, err := NewServer(pc, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dialTo connects to s, pinning its certificate, until the test ends.
func dialTo(t testing.TB, s *Server) *Conn {
	t.Helper()
	return dialPinned(t, s.Addr(), s.Fingerprint())
}

func dialPinned(t testing.TB, addr net.Addr, pin string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	c, err := Dial(ctx, addr.String(), &ClientConfig{Pin: pin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConformance runs the contract every transport keeps. Each client
// pins its server's certificate.
func TestConformance(t *testing.T) {
	var pins sync.Map // server address → fingerprint
	conntest.Run(t, conntest.Transport{
		Serve: func(t testing.TB, addr string, h message.Handler) net.Addr {
			s := startServer(t, addr, h, nil)
			pins.Store(s.Addr().String(), s.Fingerprint())
			return s.Addr()
		},
		Dial: func(t testing.TB, addr net.Addr) message.Conn {
			pin, _ := pins.Load(addr.String())
			return dialPinned(t, addr, pin.(string))
		},
		MaxMessage: MaxMessage,
	})
}

// plainClient dials addr with quic-go alone, as any QUIC client following
// the package comment would, pinning the server's certificate by hand.
func plainClient(t testing.TB, addr net.Addr, pin string) *quicgo.Conn {
	t.Helper()
	tlsConf := &tls.Config{
		NextProtos:         []string{"udplab"},
		InsecureSkipVerify: true, // verified by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if got := fingerprint(raw[0]); got != pin {
				return errors.New("wrong certificate " + got)
			}
			return nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	qc, err := quicgo.DialAddr(ctx, addr.String(), tlsConf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	return qc
}

// plainRequest sends req on a new stream of qc and reads the reply to
// EOF, as the protocol says.
func plainRequest(t testing.TB, qc *quicgo.Conn, req []byte) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	str, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		// A write the server stops with STOP_SENDING fails; the read
		// below says why.
		if _, err := str.Write(req); err == nil {
			str.Close()
		}
	}()
	return io.ReadAll(str)
}

// TestInterop greets a Listen'ed server from a quic-go client that knows
// only the documented protocol.
func TestInterop(t *testing.T) {
	s, err := Listen("127.0.0.1:0", message.Greet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	qc := plainClient(t, s.Addr(), s.Fingerprint())
	for _, tt := range []struct{ req, want string }{
		{"Alice", "Hello Alice!\n"},
		{"exit", "Good bye!\n"},
		{"Bob\n", "Hello Bob!\n"}, // after exit, on the same connection
	} {
		got, err := plainRequest(t, qc, []byte(tt.req))
		if err != nil || string(got) != tt.want {
			t.Errorf("request %q = %q, %v; want %q", tt.req, got, err, tt.want)
		}
	}
	// An empty request is refused: a reset with CodeRefused, not an empty
	// reply.
	_, err = plainRequest(t, qc, nil)
	var se *quicgo.StreamError
	if !errors.As(err, &se) || se.ErrorCode != CodeRefused || !se.Remote {
		t.Errorf("empty request: %v, want a reset with CodeRefused", err)
	}
	if qc.ConnectionState().TLS.NegotiatedProtocol != ALPN {
		t.Errorf("ALPN = %q", qc.ConnectionState().TLS.NegotiatedProtocol)
	}
}

// TestOversizedRequest: a request longer than MaxMessage is stopped and
// reset with CodeTooLarge, counted as a bad request, and the server goes
// on serving that connection and others.
func TestOversizedRequest(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Echo, nil)
	qc := plainClient(t, s.Addr(), s.Fingerprint())
	_, err := plainRequest(t, qc, bytes.Repeat([]byte("a"), MaxMessage+1))
	var se *quicgo.StreamError
	if !errors.As(err, &se) || se.ErrorCode != CodeTooLarge {
		t.Errorf("oversized request: %v, want a reset with CodeTooLarge", err)
	}
	if got, err := plainRequest(t, qc, []byte("after")); err != nil || string(got) != "after" {
		t.Errorf("next request on the connection = %q, %v", got, err)
	}
	if got := conntest.RoundTrip(t, dialTo(t, s), "other"); got != "other" {
		t.Errorf("another client's reply = %q", got)
	}
	if st := s.Stats(); st.BadRequests != 1 || st.Requests != 2 {
		t.Errorf("stats = %+v, want 1 bad request and 2 handled", st)
	}
	// MaxMessage itself is fine, both ways.
	big := bytes.Repeat([]byte("b"), MaxMessage)
	if got, err := plainRequest(t, qc, big); err != nil || !bytes.Equal(got, big) {
		t.Errorf("MaxMessage echo = %d bytes, %v", len(got), err)
	}
}

func TestReadMessage(t *testing.T) {
	for _, n := range []int{0, 1, startBuffer, startBuffer + 1, MaxMessage} {
		msg := bytes.Repeat([]byte("x"), n)
		got, err := readMessage(chunks(msg), nil)
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("readMessage(%d bytes) = %d bytes, %v", n, len(got), err)
		}
		if cap(got) > MaxMessage+1 || cap(got) > 2*n+3*startBuffer {
			t.Errorf("readMessage(%d bytes) holds %d", n, cap(got))
		}
	}
	got, err := readMessage(chunks(make([]byte, MaxMessage+1)), nil)
	if !errors.Is(err, errTooLarge) || !errors.Is(err, message.ErrTooLarge) || cap(got) > MaxMessage+1 {
		t.Errorf("readMessage(MaxMessage+1) = %d bytes (cap %d), %v; want errTooLarge", len(got), cap(got), err)
	}
	if !strings.Contains(errTooLarge.Error(), "1048576") {
		t.Errorf("errTooLarge = %q, want the limit named", errTooLarge)
	}
}

// chunks reads b at most 1000 bytes at a time, then io.EOF.
func chunks(b []byte) io.Reader { return &smallReader{b} }

type smallReader struct{ b []byte }

func (r *smallReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1000)], r.b)
	r.b = r.b[n:]
	return n, nil
}
