package webdav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// client speaks the five WebDAV requests the watcher needs to one folder. Every URL it requests is
// built from root (see resourceURL).
type client struct {
	hc         *http.Client
	root       *url.URL
	auth       func(http.Header)
	timeout    time.Duration
	maxListing int64
	onRequest  func(method string) // counts requests (metrics)
	requests   atomic.Int64        // requests sent (tests, benchmarks)
}

func newHTTPClient(cfg Config) *http.Client {
	if cfg.HTTPClient != nil {
		return cfg.HTTPClient
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg.TLSConfig
	tr.MaxIdleConnsPerHost = cfg.Concurrency + 2
	return &http.Client{
		Transport: tr,
		// A redirect is answered as it is (and reported with its target): following one would
		// resend the credentials, and for PROPFIND and MOVE silently change the method.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func authFunc(cfg Config) func(http.Header) {
	switch {
	case cfg.BearerToken != "":
		v := "Bearer " + cfg.BearerToken
		return func(h http.Header) { h.Set("Authorization", v) }
	case cfg.Username != "" || cfg.Password != "":
		r := &http.Request{Header: http.Header{}}
		r.SetBasicAuth(cfg.Username, cfg.Password)
		v := r.Header.Get("Authorization")
		return func(h http.Header) { h.Set("Authorization", v) }
	}
	return func(http.Header) {}
}

// statusError is an answer other than the one a request expects.
type statusError struct {
	method, url string
	code        int
	status      string
	location    string
	detail      string
}

func (e *statusError) Error() string {
	var hint string
	switch {
	case e.code == http.StatusUnauthorized:
		hint = " (the server refused the credentials)"
	case e.code == http.StatusForbidden:
		hint = " (the account may not do this here)"
	case e.code == http.StatusNotFound:
		hint = " (no such folder or file)"
	case e.code == http.StatusMethodNotAllowed && e.method == "PROPFIND":
		hint = " (is this a WebDAV URL?)"
	case e.code == http.StatusInsufficientStorage:
		hint = " (the server is out of storage)"
	case e.code/100 == 3:
		hint = fmt.Sprintf(" (redirected to %s; configure that URL instead)", e.location)
	}
	msg := fmt.Sprintf("%s %s: the server answered %s%s", e.method, e.url, e.status, hint)
	if e.detail != "" {
		msg += ": " + e.detail
	}
	return msg
}

// statusOf returns the HTTP status of a statusError in err's chain, or 0.
func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.code
	}
	return 0
}

func (c *client) do(ctx context.Context, method, rel string, dir bool, hdr map[string]string, body io.Reader) (*http.Response, string, error) {
	u := resourceURL(c.root, rel, dir)
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, u, fmt.Errorf("%s %s: %w", method, u, err)
	}
	c.auth(req.Header)
	req.Header.Set("User-Agent", "ingest-webdav")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c.requests.Add(1)
	if c.onRequest != nil {
		c.onRequest(method)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, u, fmt.Errorf("%s %s: no answer within %s: %w", method, u, c.timeout, err)
		}
		return nil, u, fmt.Errorf("%s %s: %w", method, u, err)
	}
	return resp, u, nil
}

// unexpected builds a statusError from resp and closes its body.
func unexpected(method, u string, resp *http.Response) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	detail := strings.Join(strings.Fields(string(b)), " ")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") && !strings.Contains(ct, "xml") {
		detail = "" // an HTML error page says nothing useful in a log line
	}
	return &statusError{method: method, url: u, code: resp.StatusCode, status: resp.Status,
		location: resp.Header.Get("Location"), detail: truncate(detail, 200)}
}

func closeBody(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
}

