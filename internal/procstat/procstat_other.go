//go:build !linux

package procstat

func rss() (uint64, bool) { return 0, false }

func socketMemory(string) (uint64, bool) { return 0, false }

func machineCPU() (CPUTimes, bool) { return CPUTimes{}, false }
