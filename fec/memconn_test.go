package fec

import (
	"net"
	"testing"

	"github.com/udplab/udplab/message"
)

// newClient returns a Conn over pc to remote, closed as t ends.
func newClient(t testing.TB, pc net.PacketConn, remote net.Addr, cfg *Config) *Conn {
	t.Helper()
	c, err := NewConn(pc, remote, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newServer returns a Server of h over pc, closed as t ends.
func newServer(t testing.TB, pc net.PacketConn, h message.Handler, cfg *Config) *Server {
	t.Helper()
	s, err := NewServer(pc, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
