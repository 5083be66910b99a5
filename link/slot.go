package link

import "time"

// Slot is netem's slot ("slot MIN MAX packets N bytes B"): the direction
// sends in bursts, as Wi-Fi's and DOCSIS's aggregation do. A packet due
// (its delay, jitter and rate served) leaves only once the current slot
// has opened; a slot opens Min to Max (uniform) after the previous one
// closed, and closes once it has sent Packets packets or Bytes bytes
// (payload and IP/UDP headers; the last packet may overshoot), or, with
// neither set, never while packets keep coming. When the next packet is
// due after the open slot's time, the link was idle: the next slot opens
// Min to Max after that packet is due, as netem's get_slot_next from the
// packet's time_to_send. The zero value is off.
type Slot struct {
	Min, Max time.Duration
	Packets  int   // 0: no packet limit
	Bytes    int64 // 0: no byte limit
}

func (s *Slot) on() bool { return s.Max > 0 }

// slotGate returns, with d.mu held, when a packet due at due may leave
// under s, opening a slot from due if the last one opened before it.
func (d *direction) slotGate(s *Slot, due time.Time) time.Time {
	if d.models.slotNext.Before(due) {
		d.nextSlot(s, due)
	}
	if d.models.slotNext.After(due) {
		return d.models.slotNext
	}
	return due
}

// nextSlot opens, with d.mu held, the next slot Min to Max after from.
// Its length is the slot's own draw, keyed by the seed, the direction and
// the slot's index, from a stream no packet uses.
func (d *direction) nextSlot(s *Slot, from time.Time) {
	r := packetRNG(d.seed, d.id+4, d.models.slotN)
	d.models.slotN++
	d.models.slotNext = from.Add(s.Min + time.Duration(r.float()*float64(s.Max-s.Min)))
	d.models.slotPackets, d.models.slotBytes = s.Packets, s.Bytes
}

// slotSpend counts, with d.mu held, a packet of size wire bytes sent at
// now against the open slot, closing it when it has sent its share.
func (d *direction) slotSpend(s *Slot, now time.Time, size int) {
	if s.Packets == 0 && s.Bytes == 0 {
		return
	}
	d.models.slotPackets--
	d.models.slotBytes -= int64(size)
	if s.Packets > 0 && d.models.slotPackets <= 0 || s.Bytes > 0 && d.models.slotBytes <= 0 {
		d.nextSlot(s, now)
	}
}
