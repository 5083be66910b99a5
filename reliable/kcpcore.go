package reliable

import (
	"reflect"
	"unsafe"

	kcp "github.com/xtaci/kcp-go/v5"
)

// kcpFlush is kcp-go's (*KCP).flush, which its own UDPSession calls on
// every Write and every tick, and which returns how soon the session next
// has work: KCP exports only Update, which flushes at most once an
// interval, so a reply would wait up to an interval. kcp-go is pinned
// (go.mod), and the build fails if the symbol goes.
//
//go:linkname kcpFlush github.com/xtaci/kcp-go/v5.(*KCP).flush
func kcpFlush(k *kcp.KCP, t kcp.FlushType) uint32

// newKCP returns kcp-go's KCP core for conv, tuned as tune tunes kcp-go's
// sessions (a profile, windows, an MTU less the headers kcp-go's SetMtu
// takes off; message mode, which NewKCP starts in), with small queues.
func newKCP(conv uint32, output func(buf []byte, size int), c *Config, mtu int) *kcp.KCP {
	k := kcp.NewKCP(conv, output)
	p := Profiles[c.Profile]
	k.NoDelay(p.NoDelay, p.Interval, p.Resend, p.NoCongestion)
	k.WndSize(c.SendWindow, c.ReceiveWindow)
	k.SetMtu(mtu)
	smallQueues(k)
	return k
}

// kcpQueues are the KCP struct's ring buffers, which NewKCP makes 64
// segments long each: 12 kB of the 19 kB an idle session's core takes.
var kcpQueues = []string{"snd_queue", "rcv_queue", "snd_buf"}

// smallQueues replaces k's empty ring buffers with rings of
// kcp.RINGBUFFER_MIN segments, which kcp-go's RingBuffer grows (doubling)
// as segments are pushed, so an idle session holds 1.5 kB of them and a
// busy one as much as it uses. kcp-go exports the RingBuffer type and
// nothing to set the fields, so this reaches them by reflection; it
// reports false, changing nothing, if kcp-go's fields are not what it
// expects (TestSmallQueues fails then).
func smallQueues(k *kcp.KCP) bool {
	v := reflect.ValueOf(k).Elem()
	rings := make([]reflect.Value, len(kcpQueues))
	for i, name := range kcpQueues {
		f := v.FieldByName(name)
		if !f.IsValid() || f.Kind() != reflect.Pointer || f.Type().Elem().Kind() != reflect.Struct {
			return false
		}
		ring := reflect.New(f.Type().Elem())
		elems := ring.Elem().FieldByName("elements")
		if !elems.IsValid() || elems.Kind() != reflect.Slice || f.Elem().FieldByName("elements").Len() == 0 {
			return false
		}
		settable(elems).Set(reflect.MakeSlice(elems.Type(), kcp.RINGBUFFER_MIN, kcp.RINGBUFFER_MIN))
		rings[i] = ring
	}
	for i, name := range kcpQueues {
		settable(v.FieldByName(name)).Set(rings[i])
	}
	return true
}

// settable is f, an unexported field of an addressable struct, as a value
// that may be set.
func settable(f reflect.Value) reflect.Value {
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}
