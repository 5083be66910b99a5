package quic

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/message"
)

func TestPin(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	fp := s.Fingerprint()
	if len(fp) != 64 || strings.ToLower(fp) != fp {
		t.Fatalf("Fingerprint = %q, want 64 lower-case hex digits", fp)
	}
	// Colons and case are ignored, as fingerprints are often printed so.
	var colons []string
	for i := 0; i < len(fp); i += 2 {
		colons = append(colons, strings.ToUpper(fp[i:i+2]))
	}
	for _, pin := range []string{fp, strings.Join(colons, ":")} {
		if got := conntest.RoundTrip(t, dialPinned(t, s.Addr(), pin), "Alice"); got != "Hello Alice!\n" {
			t.Errorf("pin %s: reply %q", pin, got)
		}
	}

	other, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	wrong := Fingerprint(other)
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	c, err := Dial(ctx, s.Addr().String(), &ClientConfig{Pin: wrong})
	if err == nil {
		c.Close()
		t.Fatal("dial with the wrong pin succeeded")
	}
	var pe *PinError
	if !errors.As(err, &pe) || pe.Got != fp || pe.Want != wrong ||
		!strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), wrong) || !strings.HasPrefix(err.Error(), "quic: ") {
		t.Errorf("dial with the wrong pin = %v, want a *PinError naming %s and %s", err, fp, wrong)
	}

	for _, bad := range []string{"abc", strings.Repeat("g", 64), fp + "00"} {
		if c, err := Dial(ctx, s.Addr().String(), &ClientConfig{Pin: bad}); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
			if c != nil {
				c.Close()
			}
			t.Errorf("pin %q: %v, want it refused as no fingerprint", bad, err)
		}
	}
}

// records is a slog handler keeping every record.
type records struct {
	mu  sync.Mutex
	all []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) at(level slog.Level) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.all {
		if rec.Level == level {
			out = append(out, rec)
		}
	}
	return out
}

