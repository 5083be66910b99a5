package message

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestGreet(t *testing.T) {
	tests := []struct {
		req, want string
		bad       bool
	}{
		{req: "Alice", want: "Hello Alice!\n"},
		{req: "Alice\n", want: "Hello Alice!\n"},
		{req: "Alice\r\n", want: "Hello Alice!\n"},
		{req: "Zoë Ōkubo", want: "Hello Zoë Ōkubo!\n"},
		{req: "exit", want: "Good bye!\n"},
		{req: "exit\n", want: "Good bye!\n"},
		{req: "exit now", want: "Hello exit now!\n"},
		{req: "", bad: true},
		{req: "\n", bad: true},
		{req: "a\x00b", bad: true},
		{req: "\xff\xfe", bad: true},
		{req: "Alice\n\n", bad: true},
	}
	for _, tt := range tests {
		got, err := Greet([]byte("prefix:"), []byte(tt.req))
		if tt.bad {
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("Greet(%q) error = %v, want ErrBadRequest", tt.req, err)
			}
			continue
		}
		if err != nil || string(got) != "prefix:"+tt.want {
			t.Errorf("Greet(%q) = %q, %v; want %q", tt.req, got, err, "prefix:"+tt.want)
		}
	}
}

func TestIsExit(t *testing.T) {
	for req, want := range map[string]bool{
		"exit": true, "exit\n": true, "exit\r\n": true,
		"exit\n\n": false, "exit\r": false, " exit": false, "Exit": false, "exit now": false, "": false,
	} {
		if got := IsExit([]byte(req)); got != want {
			t.Errorf("IsExit(%q) = %v, want %v", req, got, want)
		}
	}
}

func TestTime(t *testing.T) {
	at := time.Date(2026, time.November, 1, 9, 5, 1, 0, time.Local)
	h := Time(func() time.Time { return at })
	got, err := h(nil, []byte("hi there"))
	// ctime pads a one-digit day with a space.
	if want := "[Sun Nov  1 09:05:01 2026] hi there"; err != nil || string(got) != want {
		t.Errorf("Time(%q) = %q, %v; want %q", "hi there", got, err, want)
	}
}

func TestEcho(t *testing.T) {
	req := []byte("\x00any bytes\xff")
	got, err := Echo(nil, req)
	if err != nil || string(got) != string(req) {
		t.Errorf("Echo(%q) = %q, %v", req, got, err)
	}
}

func TestLookup(t *testing.T) {
	for _, name := range HandlerNames {
		if h, err := Lookup(name); err != nil || h == nil {
			t.Errorf("Lookup(%q) = %v, %v", name, h, err)
		}
	}
	_, err := Lookup("shout")
	if err == nil || !strings.Contains(err.Error(), `"shout"`) || !strings.Contains(err.Error(), "greet, time, echo") {
		t.Errorf("Lookup(%q) error = %v, want it to name the input and the choices", "shout", err)
	}
}

func TestGreetDoesNotAllocateWithRoom(t *testing.T) {
	dst := make([]byte, 0, 64)
	req := []byte("Alice")
	allocs := testing.AllocsPerRun(100, func() { _, _ = Greet(dst[:0], req) })
	if allocs != 0 {
		t.Errorf("Greet allocated %v times per call, want 0", allocs)
	}
}
