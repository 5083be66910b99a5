package message

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ExitRequest is the request that ends a greeting session.
const ExitRequest = "exit"

// CtimeLayout is C's ctime(3) format without its trailing newline.
const CtimeLayout = "Mon Jan _2 15:04:05 2006"

// Greet answers NAME with "Hello NAME!\n" and "exit" with "Good bye!\n",
// as the classic UDP socket tutorials do. One trailing newline (LF or CRLF)
// is ignored, so line-oriented clients such as netcat work unchanged. An
// empty name, or one that is not printable UTF-8, is a bad request.
//
// Greet does not end anything on "exit": the session belongs to the client,
// and the server keeps serving everyone else.
func Greet(dst, req []byte) ([]byte, error) {
	name := trimNewline(req)
	if err := checkName(name); err != nil {
		return dst, err
	}
	if string(name) == ExitRequest {
		return append(dst, "Good bye!\n"...), nil
	}
	dst = append(dst, "Hello "...)
	dst = append(dst, name...)
	return append(dst, "!\n"...), nil
}

// Echo answers every request with the request itself.
func Echo(dst, req []byte) ([]byte, error) {
	return append(dst, req...), nil
}

// Time returns a handler that answers MSG with "[ctime] MSG", the current
// local time in C's ctime format, as the tutorials' timestamp server does.
// now supplies the time; nil means time.Now.
func Time(now func() time.Time) Handler {
	if now == nil {
		now = time.Now
	}
	return func(dst, req []byte) ([]byte, error) {
		dst = append(dst, '[')
		dst = now().AppendFormat(dst, CtimeLayout)
		dst = append(dst, "] "...)
		return append(dst, req...), nil
	}
}

// HandlerNames lists the names Lookup accepts, the default first.
var HandlerNames = []string{"greet", "time", "echo"}

// Lookup returns the handler with the given name (see HandlerNames).
func Lookup(name string) (Handler, error) {
	switch name {
	case "greet":
		return Greet, nil
	case "time":
		return Time(nil), nil
	case "echo":
		return Echo, nil
	}
	return nil, fmt.Errorf("unknown reply %q: want one of %s", name, strings.Join(HandlerNames, ", "))
}

// IsExit reports whether req is ExitRequest, ignoring one trailing newline
// (LF or CRLF) as Greet does. A transport whose sessions have an end, such
// as a TCP connection, ends one after answering it.
func IsExit(req []byte) bool { return string(trimNewline(req)) == ExitRequest }

func trimNewline(b []byte) []byte {
	b, ok := bytes.CutSuffix(b, []byte("\n"))
	if ok {
		b, _ = bytes.CutSuffix(b, []byte("\r"))
	}
	return b
}

func checkName(name []byte) error {
	if len(name) == 0 {
		return fmt.Errorf("%w: empty name", ErrBadRequest)
	}
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRune(name[i:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("%w: name is not valid UTF-8 (byte %d)", ErrBadRequest, i)
		}
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: name holds unprintable %U (byte %d)", ErrBadRequest, r, i)
		}
		i += size
	}
	return nil
}
