package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/udplab/udplab/internal/leakcheck"
	"github.com/udplab/udplab/link"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newServer returns a Server closed when the test ends.
func newServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	s := NewServer(cfg)
	t.Cleanup(func() { s.Close() })
	return s
}

// upstream is a UDP address nothing needs to answer on.
func upstream(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func call(s http.Handler, method, path, body string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	return w
}

// TestHandlerErrors: each refused request gets its status, a JSON error
// naming the field at fault, and what is accepted there.
func TestHandlerErrors(t *testing.T) {
	s := newServer(t, Config{})
	up := upstream(t)
	good := `{"name":"a","listen":"127.0.0.1:0","upstream":"` + up + `","spec":"delay=1ms,seed=7"}`
	if w := call(s, "POST", "/links", good); w.Code != http.StatusCreated {
		t.Fatalf("POST /links %s: %d %s", good, w.Code, w.Body)
	}
	taken := s.List()[0].Listen
	for _, c := range []struct {
		method, path, body string
		status             int
		field, says        string
	}{
		{"POST", "/links", `{`, 400, "", "want one JSON object"},
		{"POST", "/links", ``, 400, "", "the body is empty"},
		{"POST", "/links", `[]`, 400, "", "want one JSON object"},
		{"POST", "/links", `null`, 400, "", "want one JSON object"},
		{"POST", "/links", `{"name":"b"} {}`, 400, "", "nothing after it"},
		{"POST", "/links", `{"nme":"b"}`, 400, "nme", `unknown field "nme"; fields: listen, name, spec, upstream`},
		{"POST", "/links", `{"Name":"b"}`, 400, "Name", "unknown field"},
		{"POST", "/links", `{"name":5}`, 400, "name", "name: want a string"},
		{"POST", "/links", `{"name":"a/b","listen":"127.0.0.1:0","upstream":"` + up + `"}`, 400, "name", "want 1 to 64 letters"},
		{"POST", "/links", `{"name":"b","upstream":"` + up + `"}`, 400, "listen", "listen: want a UDP address"},
		{"POST", "/links", `{"name":"b","listen":"127.0.0.1:0","upstream":"nohost"}`, 400, "upstream", "want a UDP address"},
		{"POST", "/links", `{"name":"b","listen":"127.0.0.1:7","upstream":"127.0.0.1:7"}`, 400, "upstream", "relay to itself"},
		{"POST", "/links", `{"name":"b","listen":"127.0.0.1:0","upstream":"` + up + `","spec":"loss=120%"}`, 400, "spec", `spec: loss="120%": want a percentage`},
		{"POST", "/links", `{"name":"b","listen":"127.0.0.1:0","upstream":"` + up + `","spec":"reorder=1%"}`, 400, "spec", "needs a delay"},
		{"POST", "/links", good, 409, "name", "a link of that name exists"},
		{"POST", "/links", `{"name":"b","listen":"` + taken + `","upstream":"` + up + `"}`, 400, "listen", "address already in use"},
		{"POST", "/links", `{"name":"` + strings.Repeat("x", MaxBody) + `"}`, 413, "", "body larger than"},
		{"GET", "/links/zz", ``, 404, "", `no link named "zz"`},
		{"DELETE", "/links/zz", ``, 404, "", `no link named "zz"`},
		{"PUT", "/links/zz/spec", `{"spec":""}`, 404, "", `no link named "zz"`},
		{"PUT", "/links/a/spec", `{"spec":"loss=1%","direction":"sideways"}`, 400, "direction", "want up, down, or nothing"},
		{"PUT", "/links/a/spec", `{"spec":"loss=1%%"}`, 400, "spec", "want a percentage"},
		{"PUT", "/links/a/spec", `{"spec":"seed=9"}`, 400, "spec", "the seed is the link's for good (seed=7)"},
		{"PUT", "/links/a/spec", `{"spec":1}`, 400, "spec", "spec: want a string"},
		{"PATCH", "/links", ``, 405, "", "want GET, POST, PUT or DELETE"},
		{"GET", "/nowhere", ``, 404, "", "no endpoint GET /nowhere"},
		{"PUT", "/links", ``, 405, "", "PUT /links: want GET, POST"},
		{"GET", "/links/a/spec", ``, 405, "", "want PUT, POST"},
		{"POST", "/links/a", ``, 405, "", "want GET, DELETE"},
		{"GET", "/links/a/other", ``, 404, "", "no endpoint"},
	} {
		w := call(s, c.method, c.path, c.body)
		var e Error
		err := json.Unmarshal(w.Body.Bytes(), &e)
		body := c.body[:min(len(c.body), 80)]
		if w.Code != c.status || err != nil || e.Field != c.field || !strings.Contains(e.Message, c.says) {
			t.Errorf("%s %s %s: %d %s; want %d, field %q, saying %q", c.method, c.path, body, w.Code, w.Body, c.status, c.field, c.says)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s %s: Content-Type %q", c.method, c.path, body, ct)
		}
	}
	if got := s.List(); len(got) != 1 || got[0].Spec != "delay=1ms,seed=7" {
		t.Errorf("after the refused requests, List() = %+v; want link a alone, unchanged", got)
	}
}

// TestClient drives every endpoint through the client, and each error
// comes back typed.
func TestClient(t *testing.T) {
	s := newServer(t, Config{})
	hs := httptest.NewServer(s)
	defer hs.Close()
	c := New(hs.URL)
	ctx := context.Background()
	up := upstream(t)

	l, err := c.Create(ctx, LinkConfig{Name: "db", Listen: "127.0.0.1:0", Upstream: up, Spec: "delay=5ms,seed=7"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Name != "db" || strings.HasSuffix(l.Listen, ":0") || l.Upstream != up || l.Spec != "delay=5ms,seed=7" {
		t.Errorf("Create = %+v", l)
	}
	if _, err := c.Create(ctx, LinkConfig{Name: "web", Listen: "127.0.0.1:0", Upstream: up}); err != nil {
		t.Fatal(err)
	}
	ls, err := c.List(ctx)
	if err != nil || len(ls) != 2 || ls[0].Name != "db" || ls[1].Name != "web" || ls[1].Spec != "seed=1" {
		t.Errorf("List = %+v, %v; want db, then web with a perfect link", ls, err)
	}

	for _, step := range []struct {
		dir  string
		spec string
		want string
	}{
		{"up", "loss=100%", "up:loss=100%,down:delay=5ms,seed=7"},
		{"down", "loss=1%", "up:loss=100%,down:loss=1%,seed=7"},
		{"", "", "seed=7"},
		{"", "lte,seed=7", ""},
	} {
		var l Link
		var err error
		switch step.dir {
		case "up":
			l, err = c.SetDirectionSpec(ctx, "db", link.Up, step.spec)
		case "down":
			l, err = c.SetDirectionSpec(ctx, "db", link.Down, step.spec)
		default:
			l, err = c.SetSpec(ctx, "db", step.spec)
		}
		want := step.want
		if want == "" {
			p, _ := link.Parse(step.spec)
			want = p.String()
		}
		if err != nil || l.Spec != want {
			t.Errorf("set %s %q: %q, %v; want %q", step.dir, step.spec, l.Spec, err, want)
		}
		if g, err := c.Get(ctx, "db"); err != nil || g.Spec != want {
			t.Errorf("Get after set %s %q: %q, %v; want %q", step.dir, step.spec, g.Spec, err, want)
		}
	}

	if err := c.Delete(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, "db")
	var e *Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &e) || e.Status != 404 {
		t.Errorf("Get of a deleted link: %v; want a 404 *Error matching ErrNotFound", err)
	}
	_, err = c.Create(ctx, LinkConfig{Name: "web", Listen: "127.0.0.1:0", Upstream: up})
	if !errors.Is(err, ErrExists) {
		t.Errorf("Create of a name in use: %v; want ErrExists", err)
	}
	_, err = c.SetSpec(ctx, "web", "loss=lots")
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &e) || e.Field != "spec" {
		t.Errorf("SetSpec of a bad spec: %v; want ErrInvalid naming the field spec", err)
	}
	if err := c.Delete(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of no link: %v; want ErrNotFound", err)
	}
}

// TestClientOtherErrors: an answer that is not the API's JSON (a proxy's
// error page, say) is still an *Error with its status, and a server that
// is not there is an error of its own.
func TestClientOtherErrors(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream is down", http.StatusBadGateway)
	}))
	c := New(hs.URL + "/")
	_, err := c.Get(context.Background(), "a")
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadGateway || e.Message != "upstream is down" {
		t.Errorf("Get from a gateway's error page: %#v; want a 502 *Error saying its text", err)
	}
	hs.Close()
	if _, err := c.List(context.Background()); err == nil || errors.As(err, &e) {
		t.Errorf("List from no server: %v; want an error that is not the API's", err)
	}
}

