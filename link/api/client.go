package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/udplab/udplab/link"
)

// maxResponse bounds what the client reads of an answer: a list of
// DefaultMaxLinks links with their counters is a few hundred KiB.
const maxResponse = 16 << 20

// Client drives a Server's API, such as udplab link --api's. Its methods
// are safe for concurrent use. Errors the API answers with are *Error,
// matching ErrNotFound, ErrExists, ErrInvalid or ErrFull with errors.Is.
type Client struct {
	base string
	// HTTP makes the requests; nil means http.DefaultClient.
	HTTP *http.Client
}

// New returns a client of the API at baseURL, such as
// "http://127.0.0.1:8474"; an address alone, as given to --api, means
// http:// at that address.
func New(baseURL string) *Client {
	if !strings.Contains(baseURL, "://") {
		baseURL = "http://" + baseURL
	}
	return &Client{base: strings.TrimRight(baseURL, "/")}
}

// Create starts a link and returns it, its listening address resolved.
func (c *Client) Create(ctx context.Context, cfg LinkConfig) (Link, error) {
	var l Link
	err := c.do(ctx, http.MethodPost, "/links", cfg, &l)
	return l, err
}

// List returns every link, by name.
func (c *Client) List(ctx context.Context) ([]Link, error) {
	var ls []Link
	err := c.do(ctx, http.MethodGet, "/links", nil, &ls)
	return ls, err
}

// Get returns the link called name, its spec and counters as they are now.
func (c *Client) Get(ctx context.Context, name string) (Link, error) {
	var l Link
	err := c.do(ctx, http.MethodGet, "/links/"+url.PathEscape(name), nil, &l)
	return l, err
}

// SetSpec replaces the spec of the link called name in both directions,
// atomically for the packets that follow, and returns the link as it is
// then. "loss=100%" cuts it; "" makes it perfect again.
func (c *Client) SetSpec(ctx context.Context, name, spec string) (Link, error) {
	return c.setSpec(ctx, name, SpecChange{Spec: spec})
}

// SetDirectionSpec replaces the spec of one direction of the link called
// name, taking that direction of spec.
func (c *Client) SetDirectionSpec(ctx context.Context, name string, d link.Direction, spec string) (Link, error) {
	return c.setSpec(ctx, name, SpecChange{Spec: spec, Direction: d.String()})
}

func (c *Client) setSpec(ctx context.Context, name string, ch SpecChange) (Link, error) {
	var l Link
	err := c.do(ctx, http.MethodPut, "/links/"+url.PathEscape(name)+"/spec", ch, &l)
	return l, err
}

// Delete stops the link called name and forgets it.
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/links/"+url.PathEscape(name), nil, nil)
}

// do sends in (if not nil) as JSON and reads the answer into out (if not
// nil), or returns the *Error answered.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("api: %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err == nil && len(b) > maxResponse {
		err = fmt.Errorf("answer larger than %d bytes", maxResponse)
	}
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Message == "" {
			e.Message = strings.ToValidUTF8(strings.TrimSpace(string(b[:min(len(b), 200)])), "?") // not the API's JSON: a proxy's page, say
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("api: %s %s: reading the answer: %w", method, path, err)
	}
	return nil
}
