// Package budget shares a byte budget among a server's connections, so
// that what they buffer together stays bounded however many there are and
// whatever their peers declare: each takes bytes before it grows a buffer
// and gives them back when it shrinks it or ends.
package budget

import "sync/atomic"

// Bytes is a budget of bytes. Its methods are safe for concurrent use. A
// nil *Bytes is an unlimited budget: every Take succeeds.
type Bytes struct {
	left atomic.Int64
}

// New returns a budget of n bytes.
func New(n int64) *Bytes {
	b := new(Bytes)
	b.left.Store(n)
	return b
}

// Take reserves n bytes and reports whether that many were left; when they
// were not, it reserves nothing.
func (b *Bytes) Take(n int) bool {
	if b == nil {
		return true
	}
	for {
		left := b.left.Load()
		if left < int64(n) {
			return false
		}
		if b.left.CompareAndSwap(left, left-int64(n)) {
			return true
		}
	}
}

// Give returns n bytes taken before.
func (b *Bytes) Give(n int) {
	if b != nil {
		b.left.Add(int64(n))
	}
}

// Left returns how many bytes are not taken.
func (b *Bytes) Left() int64 {
	if b == nil {
		return -1
	}
	return b.left.Load()
}
