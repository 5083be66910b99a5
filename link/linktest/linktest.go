// Package linktest starts simulated links for other packages' tests, as
// net/http/httptest starts servers: one call, failing the test on a bad
// spec, with the link closed when the test ends.
package linktest

import (
	"testing"

	"github.com/udplab/udplab/link"
)

// New starts a link with spec in the link grammar (such as
// "loss=10%,delay=2ms,seed=5"), failing tb if spec does not parse, and
// closes it when tb ends.
func New(tb testing.TB, spec string) *link.Link {
	tb.Helper()
	s, err := link.Parse(spec)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := link.New(s, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}
