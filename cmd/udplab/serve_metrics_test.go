package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/udplab/udplab/message"
)

// scrape reads url's metrics in the Prometheus text format, on a
// connection of its own, closed after.
func scrape(url string) (map[string]*dto.MetricFamily, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// metricValue is the value of name{mode="mode"} in fams, if it is there
// with type typ.
func metricValue(fams map[string]*dto.MetricFamily, name, mode string, typ dto.MetricType) (float64, bool) {
	f := fams[name]
	if f == nil || f.GetType() != typ {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "mode" && l.GetValue() == mode {
				if typ == dto.MetricType_GAUGE {
					return m.GetGauge().GetValue(), true
				}
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

// TestServerMetrics: every number of a server's summary becomes a metric
// by its name, whatever the server adds; the "now" names are gauges and
// the rest counters; strings, durations and unknown socket drops are left
// out, and a name the summary repeats is exported once.
func TestServerMetrics(t *testing.T) {
	a := (&fakeServer{stats: message.ServerStats{Requests: 9, Replies: 8, BadRequests: 1, Consumed: 2}, drops: 7, known: true}).
		withSummary("sessions", 3, "loops_dropped", uint64(4), slog.Int("replay_drops", 5), "probation", 2,
			"cert", "abc", "rtt", time.Second, "requests", 100, "amplification_capped_bytes", int64(6), "hits_total", 1)
	b := &fakeServer{stats: message.ServerStats{Requests: 1}}
	set := &serverSet{}
	set.add(listener{"a", a})
	set.add(listener{"b", b})
	reg := prometheus.NewRegistry()
	reg.MustRegister(set)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			got[fmt.Sprintf("%s{%s}", f.GetName(), m.GetLabel()[0].GetValue())] = fmt.Sprintf("%s %v", f.GetType(), v)
		}
	}
	want := map[string]string{
		"udplab_server_requests_total{a}":                   "COUNTER 9",
		"udplab_server_replies_total{a}":                    "COUNTER 8",
		"udplab_server_bad_requests_total{a}":               "COUNTER 1",
		"udplab_server_oversized_total{a}":                  "COUNTER 0",
		"udplab_server_errors_total{a}":                     "COUNTER 0",
		"udplab_server_consumed_total{a}":                   "COUNTER 2",
		"udplab_server_socket_drops_total{a}":               "COUNTER 7",
		"udplab_server_sessions{a}":                         "GAUGE 3",
		"udplab_server_probation{a}":                        "GAUGE 2",
		"udplab_server_loops_dropped_total{a}":              "COUNTER 4",
		"udplab_server_replay_drops_total{a}":               "COUNTER 5",
		"udplab_server_amplification_capped_bytes_total{a}": "COUNTER 6",
		"udplab_server_hits_total{a}":                       "COUNTER 1",
		"udplab_server_requests_total{b}":                   "COUNTER 1",
		"udplab_server_replies_total{b}":                    "COUNTER 0",
		"udplab_server_bad_requests_total{b}":               "COUNTER 0",
		"udplab_server_oversized_total{b}":                  "COUNTER 0",
		"udplab_server_errors_total{b}":                     "COUNTER 0",
		"udplab_server_consumed_total{b}":                   "COUNTER 0",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected metric %s = %s", k, g)
		}
	}
}

// TestMetricsAddrTaken: a --metrics address serve cannot bind is a runtime
// error, exit 1, naming the flag, before any listener starts.
func TestMetricsAddrTaken(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, out, errOut := runCmd(t, "", "serve", "--metrics", ln.Addr().String(), "--raw", "127.0.0.1:0")
	want := regexp.MustCompile(`^udplab serve: --metrics 127\.0\.0\.1:\d+: listen tcp 127\.0\.0\.1:\d+: .*\n$`)
	if code != exitError || out != "" || !want.MatchString(errOut) || strings.Contains(errOut, "msg=serving") {
		t.Errorf("serve --metrics on a taken port: exit %d, stdout %q, stderr %q; want 1 and %s", code, out, errOut, want)
	}
}
