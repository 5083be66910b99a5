package quic

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
)

// chatPair connects two chat peers over loopback, the dialer pinning the
// accepting end's certificate, as AcceptPeer logs it with its address.
func chatPair(t *testing.T) (listener, dialer *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	var logged records
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := AcceptPeer(ctx, "127.0.0.1:0", &ServerConfig{Logger: slog.New(&logged)})
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	var waiting []slog.Record
	conntest.WaitFor(t, func() bool { waiting = logged.at(slog.LevelInfo); return len(waiting) > 0 })
	attrs := make(map[string]string)
	waiting[0].Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	d, err := DialPeer(ctx, attrs["addr"], &ClientConfig{Pin: attrs["fingerprint"]})
	if err != nil {
		t.Fatal(err)
	}
	l := <-accepted
	if l == nil {
		d.Close()
		t.FailNow()
	}
	t.Cleanup(func() { l.Close(); d.Close() })
	return l, d
}

func TestChat(t *testing.T) {
	l, d := chatPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	for _, step := range []struct {
		from, to *Conn
		msg      string
	}{{d, l, "hi"}, {l, d, "hello back"}, {d, l, ""}, {l, d, "one more"}} {
		if err := step.from.Send(ctx, []byte(step.msg)); err != nil {
			t.Fatal(err)
		}
		if got, err := step.to.Receive(ctx); err != nil || string(got) != step.msg {
			t.Fatalf("Receive = %q, %v; want %q", got, err, step.msg)
		}
	}
	// Nobody else joins the conversation.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if c, err := DialPeer(short, l.LocalAddr().String(), nil); err == nil {
		c.Close()
		t.Error("a second peer could connect after AcceptPeer")
	}
}

// TestChatLastWord: a peer that sends and closes at once still has its
// message delivered (Close lingers for it), and then the other side's
// Receive ends with io.EOF.
func TestChatLastWord(t *testing.T) {
	l, d := chatPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	if err := d.Send(ctx, []byte("byebye")); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if got, err := l.Receive(ctx); err != nil || string(got) != "byebye" {
		t.Fatalf("Receive = %q, %v; want byebye", got, err)
	}
	if _, err := l.Receive(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("Receive after the peer closed = %v, want io.EOF", err)
	}
}

func TestAcceptPeerCancel(t *testing.T) {
	cause := errors.New("nobody came")
	ctx, cancel := context.WithCancelCause(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := AcceptPeer(ctx, "127.0.0.1:0", nil)
		errc <- err
	}()
	cancel(cause)
	if err := <-errc; !errors.Is(err, cause) {
		t.Errorf("AcceptPeer after cancel = %v, want the cause", err)
	}
}
