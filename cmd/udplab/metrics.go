package main

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// gaugeNames are the counters, under their names in serve's summary, that
// say how many of something a server holds now, and so may fall: they are
// Prometheus gauges. Every other number a server reports only grows, and is
// a counter, NAME_total, on which rate() and increase() work. A server
// adding a number of the "now" kind adds its name here; one that only grows
// needs nothing.
var gaugeNames = []string{"sessions", "probation"}

// Timeouts of the HTTP endpoints (--metrics, and udplab link's --api),
// which listen on the network.
const (
	// httpHeaderTimeout bounds a request's headers, so a client that
	// opens connections and sends nothing cannot hold them open.
	httpHeaderTimeout = 5 * time.Second
	// httpStopWait is how long a request under way when the command ends
	// may finish; a scrape or an API call takes milliseconds.
	httpStopWait = time.Second
)

// Describe sends nothing: the metrics' names come from the servers'
// summaries, known only when read, which makes the set an unchecked
// collector to the registry. A serverSet is the one prometheus.Collector
// of udplab's servers, which reads each server's counters when scraped,
// so nothing is counted twice.
func (s *serverSet) Describe(chan<- *prometheus.Desc) {}

// Collect sends every server's counters as they are now.
func (s *serverSet) Collect(ch chan<- prometheus.Metric) {
	for _, l := range s.list() {
		for _, m := range l.metrics() {
			ch <- m
		}
	}
}

// metrics is every number in l's summary line, under its name there, with
// the requests the handler took without a reply (which the line leaves
// out), each labelled with l's mode. Strings ("unknown" socket drops) are
// left out, and so is a name seen twice.
func (l listener) metrics() []prometheus.Metric {
	var ms []prometheus.Metric
	seen := map[string]bool{}
	numbers(append(l.summary(), "consumed", l.srv.Stats().Consumed), func(key string, v float64) {
		name, typ := metricName(key)
		if seen[name] {
			return
		}
		seen[name] = true
		desc := prometheus.NewDesc(name, metricHelp(key), []string{"mode"}, nil)
		if m, err := prometheus.NewConstMetric(desc, typ, v, l.mode); err == nil {
			ms = append(ms, m)
		}
	})
	return ms
}

// numbers calls f with each attribute in attrs (slog's key and value
// pairs, or slog.Attrs) whose value is a number.
func numbers(attrs []any, f func(key string, v float64)) {
	var r slog.Record
	r.Add(attrs...)
	r.Attrs(func(a slog.Attr) bool {
		switch v := a.Value.Resolve(); v.Kind() {
		case slog.KindInt64:
			f(a.Key, float64(v.Int64()))
		case slog.KindUint64:
			f(a.Key, float64(v.Uint64()))
		case slog.KindFloat64:
			f(a.Key, v.Float64())
		}
		return true
	})
}

// metricName is the metric for the summary attribute key:
// udplab_server_KEY for a gauge, udplab_server_KEY_total for a counter.
func metricName(key string) (string, prometheus.ValueType) {
	name := "udplab_server_" + strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, key)
	if slices.Contains(gaugeNames, key) {
		return name, prometheus.GaugeValue
	}
	return strings.TrimSuffix(name, "_total") + "_total", prometheus.CounterValue
}

// statsHelp explains the counters every server has; the others' help
// points to serve's summary, where each server's own are described.
var statsHelp = map[string]string{
	"requests":     "Requests the server read.",
	"replies":      "Replies the server handed to its transport.",
	"bad_requests": "Requests the handler refused.",
	"oversized":    "Replies larger than the transport carries, dropped.",
	"errors":       "Socket or handler errors the server survived.",
	"consumed":     "Requests the handler took without a reply.",
	"socket_drops": "Datagrams the kernel dropped at the server's socket for a full receive buffer; absent where the kernel does not say.",
}

func metricHelp(key string) string {
	if h, ok := statsHelp[key]; ok {
		return h
	}
	return fmt.Sprintf("The server's %s, as its summary line on exit calls it (see udplab help serve and the README).", key)
}

// startMetrics serves the Prometheus text format at http://addr/metrics:
// what c collects (serve's servers, or a link and its proxy), and Go's
// runtime and process metrics. It returns the endpoint's URL and stop,
// which shuts the endpoint down and returns once its goroutines have ended.
func startMetrics(addr string, c prometheus.Collector, log *slog.Logger) (url string, stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), c)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: httpErrorLog(log), ErrorHandling: promhttp.ContinueOnError}))
	base, stop, err := startHTTP("--metrics", addr, mux, log)
	if err != nil {
		return "", nil, err
	}
	return base + "/metrics", stop, nil
}

// httpErrorLog is log for net/http's own complaints, as warnings.
func httpErrorLog(log *slog.Logger) *stdlog.Logger {
	return slog.NewLogLogger(log.Handler(), slog.LevelWarn)
}

// startHTTP serves h over TCP at addr, the value of flag, with a bound on
// each request's headers. It returns the base URL (http://HOST:PORT, the
// port resolved) and stop, which shuts the server down, letting a request
// under way finish for httpStopWait, and returns once its goroutines have
// ended.
func startHTTP(flag, addr string, h http.Handler, log *slog.Logger) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: httpHeaderTimeout, ErrorLog: httpErrorLog(log)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error(flag+" endpoint failed", "err", err)
		}
	}()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), httpStopWait)
		defer cancel()
		if hs.Shutdown(ctx) != nil {
			hs.Close()
		}
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}