// TestChangesLogged: creating, changing and deleting a link are each
// logged, a change with its old and new spec.
func TestChangesLogged(t *testing.T) {
	var logs bytes.Buffer
	s := newServer(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if _, err := s.Create(LinkConfig{Name: "db", Listen: "127.0.0.1:0", Upstream: upstream(t), Spec: "delay=5ms,seed=7"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetSpec("db", SpecChange{Spec: "loss=100%", Direction: "up"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("db"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`msg="link: created" name=db listen=127.0.0.1:`,
		`msg="link: spec changed" name=db direction=up old="delay=5ms,seed=7" new="up:loss=100%,down:delay=5ms,seed=7"`,
		`msg="link: deleted" name=db`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}

// TestMaxLinks: a create past the cap is refused with ErrFull, and one
// after a delete is taken; after Close, none is.
func TestMaxLinks(t *testing.T) {
	s := newServer(t, Config{MaxLinks: 2})
	up := upstream(t)
	create := func(name string) error {
		_, err := s.Create(LinkConfig{Name: name, Listen: "127.0.0.1:0", Upstream: up})
		return err
	}
	for _, n := range []string{"a", "b"} {
		if err := create(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := create("c"); !errors.Is(err, ErrFull) {
		t.Errorf("third create with MaxLinks 2: %v; want ErrFull", err)
	}
	if err := s.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if err := create("c"); err != nil {
		t.Errorf("create after a delete: %v", err)
	}
	final := s.Close()
	if len(final) != 2 || final[0].Name != "b" || final[1].Name != "c" {
		t.Errorf("Close() = %+v; want b and c", final)
	}
	if err := create("d"); !errors.Is(err, ErrFull) {
		t.Errorf("create after Close: %v; want ErrFull", err)
	}
	if got := s.Close(); len(got) != 0 {
		t.Errorf("second Close() = %+v; want nothing", got)
	}
}

// TestConcurrentSpecChanges: changes of the two directions racing each
// other are each applied whole, none lost.
func TestConcurrentSpecChanges(t *testing.T) {
	s := newServer(t, Config{})
	if _, err := s.Create(LinkConfig{Name: "a", Listen: "127.0.0.1:0", Upstream: upstream(t)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, dir := range []string{"up", "down"} {
		wg.Go(func() {
			for i := range 50 {
				spec := "loss=" + string(rune('1'+i%9)) + "%"
				if _, err := s.SetSpec("a", SpecChange{Spec: spec, Direction: dir}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// The last of each is 50%9 = 5 → loss=5%.
	if l, _ := s.Get("a"); l.Spec != "loss=5%,seed=1" {
		t.Errorf("after both directions' last change, spec %q; want loss=5%%,seed=1", l.Spec)
	}
}

func TestDecodeConfigs(t *testing.T) {
	got, err := DecodeConfigs([]byte(`[{"name":"a","listen":"127.0.0.1:7001","upstream":"127.0.0.1:7000","spec":"loss=1%"},{"name":"b"}]`), 4)
	want := []LinkConfig{{"a", "127.0.0.1:7001", "127.0.0.1:7000", "loss=1%"}, {Name: "b"}}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("DecodeConfigs = %+v, %v; want %+v", got, err, want)
	}
	for _, c := range []struct{ in, says string }{
		{`{}`, "want a JSON list of links"},
		{`[{"name":"a"},{"name":"a"}]`, `link 2: name "a" is given twice`},
		{`[{"name":"a"},{"nam":"b"}]`, `link 2: unknown field "nam"`},
		{`[{},{},{},{},{}]`, "5 links: at most 4"},
		{`[] []`, "nothing after it"},
	} {
		if _, err := DecodeConfigs([]byte(c.in), 4); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("DecodeConfigs(%s) = %v; want an error saying %q", c.in, err, c.says)
		}
	}
}

// FuzzCreateRequest: whatever the body, decoding a create request does not
// panic, and a request it accepts, encoded again, decodes to itself.
func FuzzCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","listen":"127.0.0.1:7001","upstream":"127.0.0.1:7000","spec":"loss=1%"}`,
		`{"name":null}`, `{"name":"\u00e9\ud800"}`, `{}`, `{"name":"a","name":"b"}`, `[]`, `{"x":1}`,
		`{"name":"a"} x`, `"str"`, `{"spec":{"a":1}}`, "{\"name\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c LinkConfig
		if err := decodeObject(b, configFields(&c)); err != nil {
			if err.Status != http.StatusBadRequest || err.Message == "" {
				t.Fatalf("decode %q: %+v", b, err)
			}
			return
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var c2 LinkConfig
		if err := decodeObject(again, configFields(&c2)); err != nil || c2 != c {
			t.Fatalf("decode %q = %+v; encoded %s, it decodes to %+v, %v", b, c, again, c2, err)
		}
	})
}

// TestNoDistFiles: a spec naming a distribution file is refused, in a
// create and in a change, so no caller makes the server open a path.
func TestNoDistFiles(t *testing.T) {
	for _, spec := range []string{"delay=20ms,jitter=5ms,dist=/dev/stdin", "up:dist=x.dist", "jitter=1ms,dist=./t",
		"jitter=1ms,dist=/sys/dev/char/1:3/../../../../etc/passwd", "down:dist=t", " dist=/x"} {
		if err := noFiles(spec); err == nil {
			t.Errorf("noFiles(%q) = nil, want a refusal", spec)
		}
	}
	for _, spec := range []string{"", "delay=20ms,jitter=5ms,dist=paretonormal", "up:dist=normal,jitter=1ms"} {
		if err := noFiles(spec); err != nil {
			t.Errorf("noFiles(%q) = %v, want nil", spec, err)
		}
	}
}
