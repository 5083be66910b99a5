package compare

import (
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histogram range: one microsecond to one minute at three
// significant digits (0.1% resolution), about 30 KiB per run. A round trip
// longer than a minute is recorded as a minute; Max keeps the true value.
const (
	histLowest  = 1          // µs
	histHighest = 60_000_000 // µs
	histDigits  = 3          // significant decimal digits
	jitterGain  = 1.0 / 16.0 // RFC 3550, section 6.4.1
	usPerMS     = float64(1e3)
	nsPerUS     = int64(1e3)
)

// Recorder tallies the replies of one run as they arrive. It is owned by
// the goroutine that receives: not safe for concurrent use. It allocates
// only in NewRecorder.
type Recorder struct {
	got        []bool // got[seq]: a reply for seq has arrived
	delivered  int
	inOrder    int
	duplicates int
	bad        int
	highest    int // highest sequence number delivered so far; -1 before any
	hist       *hdrhistogram.Histogram
	sum        time.Duration
	min, max   time.Duration
	first      time.Duration // round trip of the first reply delivered
	jitter     float64       // RFC 3550 J, in nanoseconds
	lastRTT    time.Duration
}

// NewRecorder returns a Recorder for a run of n messages numbered 0 to n-1.
func NewRecorder(n int) *Recorder {
	return &Recorder{
		got:     make([]bool, n),
		highest: -1,
		hist:    hdrhistogram.New(histLowest, histHighest, histDigits),
	}
}

// Reply records a correct reply to message seq, rtt after it was sent.
// The first reply for a sequence number counts as delivered and is in order
// unless a higher sequence number was delivered before it; any later reply
// for the same number is a duplicate and adds nothing else. seq must be in
// [0, n).
func (r *Recorder) Reply(seq int, rtt time.Duration) {
	if r.got[seq] {
		r.duplicates++
		return
	}
	r.got[seq] = true
	if seq > r.highest {
		r.inOrder++
		r.highest = seq
	}
	if r.delivered == 0 {
		r.first = rtt
	} else {
		// RFC 3550 jitter: D is the difference in transit time of two
		// consecutive arrivals; a round trip is the transit here because the
		// one clock sends and receives. J += (|D| - J)/16.
		d := math.Abs(float64(rtt - r.lastRTT))
		r.jitter += (d - r.jitter) * jitterGain
	}
	r.lastRTT = rtt
	r.delivered++
	r.sum += rtt
	r.max = max(r.max, rtt)
	if r.delivered == 1 || rtt < r.min {
		r.min = rtt
	}
	us := max(int64(rtt)/nsPerUS, histLowest)
	_ = r.hist.RecordValue(min(us, histHighest)) // in range by construction
}

// Bad records a reply that is not the greeting of any message sent: a
// corrupted name, a wrong greeting, a sequence number out of range.
func (r *Recorder) Bad() { r.bad++ }

// Delivered reports how many distinct messages have had a correct reply.
func (r *Recorder) Delivered() int { return r.delivered }

// Latency is a run's round-trip time summary, in milliseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// Latency summarizes the round trips recorded so far, or returns nil with
// none: no data is not zero. Mean, Min and Max are exact; the percentiles
// come from the histogram, so they are the highest value within 0.1% of the
// true one, held within [Min, Max] so that no percentile passes the
// extremes it summarizes.
func (r *Recorder) Latency() *Latency {
	if r.delivered == 0 {
		return nil
	}
	lo, hi := ms(r.min), ms(r.max)
	pct := func(p float64) float64 {
		return min(max(float64(r.hist.ValueAtPercentile(p))/usPerMS, lo), hi)
	}
	return &Latency{
		Mean: ms(r.sum / time.Duration(r.delivered)),
		P50:  pct(50),
		P90:  pct(90),
		P99:  pct(99),
		Max:  hi,
	}
}

// Jitter returns the RFC 3550 interarrival jitter in milliseconds, or nil
// before two replies have arrived: jitter is a difference between arrivals.
func (r *Recorder) Jitter() *float64 {
	if r.delivered < 2 {
		return nil
	}
	j := r.jitter / float64(time.Millisecond)
	return &j
}

// CDF returns the round-trip distribution as points (milliseconds, fraction
// of the sent messages answered at or below), one per histogram bucket that
// holds any reply: what a latency CDF chart draws. The fraction is of sent,
// not of replies, so a lossy run's curve levels off at its delivered share
// instead of reaching 1.
func (r *Recorder) CDF(sent int) (ms, frac []float64) {
	total := r.hist.TotalCount()
	if total == 0 || sent <= 0 {
		return nil, nil
	}
	var cum int64
	for _, b := range r.hist.Distribution() {
		if b.Count == 0 {
			continue
		}
		cum += b.Count
		ms = append(ms, float64(b.To)/usPerMS)
		frac = append(frac, float64(cum)/float64(sent))
	}
	return ms, frac
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