// TestLoopbackWithoutPin: on loopback with no pin any certificate is
// accepted, with one warning naming its fingerprint and --pin.
func TestLoopbackWithoutPin(t *testing.T) {
	s := startServer(t, "127.0.0.1:0", message.Greet, nil)
	var logged records
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	c, err := Dial(ctx, s.Addr().String(), &ClientConfig{Logger: slog.New(&logged)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := conntest.RoundTrip(t, c, "Alice"); got != "Hello Alice!\n" {
		t.Errorf("reply = %q", got)
	}
	warns := logged.at(slog.LevelWarn)
	if len(warns) != 1 {
		t.Fatalf("%d warnings, want 1: %v", len(warns), warns)
	}
	var fp string
	warns[0].Attrs(func(a slog.Attr) bool {
		if a.Key == "fingerprint" {
			fp = a.Value.String()
		}
		return true
	})
	if fp != s.Fingerprint() || !strings.Contains(warns[0].Message, "--pin "+fp) {
		t.Errorf("warning %q fingerprint=%s, want the server's %s and --pin", warns[0].Message, fp, s.Fingerprint())
	}
}

func TestChooseTrust(t *testing.T) {
	for _, tt := range []struct {
		pin   string
		roots bool
		host  string
		want  trust
	}{
		{"", false, "127.0.0.1", trustLoopback},
		{"", false, "127.3.2.1", trustLoopback},
		{"", false, "::1", trustLoopback},
		{"", false, "localhost", trustLoopback},
		{"", false, "LocalHost", trustLoopback},
		{"", false, "192.0.2.7", trustRoots},
		{"", false, "2001:db8::1", trustRoots},
		{"", false, "example.com", trustRoots},
		{"", false, "::ffff:192.0.2.7", trustRoots},
		{"", false, "", trustRoots},
		{"", true, "127.0.0.1", trustRoots}, // roots given: used, even on loopback
		{"ab", false, "192.0.2.7", trustPin},
		{"ab", true, "127.0.0.1", trustPin},
	} {
		if got := chooseTrust(tt.pin, tt.roots, tt.host); got != tt.want {
			t.Errorf("chooseTrust(%q, %v, %q) = %v, want %v", tt.pin, tt.roots, tt.host, got, tt.want)
		}
	}
}

// TestClientTLSRemote: without a pin, a remote server is verified as any
// TLS client does: by name, against the roots.
func TestClientTLSRemote(t *testing.T) {
	conf, err := clientTLS(&ClientConfig{}, "example.com", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if conf.InsecureSkipVerify || conf.VerifyPeerCertificate != nil || conf.ServerName != "example.com" ||
		len(conf.NextProtos) != 1 || conf.NextProtos[0] != ALPN {
		t.Errorf("config for a remote server: skip=%v verify set=%v name=%q alpn=%q",
			conf.InsecureSkipVerify, conf.VerifyPeerCertificate != nil, conf.ServerName, conf.NextProtos)
	}
}

// TestRootsVerify: with RootCAs given, a server is verified against them,
// here on loopback: its own certificate verifies, another does not.
func TestRootsVerify(t *testing.T) {
	cert, err := SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "127.0.0.1:0", message.Greet, &ServerConfig{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if s.Fingerprint() != Fingerprint(cert) {
		t.Errorf("server fingerprint %s, want its certificate's %s", s.Fingerprint(), Fingerprint(cert))
	}
	other, err := SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), conntest.Timeout)
	defer cancel()
	for _, tt := range []struct {
		root *x509.Certificate
		ok   bool
	}{{cert.Leaf, true}, {other.Leaf, false}} {
		roots := x509.NewCertPool()
		roots.AddCert(tt.root)
		c, err := Dial(ctx, s.Addr().String(), &ClientConfig{TLS: &tls.Config{RootCAs: roots}})
		if err == nil {
			conntest.RoundTrip(t, c, "Alice")
			c.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("root %s: dial = %v, want success %v", Fingerprint(tls.Certificate{Certificate: [][]byte{tt.root.Raw}}), err, tt.ok)
		}
	}
}

func TestSelfSignedHosts(t *testing.T) {
	cert, err := SelfSigned("udplab.example", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.Leaf.VerifyHostname("udplab.example"); err != nil {
		t.Error(err)
	}
	if err := cert.Leaf.VerifyHostname("192.0.2.1"); err != nil {
		t.Error(err)
	}
	if err := cert.Leaf.VerifyHostname("localhost"); err == nil {
		t.Error("a certificate for other hosts is valid for localhost")
	}
	def, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := def.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("default certificate: %v", err)
		}
	}
	if Fingerprint(tls.Certificate{}) != "" {
		t.Error("a certificate with no leaf has a fingerprint")
	}
}

func TestLoadCert(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, block *pem.Block) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pair := func(name string) (certFile, keyFile string, fp string) {
		cert, err := SelfSigned()
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".crt", &pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
			write(name+".key", &pem.Block{Type: "PRIVATE KEY", Bytes: der}), Fingerprint(cert)
	}
	certFile, keyFile, fp := pair("a")
	cert, err := LoadCert(certFile, keyFile)
	if err != nil || Fingerprint(cert) != fp {
		t.Fatalf("LoadCert = %s, %v; want %s", Fingerprint(cert), err, fp)
	}
	_, otherKey, _ := pair("b")
	missing := filepath.Join(dir, "missing.pem")
	for _, tt := range []struct{ cert, key, want string }{
		{missing, keyFile, missing},
		{certFile, missing, missing},
		{certFile, otherKey, otherKey}, // a key that does not match
		{keyFile, keyFile, keyFile},    // no certificate in it
	} {
		_, err := LoadCert(tt.cert, tt.key)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "quic: ") {
			t.Errorf("LoadCert(%s, %s) = %v, want an error naming %s", filepath.Base(tt.cert), filepath.Base(tt.key), err, tt.want)
		}
	}
}