// propfind lists the collection rel with Depth "0" (itself) or "1" (itself and its members).
func (c *client) propfind(ctx context.Context, rel, depth string) (listing, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, u, err := c.do(ctx, "PROPFIND", rel, true, map[string]string{
		"Depth": depth, "Content-Type": "application/xml; charset=utf-8",
	}, strings.NewReader(propfindBody))
	if err != nil {
		return listing{}, err
	}
	if resp.StatusCode != http.StatusMultiStatus {
		return listing{}, unexpected("PROPFIND", u, resp)
	}
	defer closeBody(resp)
	l, err := parseMultistatus(resp.Body, c.root, rel, c.maxListing)
	if err != nil {
		if ctx.Err() != nil {
			return listing{}, fmt.Errorf("list %s: no complete answer within %s: %w", u, c.timeout, err)
		}
		return listing{}, fmt.Errorf("list %s: %w", u, err)
	}
	return l, nil
}

// get opens the file rel for reading, only if it still is the version etag (when etag is a
// strong one: If-Match never matches weak ETags). The body is streamed; a body that stalls for
// the request timeout is cut off. Close it when done.
func (c *client) get(ctx context.Context, rel, etag string) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &stallReader{timeout: c.timeout, cancel: cancel}
	s.guard = time.AfterFunc(c.timeout, func() { s.stalled.Store(true); cancel() })
	hdr := map[string]string{}
	if strongETag(etag) {
		hdr["If-Match"] = etag
	}
	resp, u, err := c.do(ctx, http.MethodGet, rel, false, hdr, nil)
	if err != nil {
		s.guard.Stop()
		cancel()
		if s.stalled.Load() {
			return nil, fmt.Errorf("GET %s: no answer within %s", u, c.timeout)
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		s.guard.Stop()
		err := unexpected("GET", u, resp)
		cancel()
		return nil, err
	}
	s.body, s.url = resp.Body, u
	s.guard.Reset(c.timeout)
	return s, nil
}

// strongETag says whether etag can pin a version with If-Match (weak ETags never match there).
func strongETag(etag string) bool { return strings.HasPrefix(etag, `"`) }

// stallReader cuts a body off when no byte arrives for timeout, so a server that stops sending
// mid-file cannot hang a poll, while a large file that keeps flowing may take as long as it takes.
type stallReader struct {
	body    io.ReadCloser
	guard   *time.Timer
	timeout time.Duration
	cancel  context.CancelFunc
	url     string
	stalled atomic.Bool
	once    sync.Once
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if n > 0 {
		s.guard.Reset(s.timeout)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		if s.stalled.Load() {
			return n, fmt.Errorf("read %s: the server sent nothing for %s", s.url, s.timeout)
		}
		err = fmt.Errorf("read %s: %w", s.url, err)
	}
	return n, err
}

func (s *stallReader) Close() error {
	s.once.Do(func() {
		s.guard.Stop()
		s.cancel()
	})
	return s.body.Close()
}

// move renames from to to (paths below root) without overwriting anything: a taken name is a
// 412, which the caller answers with another name.
func (c *client) move(ctx context.Context, from, to string) error {
	return c.simple(ctx, "MOVE", from, false, map[string]string{
		"Destination": resourceURL(c.root, to, false), "Overwrite": "F",
	}, http.StatusCreated, http.StatusNoContent)
}

// mkcol creates the collection rel.
func (c *client) mkcol(ctx context.Context, rel string) error {
	return c.simple(ctx, "MKCOL", rel, true, nil, http.StatusCreated)
}

// del deletes the file rel.
func (c *client) del(ctx context.Context, rel string) error {
	return c.simple(ctx, http.MethodDelete, rel, false, nil, http.StatusNoContent, http.StatusOK, http.StatusAccepted)
}

func (c *client) simple(ctx context.Context, method, rel string, dir bool, hdr map[string]string, ok ...int) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, u, err := c.do(ctx, method, rel, dir, hdr, nil)
	if err != nil {
		return err
	}
	for _, code := range ok {
		if resp.StatusCode == code {
			closeBody(resp)
			return nil
		}
	}
	return unexpected(method, u, resp)
}
