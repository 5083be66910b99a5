package main

import (
	"reflect"
	"runtime"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/udplab/udplab/internal/conntest"
	"github.com/udplab/udplab/link"
)

// TestLinkMetricsCoverStats: every field of link.Stats has a metric, so
// a counter added to the link cannot be left out of /metrics unnoticed.
func TestLinkMetricsCoverStats(t *testing.T) {
	have := map[string]bool{"Bursts": true} // loss_bursts_total, labelled by length
	for _, m := range linkMetrics {
		have[m.field] = true
	}
	st := reflect.TypeFor[link.Stats]()
	for i := range st.NumField() {
		if f := st.Field(i).Name; !have[f] {
			t.Errorf("link.Stats.%s has no metric", f)
		}
	}
}

// TestLinkMetricsServe scrapes a proxy's /metrics on loopback after three
// datagrams went up, and checks it stops with the server.
func TestLinkMetricsServe(t *testing.T) {
	l, err := link.New(link.Spec{Seed: 1, Up: link.Params{Loss: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	server := loopback(t)
	p, err := link.NewProxy(link.ProxyConfig{Listen: "127.0.0.1:0", To: server.LocalAddr().String(), Link: l, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	url, stop, err := startMetrics("127.0.0.1:0", newLinkCollector(l, p), quiet)
	if err != nil {
		t.Fatal(err)
	}
	c := loopback(t)
	for range 3 {
		if _, err := c.WriteTo([]byte("hello"), p.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	conntest.WaitFor(t, func() bool { return l.Stats(link.Up).Offered == 3 })
	fams, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	counter, gauge := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	for _, want := range []struct {
		name   string
		typ    dto.MetricType
		labels []string
		v      float64
	}{
		{"udplab_link_offered_packets_total", counter, []string{"direction", "up"}, 3},
		{"udplab_link_offered_bytes_total", counter, []string{"direction", "up"}, 15},
		{"udplab_link_lost_packets_total", counter, []string{"direction", "up"}, 3},
		{"udplab_link_limit_drops_total", counter, []string{"direction", "down"}, 0},
		{"udplab_link_queue_drops_total", counter, []string{"direction", "up"}, 0},
		{"udplab_link_held_bytes", gauge, []string{"direction", "up"}, 0},
		{"udplab_link_held_bytes_high", gauge, []string{"direction", "up"}, 0},
		{"udplab_link_loss_bursts_total", counter, []string{"direction", "up", "length", "3"}, 1},
		{"udplab_link_clients", gauge, nil, 1},
		{"udplab_link_refused_packets_total", counter, nil, 0},
	} {
		if v, ok := familyValue(fams, want.name, want.typ, want.labels...); !ok || v != want.v {
			t.Errorf("%s%v = %v (found: %v), want %v", want.name, want.labels, v, ok, want.v)
		}
	}
	if runtime.GOOS == "linux" { // where the kernel says
		v, ok := familyValue(fams, "udplab_link_socket_drops_total", counter, "direction", "up")
		f, fok := familyValue(fams, "udplab_link_socket_drops_floor", gauge, "direction", "up")
		if !ok || !fok || v != 0 || f != 0 {
			t.Errorf("socket drops %v (found: %v), floor %v (found: %v); want 0 and 0", v, ok, f, fok)
		}
	}
	if fams["process_resident_memory_bytes"] == nil {
		t.Error("/metrics lacks the process's resident memory")
	}
	stop()
	if _, err := scrape(url); err == nil {
		t.Error("/metrics still answers after stop")
	}
}

// familyValue is the value of the metric name of type typ in fams whose
// labels are the given name and value pairs.
func familyValue(fams map[string]*dto.MetricFamily, name string, typ dto.MetricType, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil || f.GetType() != typ {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		if typ == dto.MetricType_COUNTER {
			return m.GetCounter().GetValue(), true
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

// hasLabels reports whether m has exactly the label pairs given.
func hasLabels(m *dto.Metric, pairs []string) bool {
	if len(m.GetLabel()) != len(pairs)/2 {
		return false
	}
	for i := 0; i < len(pairs); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			found = found || l.GetName() == pairs[i] && l.GetValue() == pairs[i+1]
		}
		if !found {
			return false
		}
	}
	return true
}
