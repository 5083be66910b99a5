package compare

import (
	"fmt"
	"strconv"
	"strings"
)

// bulkTables are the bulk workload's tables: each flow, and with a
// competing flow, how the two shared the link.
func (r *Report) bulkTables() []*table {
	t := &table{
		title: "Bulk, client to server (goodput: bytes delivered intact and once, over the time to the last; " +
			"of rate: goodput as a share of the link's rate; queue: the rate limiter's drops and most waiting, both directions):",
		left: 2,
		header: []string{"link", "mode", "msg B", "delivered MB", "time s", "goodput Mbit/s", "of rate",
			"retrans", "queue drops", "queue high", "wire MB", "overhead", "cpu ms"},
	}
	if r.Config.Workload.Competing != "" {
		t.header[len(t.header)-1] = "cpu ms, both flows"
		t.title = strings.Replace(t.title, "both directions", "both directions and both flows", 1)
	}
	var shared *table
	for _, x := range r.Results {
		b := x.Bulk
		if b == nil { // interrupted before it began
			t.rows = append(t.rows, append([]string{x.Link, x.Mode, "-", "- (interrupted)"}, dashCells(len(t.header)-4)...))
			continue
		}
		name := x.Link
		if x.Noisy {
			name += " *"
		}
		t.rows = append(t.rows, []string{
			name, x.Mode, strconv.Itoa(b.MessageSize), deliveredCell(x), secondsCell(x),
			mbit(b.GoodputBPS), shareCell(b.LinkShare), retransCell(x),
			orDash(optU(x.QueueDrops)), orDash(optI(x.QueueHigh)),
			fmt.Sprintf("%.2f", float64(x.WireBytes)/1e6), overheadCell(x.Overhead), fmt.Sprintf("%.0f", x.CPUS*1e3),
		})
		if x.Competing == nil {
			continue
		}
		if shared == nil {
			shared = r.sharingTable(x.Competing.Mode)
		}
		c := x.Competing
		shared.rows = append(shared.rows, []string{
			name, x.Mode, mbit(b.GoodputBPS), mbit(c.GoodputBPS),
			optMbit(b.SharedGoodputBPS), optMbit(c.SharedGoodputBPS), fairnessCell(x.Fairness),
		})
	}
	if shared != nil {
		return []*table{t, shared}
	}
	return []*table{t}
}

func dashCells(n int) []string {
	d := make([]string, n)
	for i := range d {
		d[i] = "-"
	}
	return d
}

func (r *Report) sharingTable(other string) *table {
	return &table{
		title: "Sharing the link with a " + other + " flow (goodput in Mbit/s, each flow over its own time and while both were sending, " +
			"until the first finished; Jain's fairness index: 1 is an even split, 0.5 one flow taking everything):",
		left:   2,
		header: []string{"link", "mode", "goodput", other + " goodput", "sharing", other + " sharing", "Jain"},
	}
}

// deliveredCell is the bytes delivered and their share of the transfer.
func deliveredCell(x Result) string {
	b := x.Bulk
	s := fmt.Sprintf("%.2f %5.1f%%", float64(b.DeliveredBytes)/1e6, 100*float64(b.DeliveredBytes)/float64(b.Bytes))
	if b.Corrupt > 0 || b.Duplicates > 0 {
		s += fmt.Sprintf(" (%d corrupt, %d dup)", b.Corrupt, b.Duplicates)
	}
	return s
}

// secondsCell is the completion time, saying when the transfer did not
// complete.
func secondsCell(x Result) string {
	if x.Bulk == nil {
		return "-"
	}
	s := fmt.Sprintf("%.2f", x.Bulk.CompletionS)
	switch {
	case x.Interrupted:
		s += " (interrupted)"
	case x.Stalled:
		s += " (stalled)"
	case !x.Bulk.Complete:
		s += " (incomplete)"
	}
	return s
}

func retransCell(x Result) string {
	s := strconv.FormatUint(x.Retransmissions, 10)
	if x.CountersShared {
		s += " (both flows)"
	}
	return s
}

func mbit(bps float64) string { return fmt.Sprintf("%.2f", bps/1e6) }

func optMbit(bps *float64) string {
	if bps == nil {
		return "-"
	}
	return mbit(*bps)
}

func shareCell(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100**v)
}

func fairnessCell(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *v)
}

// byteCount writes n bytes in the largest SI unit below it.
func byteCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.3g GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.3g MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.3g kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// bulkSizeText says what size the bulk messages were.
func bulkSizeText(size int) string {
	if size == 0 {
		return "each mode's own message size"
	}
	return fmt.Sprintf("messages of %d B", size)
}
