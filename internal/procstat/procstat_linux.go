package procstat

import "os"

func rss() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	return parseStatus(b)
}

func socketMemory(proto string) (uint64, bool) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, false
	}
	pages, ok := parseSockstat(b, proto)
	return pages * uint64(os.Getpagesize()), ok
}

func machineCPU() (CPUTimes, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, false
	}
	return parseStat(b)
}
