//go:build !linux

package batch

import "net"

// mmsgConn is Linux's; elsewhere every batch goes one datagram per call.
type mmsgConn struct{}

func newMmsgConn(*net.UDPConn, int) *mmsgConn                      { return nil }
func (*mmsgConn) setBuffers([]Message)                             {}
func (*mmsgConn) read(_ *Reader, out []Message) ([]Message, error) { return out, nil }
func (*mmsgConn) enableGRO() bool                                  { return false }
func (*mmsgConn) enableTimestamps() bool                           { return false }
func (*mmsgConn) write([]Message)                                  {}
