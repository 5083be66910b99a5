package connset

import (
	"testing"

	"github.com/udplab/udplab/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

type member struct{ closed int }

func (m *member) Close() error { m.closed++; return nil }

func TestSet(t *testing.T) {
	s := New[*member](2)
	a, b, c := &member{}, &member{}, &member{}
	for _, step := range []struct {
		m    *member
		want Outcome
	}{{a, Added}, {b, Added}, {c, Full}} {
		if got := s.Add(step.m); got != step.want {
			t.Errorf("Add = %v, want %v", got, step.want)
		}
	}
	if a.closed != 0 || b.closed != 0 || c.closed != 1 || s.Len() != 2 {
		t.Errorf("after filling: closed %d %d %d, len %d; want only the refused one closed, 2 held", a.closed, b.closed, c.closed, s.Len())
	}
	s.Remove(a)
	if got := s.Add(c); got != Added || s.Len() != 2 {
		t.Errorf("Add once a place is free = %v, len %d", got, s.Len())
	}
	if accepted, refused := s.Counts(); accepted != 3 || refused != 1 {
		t.Errorf("Counts = %d accepted, %d refused; want 3 and 1", accepted, refused)
	}
	s.Close()
	s.Close()
	if !s.Closed() || b.closed != 1 || c.closed != 2 || a.closed != 0 {
		t.Errorf("after Close twice: closed %d %d %d; want members closed once, the removed one not", a.closed, b.closed, c.closed)
	}
	d := &member{}
	if got := s.Add(d); got != Closed || d.closed != 1 {
		t.Errorf("Add after Close = %v, closed %d; want Closed and the newcomer closed", got, d.closed)
	}
}
