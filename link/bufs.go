package link

import (
	"math/bits"
	"sync"
)

// A held packet's copy comes from a pool of its size class, so that it
// costs about its own length: with one pool of growing buffers, a 30-byte
// datagram could sit in a 64 KiB buffer a flood of large ones left behind.
// The classes are 64·2ⁿ and 96·2ⁿ bytes up to 64 KiB, so a buffer wastes
// at most a third of itself (1400 bytes take 1536, 60,000 take 64 KiB).
const (
	minClassShift = 6  // 64 bytes: below it, rounding costs less than the buffer's header
	maxClassShift = 16 // 64 KiB: the largest UDP datagram; larger ones are not pooled
	numClasses    = 2*(maxClassShift-minClassShift) + 1
)

var bufPools [numClasses]sync.Pool

// classOf is the smallest class holding n bytes, or -1 above the largest.
func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	k := bits.Len(uint(n - 1)) // 2^k is the power of two at or above n
	if k > maxClassShift {
		return -1
	}
	i := 2 * (k - minClassShift)
	if n <= 3<<(k-2) {
		i-- // 3·2^(k-2), three quarters of 2^k, is enough
	}
	return i
}

// classSize is the capacity of class i's buffers.
func classSize(i int) int {
	if i%2 == 0 {
		return 1 << (minClassShift + i/2)
	}
	return 3 << (minClassShift + i/2 - 1)
}

// getBuf returns a buffer holding a copy of b, from b's class.
func getBuf(b []byte) *[]byte {
	i := classOf(len(b))
	if i < 0 {
		c := append([]byte(nil), b...)
		return &c
	}
	bp, _ := bufPools[i].Get().(*[]byte)
	if bp == nil {
		c := make([]byte, 0, classSize(i))
		bp = &c
	}
	*bp = append((*bp)[:0], b...)
	return bp
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(bp *[]byte) {
	if i := classOf(cap(*bp)); i >= 0 && classSize(i) == cap(*bp) {
		bufPools[i].Put(bp)
	}
}
