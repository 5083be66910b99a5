// Package connset holds what a server is serving, connections or sessions:
// at most a fixed number at once, and all of them closed when the server
// closes. The TCP and reliable servers share it, so both admit, refuse and
// close alike.
package connset

import "sync"

// Member is what a Set holds: a TCP connection, a KCP session.
type Member interface {
	comparable
	Close() error
}

// Outcome is what Add did with a newcomer.
type Outcome int

const (
	Added  Outcome = iota // the newcomer is in the set
	Full                  // the set held its maximum: the newcomer was closed
	Closed                // the set is closed: the newcomer was closed
)

// Set is a bounded set of members. Its methods may be called from many
// goroutines at once.
type Set[M Member] struct {
	mu                sync.Mutex
	members           map[M]struct{}
	max               int
	closed            bool
	accepted, refused uint64
}

// New returns an empty set that holds at most max members.
func New[M Member](max int) *Set[M] {
	return &Set[M]{members: make(map[M]struct{}), max: max}
}

// Add admits m, or closes it when the set is full or closed.
func (s *Set[M]) Add(m M) Outcome {
	s.mu.Lock()
	var out Outcome
	switch {
	case s.closed:
		out = Closed
	case len(s.members) >= s.max:
		out = Full
		s.refused++
	default:
		s.members[m] = struct{}{}
		s.accepted++
	}
	s.mu.Unlock()
	if out != Added {
		m.Close()
	}
	return out
}

// Remove takes m out of the set, freeing its place. It does not close m.
func (s *Set[M]) Remove(m M) {
	s.mu.Lock()
	delete(s.members, m)
	s.mu.Unlock()
}

// Len returns how many members the set holds.
func (s *Set[M]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.members)
}

// Close closes every member and makes every later Add close its newcomer.
// Members stay in the set until removed. Calls after the first do nothing.
func (s *Set[M]) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for m := range s.members {
		m.Close()
	}
}

// Each calls f on every member, with the set locked: f must not call the
// set's methods.
func (s *Set[M]) Each(f func(M)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for m := range s.members {
		f(m)
	}
}

// Counts returns how many members Add has admitted, and how many it has
// refused because the set was full.
func (s *Set[M]) Counts() (accepted, refused uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.refused
}

// Closed reports whether Close has been called.
func (s *Set[M]) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
