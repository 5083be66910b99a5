// Package procstat reads what the operating system says a process and its
// sockets cost: the process's resident memory, its open-files limit, the
// kernel's memory for one protocol's sockets, and how busy the machine's
// CPUs are.
//
// The sessions workload runs a server in a child process and reads these
// there, so that the server's cost is told apart from its clients'. Each
// reading says whether it is known: on a platform that does not say, the
// caller must report the figure as unknown, never as zero.
package procstat

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// RSS returns this process's resident set size in bytes (VmRSS on Linux);
// ok is false where the platform does not say.
func RSS() (bytes uint64, ok bool) { return rss() }

// SocketMemory returns the memory the kernel holds for every socket of
// network, "tcp" or "udp", in bytes: the mem field of its line in Linux's
// /proc/net/sockstat (pages, multiplied by the page size). It is
// system-wide: every process's sockets, both ends of a loopback
// conversation, and IPv6 sockets too (sockstat6 has no mem field; the
// kernel keeps one count per protocol). ok is false for another network or
// where the platform does not say.
func SocketMemory(network string) (bytes uint64, ok bool) {
	switch network {
	case "tcp", "udp":
		return socketMemory(strings.ToUpper(network)) // its line in sockstat
	}
	return 0, false
}

// OpenFiles returns this process's soft limit on open files (ulimit -n),
// which bounds its sockets; ok is false where the platform does not say.
func OpenFiles() (limit uint64, ok bool) { return openFiles() }

// CPUTimes is how long all of the machine's CPUs together have been busy,
// and have run in all, since boot, in the kernel's clock ticks: only the
// differences between two readings mean anything.
type CPUTimes struct{ Busy, Total uint64 }

// MachineCPU reads the machine's CPU times (the cpu line of Linux's
// /proc/stat); ok is false where the platform does not say.
func MachineCPU() (t CPUTimes, ok bool) { return machineCPU() }

// BusySince returns the share of the machine's CPU time that was busy
// between before and t, from 0 to 1; ok is false when no time passed
// between them.
func (t CPUTimes) BusySince(before CPUTimes) (share float64, ok bool) {
	if t.Total <= before.Total || t.Busy < before.Busy {
		return 0, false
	}
	return float64(t.Busy-before.Busy) / float64(t.Total-before.Total), true
}

// parseStat reads the first line of a /proc/stat file: "cpu" and the
// ticks spent in user, nice, system, idle, iowait, irq, softirq and steal
// time, then guest times that user and nice already hold. Idle and iowait
// are idle; the rest, stolen time included, was not available to run.
func parseStat(b []byte) (CPUTimes, bool) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return CPUTimes{}, false
	}
	var t CPUTimes
	for i, s := range f[1:9] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return CPUTimes{}, false
		}
		t.Total += n
		if i != 3 && i != 4 { // idle, iowait
			t.Busy += n
		}
	}
	return t, true
}

// parseStatus returns the VmRSS line of a /proc/PID/status file in bytes.
func parseStatus(b []byte) (uint64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, found := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !found {
			continue
		}
		f := strings.Fields(rest) // "1596 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		return kb << 10, err == nil
	}
	return 0, false
}

// parseSockstat returns the mem field, in pages, of proto's line of a
// /proc/net/sockstat file: "TCP: inuse 1 orphan 0 tw 0 alloc 1 mem 67".
func parseSockstat(b []byte, proto string) (pages uint64, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				n, err := strconv.ParseUint(f[i+1], 10, 64)
				return n, err == nil
			}
		}
		return 0, false
	}
	return 0, false
}
