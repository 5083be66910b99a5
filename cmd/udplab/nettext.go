package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/udplab/udplab/internal/cliflag"
)

// textMode is how client and chat show bytes that came from the network:
// escaped, so a peer cannot drive the terminal (clear it, move the cursor,
// fake a prompt, reorder text with bidi controls), or as they came, with
// --raw-output.
type textMode bool

const (
	escaped textMode = false
	asSent  textMode = true
)

// rawOutputVar registers --raw-output.
func rawOutputVar(fs *flag.FlagSet, p *bool) {
	cliflag.Bool(fs, p, "raw-output", false,
		`print what the network sends as it came; by default control characters, invalid UTF-8 and bidi controls are escaped as Go's %q escapes them (\x1b, \u202e)`)
}

// line returns msg as one line of output, ending in "\n": with asSent, msg
// itself plus a "\n" if it has none; escaped, msg without its "\n" or
// "\r\n", escaped, so a newline inside it cannot start a line of its own.
func (tm textMode) line(msg []byte) string {
	s := string(msg)
	if tm == asSent {
		if !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		return s
	}
	s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	return escape(s) + "\n"
}

// err returns err with its text escaped, as it may quote the peer (a QUIC
// peer's close reason); errors.Is and errors.As still see err.
func (tm textMode) err(err error) error {
	if err == nil || tm == asSent {
		return err
	}
	return escapedError{err}
}

type escapedError struct{ err error }

func (e escapedError) Error() string { return escape(e.err.Error()) }
func (e escapedError) Unwrap() error { return e.err }

// escape returns s with every rune strconv.Quote would escape written as
// Quote writes it: C0 controls (newline and tab included), DEL, C1
// controls, format characters such as the bidi overrides, and other
// non-printing runes by strconv.IsPrint; an invalid UTF-8 byte as \xNN.
// Everything else stays as it is, quotes and backslashes included, so
// Zoë, say "hi" and C:\dir read as typed. A peer can therefore send the
// text \x1b and have it look like an escaped ESC: what is safe is the
// terminal, not the meaning.
func escape(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == utf8.RuneError || !strconv.IsPrint(r) })
	if i < 0 {
		return s
	}
	b := []byte(s[:i])
	for s = s[i:]; s != ""; {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			b = fmt.Appendf(b, `\x%02x`, s[0])
		case strconv.IsPrint(r):
			b = append(b, s[:n]...)
		default:
			q := strconv.AppendQuoteRune(nil, r) // '\x1b': Quote's notation, in quotes
			b = append(b, q[1:len(q)-1]...)
		}
		s = s[n:]
	}
	return string(b)
}
