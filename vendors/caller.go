package vendors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// CallerConfig configures a Caller.
type CallerConfig struct {
	Vendor string
	// Timeout bounds one request including its body (an upload); default 5 minutes.
	Timeout time.Duration
	// RateLimit is requests per second (0: unlimited).
	RateLimit float64
	// Concurrency is how many requests may be in flight at once (0: unlimited).
	Concurrency int
	// Authorize sets credentials on a request; nil for none.
	Authorize func(ctx context.Context, req *http.Request) error
	// Reauthorize runs after a 401, before the one retry (drop the refused token). Nil: a 401 is
	// final.
	Reauthorize func(req *http.Request)
	// Transport for tests; nil: a transport of the Caller's own (see NewCaller).
	Transport http.RoundTripper
}

// Caller sends a vendor's requests: credentials on each, one retry after a 401 with fresh
// credentials, the client-side rate limit and concurrency cap, and errors as *Error.
type Caller struct {
	cfg     CallerConfig
	client  *http.Client
	limiter *rate.Limiter
	sem     chan struct{}
}

// NewCaller returns a Caller.
func NewCaller(cfg CallerConfig) *Caller {
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	tr := cfg.Transport
	if tr == nil {
		tr = NewTransport(cfg.Concurrency)
	}
	c := &Caller{cfg: cfg, client: &http.Client{Timeout: cfg.Timeout, Transport: tr}}
	if cfg.RateLimit > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(cfg.RateLimit), 1)
	}
	if cfg.Concurrency > 0 {
		c.sem = make(chan struct{}, cfg.Concurrency)
	}
	return c
}

// NewTransport is net/http's default transport keeping as many idle connections to the vendor
// as requests may be in flight. With the default two, every request beyond two at a time opens
// a connection of its own (TLS handshake included) and leaves it in TIME_WAIT after.
func NewTransport(concurrency int) *http.Transport {
	idle := concurrency
	if idle <= 0 {
		idle = 64
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = idle
	tr.MaxIdleConns = max(tr.MaxIdleConns, idle)
	return tr
}

// HTTPClient is the client the Caller uses (for a vendor's token requests).
func (c *Caller) HTTPClient() *http.Client { return c.client }

// BearerAuth makes Authorize/Reauthorize for OAuth2 tokens.
func BearerAuth(t *Tokens) (func(context.Context, *http.Request) error, func(*http.Request)) {
	return func(ctx context.Context, req *http.Request) error {
			tok, err := t.Token(ctx)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			return nil
		}, func(req *http.Request) {
			t.Invalidate(strings.TrimSpace(strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer")))
		}
}

// Do sends the request build makes (build is called again for the retry after a 401, so a body is
// re-opened) and returns a 2xx answer; anything else is an *Error.
func (c *Caller) Do(ctx context.Context, op string, build func(ctx context.Context) (*http.Request, error)) (*http.Response, error) {
	if c.sem != nil {
		select {
		case c.sem <- struct{}{}:
			defer func() { <-c.sem }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for attempt := 1; ; attempt++ {
		if c.limiter != nil {
			if err := c.limiter.Wait(ctx); err != nil {
				return nil, err
			}
		}
		req, err := build(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &Error{Vendor: c.cfg.Vendor, Op: op, NotSent: true, Err: err,
				Message: fmt.Sprintf("could not prepare the request: %v", err)}
		}
		if c.cfg.Authorize != nil {
			if err := c.cfg.Authorize(ctx, req); err != nil {
				closeBody(req)
				return nil, err
			}
		}
		res, err := c.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, &Error{Vendor: c.cfg.Vendor, Op: op, Err: err, Message: fmt.Sprintf("no answer: %v", unwrapURL(err))}
		}
		if res.StatusCode == http.StatusUnauthorized && attempt == 1 && c.cfg.Reauthorize != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxErrorBody))
			res.Body.Close()
			c.cfg.Reauthorize(req)
			continue
		}
		if res.StatusCode >= 200 && res.StatusCode < 300 {
			return res, nil
		}
		e := ResponseError(c.cfg.Vendor, op, res)
		if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
			e.Message = "credentials refused: " + e.Message
		}
		return nil, e
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func unwrapURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// maxJSON bounds a vendor's JSON answer held in memory.
const maxJSON = 32 << 20

// ReadJSON reads a 2xx answer into v and returns the raw bytes (for Result.Raw). An answer that is
// not the JSON we expect is a Malformed error; the body is closed.
func ReadJSON(vendor, op string, res *http.Response, v any) ([]byte, error) {
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxJSON+1))
	if err != nil {
		return nil, &Error{Vendor: vendor, Op: op, Err: err, Message: fmt.Sprintf("answer cut off: %v", err)}
	}
	if len(body) > maxJSON {
		return nil, Malformed(vendor, op, fmt.Errorf("answer larger than %d bytes", maxJSON), body[:200])
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return nil, Malformed(vendor, op, err, body)
		}
	}
	return body, nil
}

// Multipart builds a streaming multipart/form-data body: fields, then the document under
// fileField, read from doc.Open as the request is sent. Its length is known in advance (servers
// that refuse chunked uploads get a Content-Length), and the document is never in memory whole.
func Multipart(ctx context.Context, doc Document, fileField string, fields [][2]string) (body io.ReadCloser, contentType string, length int64, err error) {
	var head bytes.Buffer
	mw := multipart.NewWriter(&head)
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return nil, "", 0, err
		}
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, fileField, asciiFilename(UploadName(doc))))
	h.Set("Content-Type", doc.ContentType)
	if _, err := mw.CreatePart(h); err != nil {
		return nil, "", 0, err
	}
	tail := "\r\n--" + mw.Boundary() + "--\r\n"
	r, err := doc.Open(ctx)
	if err != nil {
		return nil, "", 0, err
	}
	body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head.Bytes()), r, strings.NewReader(tail)), r}
	return body, mw.FormDataContentType(), int64(head.Len()) + doc.Size + int64(len(tail)), nil
}

// asciiFilename keeps a file name safe inside a quoted multipart parameter.
func asciiFilename(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, name)
}
