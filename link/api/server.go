package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/udplab/udplab/link"
)

// Limits of a Server, which listens on the network.
const (
	// DefaultMaxLinks is Config.MaxLinks when zero. A link costs a
	// listening socket, two delivery goroutines and up to its hold limits
	// in memory while impaired; 256 is far more than a test suite puts in
	// front of its services, and few enough that a runaway script cannot
	// exhaust file descriptors through the API.
	DefaultMaxLinks = 256
	// MaxBody bounds a request body: a LinkConfig or a SpecChange is a
	// few hundred bytes; 64 KiB leaves room for any spec and refuses a
	// flood.
	MaxBody = 64 << 10
	// maxName bounds a link's name, which appears in paths and logs.
	maxName = 64
)

// Config configures a Server. The zero value works.
type Config struct {
	// MaxLinks bounds the links held at once; a create past it is
	// refused with 503 (ErrFull). Zero means DefaultMaxLinks.
	MaxLinks int
	// Idle and MaxClients are each link's proxy's, as link.ProxyConfig
	// has them; zero means the proxy's defaults (60s and
	// link.DefaultMaxClients).
	Idle       time.Duration
	MaxClients int
	// Logger gets each link created and deleted, and each spec change
	// with the old and new spec, at info level, and is each proxy's
	// logger. Nil means slog.Default().
	Logger *slog.Logger
}

// Server holds named links and serves the API over them (it is an
// http.Handler). Its methods are safe for concurrent use. Close stops
// every link it holds; serving HTTP is the caller's (see net/http.Server),
// and should stop first.
type Server struct {
	cfg Config
	mux *http.ServeMux

	mu     sync.Mutex
	links  map[string]*entry
	closed bool
}

// entry is one named link: its proxy, its link and its spec.
type entry struct {
	name, upstream string
	l              *link.Link
	p              *link.Proxy

	mu   sync.Mutex // serializes spec changes, so none is lost
	spec link.Spec  // what the link applies now
}

// NewServer returns a Server holding no link.
func NewServer(cfg Config) *Server {
	if cfg.MaxLinks <= 0 {
		cfg.MaxLinks = DefaultMaxLinks
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, links: map[string]*entry{}, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /links", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.List())
	})
	s.mux.HandleFunc("POST /links", func(w http.ResponseWriter, r *http.Request) {
		var c LinkConfig
		if err := decodeBody(w, r, configFields(&c)); err != nil {
			writeError(w, err)
			return
		}
		reply(w, http.StatusCreated)(s.create(c, false))
	})
	s.mux.HandleFunc("GET /links/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK)(s.Get(r.PathValue("name")))
	})
	s.mux.HandleFunc("DELETE /links/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Delete(r.PathValue("name")); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	setSpec := func(w http.ResponseWriter, r *http.Request) {
		var c SpecChange
		if err := decodeBody(w, r, changeFields(&c)); err != nil {
			writeError(w, err)
			return
		}
		reply(w, http.StatusOK)(s.setSpec(r.PathValue("name"), c, false))
	}
	s.mux.HandleFunc("PUT /links/{name}/spec", setSpec)
	s.mux.HandleFunc("POST /links/{name}/spec", setSpec)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedAt(r.URL.Path); allow != "" {
			w.Header().Set("Allow", allow)
			writeError(w, &Error{Status: http.StatusMethodNotAllowed, Message: fmt.Sprintf("%s %s: want %s", r.Method, r.URL.Path, allow)})
			return
		}
		writeError(w, &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("no endpoint %s %s; endpoints: /links, /links/NAME, /links/NAME/spec", r.Method, r.URL.Path)})
	})
	return s
}

// allowed are the methods the API answers; any other gets 405 before
// routing.
var allowed = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(allowed, r.Method) {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, &Error{Status: http.StatusMethodNotAllowed, Message: "method " + r.Method + ": want GET, POST, PUT or DELETE"})
		return
	}
	s.mux.ServeHTTP(w, r)
}

