package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/udplab/udplab/link/api"
)

// defaultLinkName names the link --listen and --to make beside --api or
// --config.
const defaultLinkName = "default"

// maxConfigBytes bounds a --config file: a link takes about 100 bytes,
// so 1 MiB holds api.DefaultMaxLinks of them many times over.
const maxConfigBytes = 1 << 20

// runNamed runs udplab link with named links: --config's, the flags' one
// (named default) and those created through --api, until ctx ends. Then
// it stops the API, closes every link and prints each one's totals.
func (r *linkRun) runNamed(ctx context.Context, st *stdio) error {
	var configs []api.LinkConfig
	if r.listen != "" {
		configs = append(configs, api.LinkConfig{Name: defaultLinkName, Listen: r.listen, Upstream: r.to, Spec: r.spec.String()})
	}
	if r.config != "" {
		cs, err := readLinkConfig(r.config)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Name == defaultLinkName && r.listen != "" {
				return usagef("--config %s: the name %s is the --listen/--to link's", r.config, defaultLinkName)
			}
		}
		configs = append(configs, cs...)
	}
	defer setLinkGC()()
	log := newLogger(st, "info")
	s := api.NewServer(api.Config{Idle: r.idle, MaxClients: r.maxClients, Logger: log})
	for _, c := range configs {
		if _, err := s.Create(c); err != nil {
			s.Close()
			if e := (*api.Error)(nil); errors.As(err, &e) {
				err = errors.New(e.Message)
			}
			if c.Name == defaultLinkName && r.listen != "" {
				return err
			}
			return fmt.Errorf("--config %s: link %s: %w", r.config, c.Name, err)
		}
	}
	stop := func() {}
	if r.api != "" {
		url, stopAPI, err := startHTTP("--api", r.api, s, log)
		if err != nil {
			s.Close()
			return err
		}
		log.Info("link: api", "url", url)
		stop = stopAPI
	}
	<-ctx.Done()
	stop() // no request changes a link while they close
	for _, l := range s.Close() {
		fmt.Fprintf(st.out, "summary %s up   %v\n", l.Name, l.Up)
		fmt.Fprintf(st.out, "summary %s down %v\n", l.Name, l.Down)
		fmt.Fprintf(st.out, "summary %s clients=%d refused=%d\n", l.Name, l.Clients, l.Refused)
	}
	return nil
}

// readLinkConfig reads --config's list of links.
func readLinkConfig(name string) ([]api.LinkConfig, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err == nil && len(b) > maxConfigBytes {
		err = fmt.Errorf("larger than %d bytes", maxConfigBytes)
	}
	if err == nil {
		var cs []api.LinkConfig
		if cs, err = api.DecodeConfigs(b, api.DefaultMaxLinks); err == nil {
			return cs, nil
		}
	}
	return nil, fmt.Errorf("--config %s: %w", name, err)
}
