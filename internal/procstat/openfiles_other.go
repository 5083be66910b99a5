//go:build !unix

package procstat

func openFiles() (uint64, bool) { return 0, false }
