package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/udplab/udplab/link"
)

// linkMetric is one of a direction's link.Stats as a Prometheus metric.
type linkMetric struct {
	field string // the link.Stats field it reads, for the test that none is left out
	name  string
	help  string
	typ   prometheus.ValueType
	value func(s *link.Stats) float64
}

const linkMetricPrefix = "udplab_link_"

func linkCounter(field, name, help string, v func(s *link.Stats) uint64) linkMetric {
	return linkMetric{field, name, help, prometheus.CounterValue, func(s *link.Stats) float64 { return float64(v(s)) }}
}

func linkGauge(field, name, help string, v func(s *link.Stats) float64) linkMetric {
	return linkMetric{field, name, help, prometheus.GaugeValue, v}
}

// linkMetrics are every field of link.Stats; Bursts, a distribution, is
// loss_bursts_total with a length label (see linkCollector.Collect).
var linkMetrics = []linkMetric{
	linkCounter("Offered", "offered_packets_total", "Datagrams written into the link.", func(s *link.Stats) uint64 { return s.Offered }),
	linkCounter("OfferedBytes", "offered_bytes_total", "Payload bytes written into the link.", func(s *link.Stats) uint64 { return s.OfferedBytes }),
	linkCounter("Delivered", "delivered_packets_total", "Datagrams the link passed on, duplicates included.", func(s *link.Stats) uint64 { return s.Delivered }),
	linkCounter("DeliveredBytes", "delivered_bytes_total", "Payload bytes the link passed on.", func(s *link.Stats) uint64 { return s.DeliveredBytes }),
	linkCounter("Lost", "lost_packets_total", "Datagrams dropped at random (Bernoulli or burst loss).", func(s *link.Stats) uint64 { return s.Lost }),
	linkCounter("QueueDrops", "queue_drops_total", "Datagrams tail-dropped at the rate limiter's full queue.", func(s *link.Stats) uint64 { return s.QueueDrops }),
	linkCounter("LimitDrops", "limit_drops_total", "Datagrams dropped because the direction held its limit of packets or bytes.", func(s *link.Stats) uint64 { return s.LimitDrops }),
	linkCounter("MTUDrops", "mtu_drops_total", "Datagrams dropped for being larger than the MTU.", func(s *link.Stats) uint64 { return s.MTUDrops }),
	linkCounter("OutageDrops", "outage_drops_total", "Datagrams dropped during a scheduled outage.", func(s *link.Stats) uint64 { return s.OutageDrops }),
	linkCounter("Duplicated", "duplicated_packets_total", "Datagrams sent twice.", func(s *link.Stats) uint64 { return s.Duplicated }),
	linkCounter("Corrupted", "corrupted_packets_total", "Datagrams with one bit flipped.", func(s *link.Stats) uint64 { return s.Corrupted }),
	linkCounter("Reordered", "reordered_packets_total", "Datagrams sent past the delay queue.", func(s *link.Stats) uint64 { return s.Reordered }),
	linkGauge("QueueHigh", "queue_high_packets", "The most datagrams ever waiting at the rate limiter.", func(s *link.Stats) float64 { return float64(s.QueueHigh) }),
	linkGauge("Queued", "held_packets", "Datagrams the link holds now (delayed or queued).", func(s *link.Stats) float64 { return float64(s.Queued) }),
	linkGauge("HeldBytes", "held_bytes", "Payload bytes the link holds now.", func(s *link.Stats) float64 { return float64(s.HeldBytes) }),
	linkGauge("HeldBytesHigh", "held_bytes_high", "The most payload bytes the link ever held at once.", func(s *link.Stats) float64 { return float64(s.HeldBytesHigh) }),
	linkCounter("WriteErrors", "write_errors_total", "Deliveries the socket refused.", func(s *link.Stats) uint64 { return s.WriteErrors }),
	linkCounter("Lateness", "late_packets_total", "Held datagrams whose release was timed.", func(s *link.Stats) uint64 { return s.Lateness.Count }),
	linkGauge("Lateness", "late_p50_seconds", "Median of how late the link released held datagrams.", func(s *link.Stats) float64 { return s.Lateness.P50.Seconds() }),
	linkGauge("Lateness", "late_p99_seconds", "99th percentile of how late the link released held datagrams.", func(s *link.Stats) float64 { return s.Lateness.P99.Seconds() }),
	linkGauge("Lateness", "late_max_seconds", "The latest the link released a held datagram.", func(s *link.Stats) float64 { return s.Lateness.Max.Seconds() }),
}

// linkCollector reads a link's and its proxy's counters when scraped, so
// the figures are the ones the summary prints, kept once.
type linkCollector struct {
	l       *link.Link
	p       *link.Proxy
	descs   []*prometheus.Desc // linkMetrics', in order
	bursts  *prometheus.Desc
	sockets *prometheus.Desc
	floor   *prometheus.Desc
	clients *prometheus.Desc
	refused *prometheus.Desc
	expired *prometheus.Desc
}

func newLinkCollector(l *link.Link, p *link.Proxy) *linkCollector {
	dir := []string{"direction"}
	c := &linkCollector{
		l: l, p: p,
		bursts:  prometheus.NewDesc(linkMetricPrefix+"loss_bursts_total", "Runs of consecutive random losses, by length.", []string{"direction", "length"}, nil),
		sockets: prometheus.NewDesc(linkMetricPrefix+"socket_drops_total", "Datagrams the kernel dropped at the proxy's full socket buffers (Linux only; absent where unknown).", dir, nil),
		floor:   prometheus.NewDesc(linkMetricPrefix+"socket_drops_floor", "1 where socket_drops_total is a floor: a socket taking coalesced runs (UDP GRO) dropped, and counts a run once; 0 where it is exact.", dir, nil),
		clients: prometheus.NewDesc(linkMetricPrefix+"clients", "Clients with an upstream socket now.", nil, nil),
		refused: prometheus.NewDesc(linkMetricPrefix+"refused_packets_total", "Datagrams from clients refused for --max-clients or a failed upstream socket.", nil, nil),
		expired: prometheus.NewDesc(linkMetricPrefix+"expired_clients_total", "Clients forgotten after --idle.", nil, nil),
	}
	for _, m := range linkMetrics {
		c.descs = append(c.descs, prometheus.NewDesc(linkMetricPrefix+m.name, m.help, dir, nil))
	}
	return c
}

// Describe sends every metric's description.
func (c *linkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{c.bursts, c.sockets, c.floor, c.clients, c.refused, c.expired} {
		ch <- d
	}
}

// Collect reads the counters now.
func (c *linkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range directions {
		s := c.l.Stats(d)
		for i, m := range linkMetrics {
			ch <- prometheus.MustNewConstMetric(c.descs[i], m.typ, m.value(&s), d.String())
		}
		for length, n := range s.Bursts {
			ch <- prometheus.MustNewConstMetric(c.bursts, prometheus.CounterValue, float64(n), d.String(), strconv.FormatUint(length, 10))
		}
		if s := c.p.SocketDrops(d); s.Known {
			floor := 0.0
			if s.Floor {
				floor = 1
			}
			ch <- prometheus.MustNewConstMetric(c.sockets, prometheus.CounterValue, float64(s.N), d.String())
			ch <- prometheus.MustNewConstMetric(c.floor, prometheus.GaugeValue, floor, d.String())
		}
	}
	ch <- prometheus.MustNewConstMetric(c.clients, prometheus.GaugeValue, float64(c.p.Clients()))
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(c.p.Refused()))
	ch <- prometheus.MustNewConstMetric(c.expired, prometheus.CounterValue, float64(c.p.Expired()))
}
