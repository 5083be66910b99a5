package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/udplab/udplab/link"
)

// pcapFile is udplab link's --pcap: a capture and the file it writes.
// A nil *pcapFile captures nothing.
type pcapFile struct {
	path string
	f    *os.File
	c    *link.Capture
	once sync.Once
	err  error
}

// openPcap creates path and starts a capture into it. It is the caller's
// responsibility to call close, on every path, once the proxy is closed.
func openPcap(path string) (*pcapFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	c, err := link.NewCapture(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("--pcap %s: %w", path, unprefixed{err})
	}
	return &pcapFile{path: path, f: f, c: c}, nil
}

// capture is the capture for ProxyConfig.Capture: nil when p is.
func (p *pcapFile) capture() *link.Capture {
	if p == nil {
		return nil
	}
	return p.c
}

// close flushes the capture, closes its file and logs its counts, with
// a warning when the capture left packets out. It is safe to call twice.
func (p *pcapFile) close(log *slog.Logger) error {
	if p == nil {
		return nil
	}
	p.once.Do(func() {
		err := p.c.Close()
		if cerr := p.f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			p.err = fmt.Errorf("--pcap %s: %w", p.path, unprefixed{err})
		}
		st := p.c.Stats()
		level := slog.LevelInfo
		if st.EnteredDropped+st.LeftDropped > 0 {
			level = slog.LevelWarn // the disk fell behind: the file misses packets the link saw
		}
		log.Log(context.Background(), level, "link: capture", "file", p.path, "entered", st.Entered, "left", st.Left,
			"entered_dropped", st.EnteredDropped, "left_dropped", st.LeftDropped)
	})
	return p.err
}
