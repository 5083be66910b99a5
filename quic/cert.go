package quic

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// certValidity is how long a SelfSigned certificate is valid. A client
// that pins it does not look at its dates; one that verifies it against
// roots would have to be given it, which nobody does for a day-old test
// certificate. A week outlasts any udplab run.
const certValidity = 7 * 24 * time.Hour

// SelfSigned returns a fresh self-signed certificate with an ECDSA P-256
// key, valid for a week for hosts: DNS names or IP addresses. No hosts
// means "localhost", 127.0.0.1 and ::1.
func SelfSigned(hosts ...string) (tls.Certificate, error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("quic: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("quic: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "udplab"},
		// An hour back, for clocks a little behind ours.
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("quic: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("quic: parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Fingerprint returns the SHA-256 of cert's leaf certificate (its first,
// DER-encoded), in lower-case hex without colons: what a client pins. A
// certificate with no leaf has the fingerprint "".
func Fingerprint(cert tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	return fingerprint(cert.Certificate[0])
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// LoadCert reads a PEM certificate chain, leaf first, and its PEM private
// key. Errors name the file at fault, or both when they do not match.
func LoadCert(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("quic: certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("quic: key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("quic: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return cert, nil
}

// PinError is a server certificate whose fingerprint is not the pinned one.
type PinError struct {
	Got  string // the server's fingerprint
	Want string // the pin
}

func (e *PinError) Error() string {
	return fmt.Sprintf("quic: server certificate fingerprint %s does not match the pin %s", e.Got, e.Want)
}

// ParsePin returns pin as Fingerprint spells it: colons dropped, lower
// case. It must be 64 hex digits.
func ParsePin(pin string) (string, error) {
	p := strings.ToLower(strings.ReplaceAll(pin, ":", ""))
	if _, err := hex.DecodeString(p); err != nil || len(p) != 2*sha256.Size {
		return "", fmt.Errorf("quic: pin %q is not a SHA-256 fingerprint: want %d hex digits, colons allowed", pin, 2*sha256.Size)
	}
	return p, nil
}

// trust is how a client checks a server's certificate.
type trust int

const (
	trustRoots    trust = iota // verify the chain and the name, as any TLS client
	trustPin                   // accept only the pinned leaf
	trustLoopback              // accept any certificate, with a warning
)

// chooseTrust decides how a client checks the server at host (a name or an
// address, without port): a pin wins; roots the caller gave are used; on a
// loopback address, where the server is on this machine, any certificate
// is accepted with a warning; otherwise the system's roots verify it.
func chooseTrust(pin string, roots bool, host string) trust {
	switch {
	case pin != "":
		return trustPin
	case roots:
		return trustRoots
	case isLoopback(host):
		return trustLoopback
	}
	return trustRoots
}

// isLoopback reports whether host is "localhost" or a loopback address
// (127.0.0.0/8, ::1).
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// clientTLS returns the TLS configuration for dialing host (a name or an
// address, without port), as chooseTrust decides.
func clientTLS(cfg *ClientConfig, host string, log *slog.Logger) (*tls.Config, error) {
	t := &tls.Config{}
	if cfg.TLS != nil {
		t = cfg.TLS.Clone()
	}
	t.NextProtos = []string{ALPN}
	t.MinVersion = tls.VersionTLS13
	if t.ServerName == "" {
		t.ServerName = host
	}
	switch chooseTrust(cfg.Pin, t.RootCAs != nil, host) {
	case trustPin:
		want, err := ParsePin(cfg.Pin)
		if err != nil {
			return nil, err
		}
		t.InsecureSkipVerify = true // the pin is the verification
		t.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if got := leafFingerprint(raw); got != want {
				return &PinError{Got: got, Want: want}
			}
			return nil
		}
	case trustLoopback:
		t.InsecureSkipVerify = true
		t.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			fp := leafFingerprint(raw)
			log.Warn("quic: server certificate not verified, as the server is on a loopback address; pass --pin "+fp+" to verify it",
				"server", host, "fingerprint", fp)
			return nil
		}
	}
	return t, nil
}

func leafFingerprint(raw [][]byte) string {
	if len(raw) == 0 {
		return "(none)"
	}
	return fingerprint(raw[0])
}

// serverTLS returns the TLS configuration a server presents, and its
// certificate's fingerprint ("" when it is chosen per connection, by
// GetCertificate). Nil means a fresh SelfSigned certificate.
func serverTLS(base *tls.Config) (*tls.Config, string, error) {
	var t *tls.Config
	if base != nil {
		t = base.Clone()
	} else {
		cert, err := SelfSigned()
		if err != nil {
			return nil, "", err
		}
		t = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	t.NextProtos = []string{ALPN}
	t.MinVersion = tls.VersionTLS13
	var fp string
	if len(t.Certificates) > 0 {
		fp = Fingerprint(t.Certificates[0])
	}
	return t, fp, nil
}
