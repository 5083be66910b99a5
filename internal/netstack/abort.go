package netstack

import (
	"net"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Abort resets c, a connection that Dial returned or a Listener accepted:
// instead of a FIN after the unsent data, the peer gets a RST, and data
// still unsent or unread is dropped, as SO_LINGER with a zero timeout does
// on a kernel socket. c is then closed as Close closes it, without
// lingering: blocked and later calls return errors matching net.ErrClosed.
// Abort reports whether c is this package's connection; on any other it
// does nothing. On a connection already closed it only stops what Close
// left running.
func Abort(c net.Conn) bool {
	switch c := c.(type) {
	case *Conn:
		c.st.setResetOnClose()
		c.st.close()
		c.st.h.close() // without lingering; a Close lingering now stops too
	case *stream:
		c.setResetOnClose()
		_ = c.Close()
	default:
		return false
	}
	return true
}

// setResetOnClose makes the stream's Close send a RST, as SO_LINGER with a
// zero timeout does.
func (s *stream) setResetOnClose() {
	s.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true, Timeout: 0})
}
