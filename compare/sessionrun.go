package compare

import (
	"context"
	"fmt"
	"strconv"
)

// sessionCounts are the session counts the runs hold: the sweep's, or the
// workload's one.
func (c *Config) sessionCounts() []int {
	if len(c.SessionsSweep) > 0 {
		return c.SessionsSweep
	}
	return []int{c.Workload.Sessions}
}

// sessionJobs lists the sessions workload's runs: by count, then mode,
// then repeat.
func (c *Config) sessionJobs() []func(context.Context) (Result, error) {
	var jobs []func(context.Context) (Result, error)
	for _, n := range c.sessionCounts() {
		for _, m := range c.modeNames() {
			for rep := range c.repeat() {
				jobs = append(jobs, func(ctx context.Context) (Result, error) {
					r, err := c.runSessions(ctx, m, n)
					r.Repeat = rep + 1
					return r, err
				})
			}
		}
	}
	return jobs
}

// runSessions holds n sessions of mode name against a server of its own
// (see measureSessions). A mode that could not hold them all is a result
// that says why, not an error.
func (c *Config) runSessions(ctx context.Context, name string, n int) (Result, error) {
	res := Result{Mode: name, Link: sessionsLink(n)}
	if len(c.SessionsSweep) > 0 {
		res.SweepValue = strconv.Itoa(n)
	}
	var progress func(int)
	if c.Progress != nil {
		last := 0
		progress = func(opened int) {
			if opened > last {
				c.Progress(opened - last)
				last = opened
			}
		}
	}
	st, err := measureSessions(ctx, name, c.Settings, n, c.Workload.IdleHold, progress)
	res.Sessions = st
	res.Interrupted = ctx.Err() != nil
	if st != nil {
		res.Sent, res.Delivered = n, st.Opened
	}
	return res, err
}

// sessionsLink is what the reports show in the link column: no link is
// simulated, the sessions run over loopback.
func sessionsLink(n int) string { return fmt.Sprintf("loopback, %d sessions", n) }
