// Package compare measures what reliability costs on top of UDP: it runs the
// same greeting workload over the raw and the reliable transports, over the
// same simulated link with the same seed (or against servers already running),
// and reports delivery, order, duplicates, latency and wire overhead side by
// side, as a table, JSON, CSV, Markdown or a chart.
package compare
