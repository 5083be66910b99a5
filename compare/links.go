package compare

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/udplab/udplab/link"
)

// Link is a simulated link to run over, with the name reports show.
type Link struct {
	Name       string    // as written on the command line, or the swept item
	Spec       link.Spec // the whole link, seed included
	SweepValue string    // the swept parameter's value; empty outside a sweep
}

// ParseLink reads text in the link grammar (a preset or KEY=VALUE items)
// with seed as its seed, unless text names a seed of its own.
func ParseLink(text string, seed uint64) (Link, error) {
	spec, err := link.Parse(seedItem(seed))
	if err == nil {
		err = spec.Apply(text)
	}
	if err != nil {
		return Link{}, err
	}
	name := text
	if name == "" {
		name = "perfect"
	}
	return Link{Name: name, Spec: spec}, nil
}

func seedItem(seed uint64) string { return "seed=" + strconv.FormatUint(seed, 10) }

// DefaultMatrix is the links compare runs when given none: each a 40 ms
// round trip, so latency is the link's and not the machine's, and each
// showing one thing a reliable transport is for.
var DefaultMatrix = []string{
	"delay=20ms",              // clean: what reliability costs when nothing goes wrong
	"loss=10%,delay=20ms",     // random loss, 19% of round trips lose a datagram
	"burst=2%/25%,delay=20ms", // Gilbert-Elliott bursts: 7.4% loss, 4 datagrams a burst
	"reorder=10%,delay=20ms",  // a tenth of datagrams overtake the queue
}

// DefaultLinks returns DefaultMatrix parsed with seed.
func DefaultLinks(seed uint64) []Link {
	links := make([]Link, len(DefaultMatrix))
	for i, text := range DefaultMatrix {
		l, err := ParseLink(text, seed)
		if err != nil {
			panic(err) // a constant; the tests parse it
		}
		links[i] = l
	}
	return links
}

// DefaultSweepBase is the link a sweep varies when none is given: a 40 ms
// round trip, so that latency shows what the swept parameter does to it.
const DefaultSweepBase = "delay=20ms"

// SweepLinks returns base with one parameter set to each value in turn.
// sweep is KEY=V1,V2,...; KEY is any link grammar key, with an up: or down:
// prefix for one direction. It returns the key too, for the report.
func SweepLinks(base, sweep string, seed uint64) (key string, links []Link, err error) {
	key, list, ok := strings.Cut(sweep, "=")
	if !ok || key == "" || list == "" {
		return "", nil, fmt.Errorf("sweep %q: want KEY=V1,V2,... such as loss=0%%,5%%,20%%", sweep)
	}
	for _, v := range strings.Split(list, ",") {
		item := key + "=" + v
		if err := link.CheckItem(item); err != nil {
			return "", nil, fmt.Errorf("sweep %q: %w", sweep, err)
		}
		text := item
		if base != "" {
			text = base + "," + item
		}
		l, err := ParseLink(text, seed)
		if err != nil {
			return "", nil, fmt.Errorf("sweep %q: %w", sweep, err)
		}
		l.Name, l.SweepValue = item, v
		links = append(links, l)
	}
	return key, links, nil
}
