package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/link"
	"github.com/udplab/udplab/link/api"
	"github.com/udplab/udplab/message"
	"github.com/udplab/udplab/raw"
)

// startLink runs udplab link with args in process until the test ends,
// and returns its stdout and stderr, and a function that stops it and
// returns its exit status (the cleanup calls it too, if the test did not).
func startLink(t *testing.T, args ...string) (out, errOut *syncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut = &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"link"}, args...), &stdio{strings.NewReader(""), out, errOut})
	}()
	code, stopped := 0, false
	stop = func() int {
		if !stopped {
			cancel()
			code, stopped = <-done, true
		}
		return code
	}
	t.Cleanup(func() { stop() })
	return out, errOut, stop
}

// greetServer serves raw greetings on a loopback port until the test ends.
func greetServer(t *testing.T) string {
	t.Helper()
	s, err := raw.Listen("127.0.0.1:0", message.Greet, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Addr().String()
}

// replyWait bounds the wait for one greeting's reply: a hang guard, far
// above a loopback round trip on a loaded machine, not a timing claim.
const replyWait = 10 * time.Second

// TestLinkAPICutAndRestore is the API's end-to-end test, as a test suite
// would drive udplab link: start it with --api, create a link in front of
// a greeting server, see greetings answered, cut the link to 100% loss
// through the Go client and see none answered, restore it and see every
// one answered again. Only counts are asserted.
func TestLinkAPICutAndRestore(t *testing.T) {
	server := greetServer(t)
	out, errOut, stop := startLink(t, "--api", "127.0.0.1:0", "--stats", "0")
	url := waitLine(t, errOut, `msg="link: api" url=(\S+)`)[1]
	c := api.New(url)
	ctx := context.Background()
	l, err := c.Create(ctx, api.LinkConfig{Name: "greet", Listen: "127.0.0.1:0", Upstream: server})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := raw.Dial(l.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// greet sends name and waits at most wait for its reply.
	greet := func(name string, wait time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		if err := conn.Send(ctx, []byte(name)); err != nil {
			return "", err
		}
		b, err := conn.Receive(ctx)
		return string(b), err
	}
	answered := func(phase string, n int) {
		t.Helper()
		for i := range n {
			name := fmt.Sprintf("%s-%d", phase, i)
			if got, err := greet(name, replyWait); err != nil || got != "Hello "+name+"!\n" {
				t.Fatalf("%s: greeting %d of %d: %q, %v; want its reply", phase, i+1, n, got, err)
			}
		}
	}

	const before, cut, after = 20, 20, 20
	answered("before", before)

	if l, err = c.SetSpec(ctx, "greet", "loss=100%"); err != nil || l.Spec != "loss=100%,seed=1" {
		t.Fatalf("cut: %+v, %v", l, err)
	}
	for i := range cut {
		if err := conn.Send(ctx, []byte(fmt.Sprintf("cut-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	// Once the link has taken every cut greeting, each has met its fate.
	conntest.WaitFor(t, func() bool {
		l, err = c.Get(ctx, "greet")
		return err == nil && l.Up.Offered == before+cut
	})
	if l.Up.Lost != cut || l.Up.Delivered != before || l.Down.Delivered != before {
		t.Errorf("after the cut: up %v, down %v; want the %d cut greetings lost, the %d before delivered both ways", l.Up, l.Down, cut, before)
	}
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	b, err := conn.Receive(rctx)
	cancel()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a reply through a cut link: %q, %v", b, err)
	}

	if l, err = c.SetSpec(ctx, "greet", ""); err != nil || l.Spec != "seed=1" {
		t.Fatalf("restore: %+v, %v", l, err)
	}
	answered("after", after)
	if l, err = c.Get(ctx, "greet"); err != nil || l.Up.Offered != before+cut+after || l.Up.Lost != cut || l.Down.Delivered != before+after {
		t.Errorf("at the end: %+v, %v; want %d offered up, %d lost, %d delivered down", l, err, before+cut+after, cut, before+after)
	}

	if code := stop(); code != 0 {
		t.Fatalf("udplab link exited %d:\n%s", code, errOut)
	}
	logs := errOut.String()
	for _, want := range []string{
		`msg="link: spec changed" name=greet direction=both old="seed=1" new="loss=100%,seed=1"`,
		`msg="link: spec changed" name=greet direction=both old="loss=100%,seed=1" new="seed=1"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	wantLine(t, out.String(), fmt.Sprintf(`^summary greet up   offered=%d delivered=%d lost=%d `, before+cut+after, before+after, cut))
	wantLine(t, out.String(), fmt.Sprintf(`^summary greet down offered=%d delivered=%d lost=0 `, before+after, before+after))
	wantLine(t, out.String(), `^summary greet clients=1 refused=0$`)
}

// TestLinkConfig: --config starts its links and --listen/--to one more,
// named default; each relays, and the summary names them.
func TestLinkConfig(t *testing.T) {
	server := greetServer(t)
	listen := freeAddr(t, "udp")
	cfg := filepath.Join(t.TempDir(), "links.json")
	body := fmt.Sprintf(`[{"name":"slow","listen":%q,"upstream":%q,"spec":"delay=1ms"}]`, listen, server)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	flagListen := freeAddr(t, "udp")
	out, errOut, stop := startLink(t, "--config", cfg, "--listen", flagListen, "--to", server, "--dup", "100%", "--stats", "0")
	waitLine(t, errOut, `msg="link: created" name=slow listen=`)
	waitLine(t, errOut, `msg="link: created" name=default listen=\S+ upstream=\S+ link="dup=100%,seed=1"`)
	for _, addr := range []string{listen, flagListen} {
		conn, err := raw.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), replyWait)
		if err := conn.Send(ctx, []byte("Ann")); err != nil {
			t.Fatal(err)
		}
		if b, err := conn.Receive(ctx); err != nil || string(b) != "Hello Ann!\n" {
			t.Errorf("through %s: %q, %v", addr, b, err)
		}
		cancel()
		conn.Close()
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
	// The summary lists the links by name: default, then slow.
	wantLine(t, out.String(), `^summary default up   offered=1 delivered=2 .* dup=1 `)
	wantLine(t, out.String(), `^summary slow up   offered=1 delivered=1 `)
	wantLine(t, out.String(), `^summary slow clients=1 refused=0$`)
	if strings.Index(out.String(), "summary default") > strings.Index(out.String(), "summary slow") {
		t.Errorf("summary not by name:\n%s", out)
	}
}

// TestLinkAPIDefault: beside --api, the --listen/--to link is named
// default, has the flags' spec, and the API changes it like any other.
func TestLinkAPIDefault(t *testing.T) {
	server := greetServer(t)
	_, errOut, stop := startLink(t, "--api", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--to", server, "--loss", "5%", "--seed", "7", "--stats", "0")
	c := api.New(waitLine(t, errOut, `msg="link: api" url=(\S+)`)[1])
	ctx := context.Background()
	if l, err := c.Get(ctx, defaultLinkName); err != nil || l.Spec != "loss=5%,seed=7" || l.Upstream != server {
		t.Errorf("Get(default) = %+v, %v; want the flags' link, loss=5%%,seed=7 to %s", l, err, server)
	}
	if l, err := c.SetDirectionSpec(ctx, defaultLinkName, link.Down, "delay=1ms"); err != nil || l.Spec != "up:loss=5%,down:delay=1ms,seed=7" {
		t.Errorf("SetDirectionSpec(default, down) = %+v, %v", l, err)
	}
	if ls, err := c.List(ctx); err != nil || len(ls) != 1 {
		t.Errorf("List = %+v, %v; want default alone", ls, err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
}