// allowedAt is the methods an endpoint takes, for the Allow header of a
// 405, or nothing when path is no endpoint.
func allowedAt(path string) string {
	rest, ok := strings.CutPrefix(path, "/links")
	switch parts := strings.Split(rest, "/"); {
	case !ok:
		return ""
	case rest == "":
		return "GET, POST"
	case len(parts) == 2 && parts[1] != "":
		return "GET, DELETE"
	case len(parts) == 3 && parts[1] != "" && parts[2] == "spec":
		return "PUT, POST"
	}
	return ""
}

// Create starts a link as c says. It returns an *Error naming the field at
// fault when c is refused. A Go caller (udplab link's flags and --config)
// may name a distribution table file in the spec; a request over HTTP may
// not (see noFiles).
func (s *Server) Create(c LinkConfig) (Link, error) { return s.create(c, true) }

func (s *Server) create(c LinkConfig, trusted bool) (Link, error) {
	if !validName(c.Name) {
		return Link{}, invalid("name", "name %q: want 1 to %d letters, digits, '.', '_' or '-'", c.Name, maxName)
	}
	la, err := resolve("listen", c.Listen)
	if err != nil {
		return Link{}, err
	}
	ua, err := resolve("upstream", c.Upstream)
	if err != nil {
		return Link{}, err
	}
	if ua.Port != 0 && la.Port == ua.Port && (la.IP.Equal(ua.IP) || la.IP.IsUnspecified() && (ua.IP.IsLoopback() || ua.IP.IsUnspecified())) {
		return Link{}, invalid("upstream", "upstream %s is listen %s: the link would relay to itself", c.Upstream, c.Listen)
	}
	if err := noFiles(c.Spec); err != nil && !trusted {
		return Link{}, err
	}
	spec, err := link.Parse(c.Spec)
	if err != nil {
		return Link{}, specError(err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return Link{}, &Error{Status: http.StatusServiceUnavailable, Message: "the server is closing"}
	case s.links[c.Name] != nil:
		return Link{}, &Error{Status: http.StatusConflict, Field: "name", Message: fmt.Sprintf("name %q: a link of that name exists; delete it first", c.Name)}
	case len(s.links) >= s.cfg.MaxLinks:
		return Link{}, &Error{Status: http.StatusServiceUnavailable, Message: fmt.Sprintf("the server holds %d links, its most; delete one first", s.cfg.MaxLinks)}
	}
	l, err := link.New(spec, nil)
	if err != nil {
		return Link{}, specError(err)
	}
	p, err := link.NewProxy(link.ProxyConfig{
		Listen: la.String(), To: ua.String(), Link: l,
		Idle: s.cfg.Idle, MaxClients: s.cfg.MaxClients, Logger: s.cfg.Logger.With("link", c.Name),
	})
	if err != nil {
		l.Close()
		return Link{}, invalid("listen", "listen %s: %s", c.Listen, strings.TrimPrefix(err.Error(), "link: "))
	}
	e := &entry{name: c.Name, upstream: c.Upstream, l: l, p: p, spec: spec}
	s.links[c.Name] = e
	info := e.info()
	s.cfg.Logger.Info("link: created", "name", c.Name, "listen", info.Listen, "upstream", c.Upstream, "link", info.Spec)
	return info, nil
}

// List returns every link, by name.
func (s *Server) List() []Link {
	s.mu.Lock()
	es := make([]*entry, 0, len(s.links))
	for _, e := range s.links {
		es = append(es, e)
	}
	s.mu.Unlock()
	slices.SortFunc(es, func(a, b *entry) int { return strings.Compare(a.name, b.name) })
	out := make([]Link, len(es))
	for i, e := range es {
		out[i] = e.info()
	}
	return out
}

// Get returns the link called name, or an *Error matching ErrNotFound.
func (s *Server) Get(name string) (Link, error) {
	e, err := s.lookup(name)
	if err != nil {
		return Link{}, err
	}
	return e.info(), nil
}

// SetSpec replaces the spec of the link called name, in the directions c
// says, in one atomic step for the packets written from then on (see
// link.Link.Set). The change is logged with the old and new spec.
// A Go caller may name a table file, as with Create.
func (s *Server) SetSpec(name string, c SpecChange) (Link, error) { return s.setSpec(name, c, true) }

func (s *Server) setSpec(name string, c SpecChange, trusted bool) (Link, error) {
	e, err := s.lookup(name)
	if err != nil {
		return Link{}, err
	}
	if c.Direction != "" && c.Direction != "up" && c.Direction != "down" {
		return Link{}, invalid("direction", "direction %q: want up, down, or nothing for both", c.Direction)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.spec
	next := link.Spec{Seed: old.Seed}
	if err := noFiles(c.Spec); err != nil && !trusted {
		return Link{}, err
	}
	if err := next.Apply(c.Spec); err != nil {
		return Link{}, specError(err)
	}
	if next.Seed != old.Seed {
		return Link{}, invalid("spec", "spec: seed=%d: the seed is the link's for good (seed=%d); delete the link and create it again to change it", next.Seed, old.Seed)
	}
	switch c.Direction {
	case "up":
		next.Down = old.Down
	case "down":
		next.Up = old.Up
	}
	if err := e.l.Set(next); err != nil {
		return Link{}, specError(err)
	}
	e.spec = next
	dir := c.Direction
	if dir == "" {
		dir = "both"
	}
	s.cfg.Logger.Info("link: spec changed", "name", name, "direction", dir, "old", old.String(), "new", next.String())
	return e.infoLocked(), nil
}

// Delete stops the link called name, closing its sockets, and forgets it.
func (s *Server) Delete(name string) error {
	s.mu.Lock()
	e := s.links[name]
	delete(s.links, name)
	s.mu.Unlock()
	if e == nil {
		return notFound(name)
	}
	info := e.stop()
	s.cfg.Logger.Info("link: deleted", "name", name, "up", info.Up.Offered, "down", info.Down.Offered)
	return nil
}

// Close stops every link and refuses new ones. It returns each link's
// final state, by name, as it was once its proxy had stopped, with the
// clients it had then. Calling it again returns nothing.
func (s *Server) Close() []Link {
	s.mu.Lock()
	s.closed = true
	es := s.links
	s.links = map[string]*entry{}
	s.mu.Unlock()
	out := make([]Link, 0, len(es))
	for _, e := range es {
		out = append(out, e.stop())
	}
	slices.SortFunc(out, func(a, b Link) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *Server) lookup(name string) (*entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.links[name]; e != nil {
		return e, nil
	}
	return nil, notFound(name)
}

// stop closes e's proxy, then its link, and returns its final state,
// with the clients the proxy had when it stopped.
func (e *entry) stop() Link {
	open := e.p.Clients()
	e.p.Close()
	info := e.info()
	info.Clients = open
	e.l.Close()
	return info
}

func (e *entry) info() Link {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.infoLocked()
}

func (e *entry) infoLocked() Link {
	return Link{
		Name: e.name, Listen: e.p.Addr().String(), Upstream: e.upstream, Spec: e.spec.String(),
		Up: statsOf(e.l.Stats(link.Up)), Down: statsOf(e.l.Stats(link.Down)),
		Clients: e.p.Clients(), Refused: e.p.Refused(),
	}
}

func validName(name string) bool {
	if name == "" || len(name) > maxName {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// resolve reads the UDP address of field.
func resolve(field, addr string) (*net.UDPAddr, error) {
	if addr == "" {
		return nil, invalid(field, "%s: want a UDP address HOST:PORT such as 127.0.0.1:7001", field)
	}
	a, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, invalid(field, "%s %q: want a UDP address HOST:PORT such as 127.0.0.1:7001 (%v)", field, addr, err)
	}
	return a, nil
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Message: fmt.Sprintf(format, args...)}
}

func notFound(name string) *Error {
	return &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("no link named %q", name)}
}

// specError is a spec the link grammar refused, with what it accepts.
// noFiles refuses a spec naming a distribution table by its path: the
// grammar reads such a file when it parses, and a caller of the API must
// not make the server open a path of its choosing (a FIFO would block it).
// netem's named tables (dist=normal, pareto, paretonormal) are built in.
func noFiles(spec string) error {
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		for _, dir := range []string{"up:", "down:"} {
			item = strings.TrimPrefix(item, dir)
		}
		if v, ok := strings.CutPrefix(item, "dist="); ok && !slices.Contains(builtInDists, v) {
			return invalid("spec", "spec: dist=%s: a table file is not read for a request over the API (--config and the flags may name one); use a built-in distribution: uniform, normal, pareto, paretonormal", v)
		}
	}
	return nil
}

// builtInDists are the distributions the grammar knows by name, which
// read no file.
var builtInDists = []string{"uniform", "normal", "pareto", "paretonormal"}

func specError(err error) *Error {
	return invalid("spec", "spec: %s", strings.TrimPrefix(err.Error(), "link: "))
}

// reply writes a call's result: v with status, or the error.
func reply(w http.ResponseWriter, status int) func(v any, err error) {
	return func(v any, err error) {
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, status, v)
	}
}

func writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Message: err.Error()}
	}
	writeJSON(w, e.Status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) // the client went away, or cannot be told
}

// fields maps each JSON key a request object takes to where its string
// goes.
type fields map[string]*string

func configFields(c *LinkConfig) fields {
	return fields{"name": &c.Name, "listen": &c.Listen, "upstream": &c.Upstream, "spec": &c.Spec}
}

func changeFields(c *SpecChange) fields {
	return fields{"spec": &c.Spec, "direction": &c.Direction}
}

func (f fields) names() string {
	names := make([]string, 0, len(f))
	for k := range f {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// decodeBody reads r's body, at most MaxBody bytes, as one JSON object
// into f.
func decodeBody(w http.ResponseWriter, r *http.Request, f fields) *Error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("body larger than %d bytes", MaxBody)}
		}
		return &Error{Status: http.StatusBadRequest, Message: "reading the body: " + err.Error()}
	}
	return decodeObject(b, f)
}

// decodeObject reads b as one JSON object whose keys are f's, each with a
// string (or null) value, into f. Keys match exactly; a key f lacks, a
// value of another type, anything after the object is refused with an
// *Error naming the field.
func decodeObject(b []byte, f fields) *Error {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return &Error{Status: http.StatusBadRequest, Message: "want one JSON object with the fields " + f.names() + describe(err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &Error{Status: http.StatusBadRequest, Message: "want one JSON object and nothing after it"}
	}
	for k, raw := range obj {
		p, ok := f[k]
		if !ok {
			return &Error{Status: http.StatusBadRequest, Field: k, Message: fmt.Sprintf("unknown field %q; fields: %s", k, f.names())}
		}
		var v *string
		if err := json.Unmarshal(raw, &v); err != nil {
			return &Error{Status: http.StatusBadRequest, Field: k, Message: fmt.Sprintf("%s: want a string", k)}
		}
		if v != nil {
			*p = *v
		}
	}
	return nil
}

// describe is what went wrong decoding, for a message, or nothing.
func describe(err error) string {
	var (
		se *json.SyntaxError
		te *json.UnmarshalTypeError
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, io.EOF):
		return " (the body is empty)"
	case errors.As(err, &se):
		return fmt.Sprintf(" (bad JSON at byte %d: %v)", se.Offset, err)
	case errors.As(err, &te):
		return " (got a JSON " + te.Value + ")"
	}
	return " (" + err.Error() + ")"
}

// DecodeConfigs reads a list of links, as udplab link's --config file
// holds them: a JSON array of LinkConfig objects, at most maxLinks of them.
// The error names the entry and the field at fault.
func DecodeConfigs(b []byte, maxLinks int) ([]LinkConfig, error) {
	var raws []json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raws); err != nil {
		return nil, fmt.Errorf("want a JSON list of links, each {\"name\", \"listen\", \"upstream\", \"spec\"}%s", describe(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("want one JSON list and nothing after it")
	}
	if len(raws) > maxLinks {
		return nil, fmt.Errorf("%d links: at most %d", len(raws), maxLinks)
	}
	out := make([]LinkConfig, len(raws))
	seen := map[string]bool{}
	for i, raw := range raws {
		if err := decodeObject(raw, configFields(&out[i])); err != nil {
			return nil, fmt.Errorf("link %d: %s", i+1, err.Message)
		}
		if seen[out[i].Name] {
			return nil, fmt.Errorf("link %d: name %q is given twice", i+1, out[i].Name)
		}
		seen[out[i].Name] = true
	}
	return out, nil
}
