package procstat

import (
	"runtime"
	"testing"

	"github.com/udplab/udplab/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

func TestParseStatus(t *testing.T) {
	for _, c := range []struct {
		status string
		want   uint64
		ok     bool
	}{
		{"Name:\tcat\nVmHWM:\t    1596 kB\nVmRSS:\t    1596 kB\nVmData:\t     360 kB\n", 1596 << 10, true},
		{"Name:\tkthreadd\nThreads:\t1\n", 0, false}, // kernel threads have no Vm lines
		{"VmRSS:\t1596 MB\n", 0, false},
		{"VmRSS:\tmany kB\n", 0, false},
	} {
		if got, ok := parseStatus([]byte(c.status)); got != c.want || ok != c.ok {
			t.Errorf("parseStatus(%q) = %d, %v; want %d, %v", c.status, got, ok, c.want, c.ok)
		}
	}
}

func TestParseSockstat(t *testing.T) {
	const table = `sockets: used 10
TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 67
UDP: inuse 0 mem 144
UDPLITE: inuse 0
FRAG: inuse 0 memory 0
`
	for _, c := range []struct {
		proto string
		want  uint64
		ok    bool
	}{
		{"TCP", 67, true},
		{"UDP", 144, true},
		{"UDPLITE", 0, false}, // no mem field
		{"FRAG", 0, false},    // memory is not mem
		{"RAW", 0, false},     // no line
	} {
		if got, ok := parseSockstat([]byte(table), c.proto); got != c.want || ok != c.ok {
			t.Errorf("parseSockstat(%s) = %d, %v; want %d, %v", c.proto, got, ok, c.want, c.ok)
		}
	}
}

func TestParseStat(t *testing.T) {
	for _, c := range []struct {
		stat string
		want CPUTimes
		ok   bool
	}{
		{"cpu  748106 0 195939 4242388 4366 0 10101 4014 0 0\ncpu0 369456 0 96017 2128841 1038 0 4674 1967 0 0\n",
			CPUTimes{Busy: 748106 + 195939 + 10101 + 4014, Total: 748106 + 195939 + 4242388 + 4366 + 10101 + 4014}, true},
		{"cpu  1 2 3 4 5 6 7 8\n", CPUTimes{Busy: 1 + 2 + 3 + 6 + 7 + 8, Total: 36}, true}, // before guest time was counted
		{"cpu  1 2 3 4 5 6 7\n", CPUTimes{}, false},
		{"cpu0 1 2 3 4 5 6 7 8\n", CPUTimes{}, false},
		{"cpu  1 2 3 x 5 6 7 8\n", CPUTimes{}, false},
	} {
		if got, ok := parseStat([]byte(c.stat)); got != c.want || ok != c.ok {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v, %v", c.stat, got, ok, c.want, c.ok)
		}
	}
}

func TestBusySince(t *testing.T) {
	before := CPUTimes{Busy: 100, Total: 400}
	for _, c := range []struct {
		now  CPUTimes
		want float64
		ok   bool
	}{
		{CPUTimes{Busy: 150, Total: 600}, 0.25, true},
		{CPUTimes{Busy: 300, Total: 600}, 1, true},
		{before, 0, false}, // no time passed
	} {
		if got, ok := c.now.BusySince(before); got != c.want || ok != c.ok {
			t.Errorf("%+v.BusySince(%+v) = %g, %v; want %g, %v", c.now, before, got, ok, c.want, c.ok)
		}
	}
}

// TestReadings reads this process's figures: known on Linux, and sane.
func TestReadings(t *testing.T) {
	if _, ok := SocketMemory("sctp"); ok {
		t.Error(`SocketMemory("sctp") is known; want only tcp and udp`)
	}
	if runtime.GOOS != "linux" {
		for name, read := range map[string]func() (uint64, bool){
			"RSS": RSS, "SocketMemory(tcp)": func() (uint64, bool) { return SocketMemory("tcp") },
			"MachineCPU": func() (uint64, bool) { c, ok := MachineCPU(); return c.Total, ok },
		} {
			if n, ok := read(); ok {
				t.Errorf("%s = %d, known outside Linux", name, n)
			}
		}
		return
	}
	// A process that runs this test holds at least its 1 MiB buffer.
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = 1
	}
	if n, ok := RSS(); !ok || n < uint64(len(buf)) {
		t.Errorf("RSS = %d, %v; want at least %d, true", n, ok, len(buf))
	}
	runtime.KeepAlive(buf)
	for _, network := range []string{"tcp", "udp"} {
		if _, ok := SocketMemory(network); !ok {
			t.Errorf("SocketMemory(%s) unknown on Linux", network)
		}
	}
	if c, ok := MachineCPU(); !ok || c.Total == 0 || c.Busy > c.Total {
		t.Errorf("MachineCPU = %+v, %v; want some time, no more busy than in all", c, ok)
	}
	if n, ok := OpenFiles(); !ok || n < 3 {
		t.Errorf("OpenFiles = %d, %v; want at least stdin, stdout and stderr", n, ok)
	}
}
