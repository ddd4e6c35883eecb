package vendors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error is a vendor call that did not work, said so that the dispatcher knows what to do next.
type Error struct {
	Vendor string
	Op     string // "submit", "status", "result", "token", …
	// Status is the HTTP status, 0 when no answer came (network, timeout).
	Status int
	// Message is the vendor's own words where it gave any, else ours.
	Message string
	// Permanent errors are not retried: the vendor refused the document or our credentials.
	Permanent bool
	// RetryAfter is the vendor's Retry-After, zero when absent.
	RetryAfter time.Duration
	// NotSent: the request never left (its body could not be opened): nothing reached the vendor.
	NotSent bool
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Vendor, e.Op)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	} else if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err should not be retried. Errors that are not *Error (a context
// deadline, a broken pipe) are transient.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// RetryAfterOf returns the vendor's Retry-After carried by err, zero when none.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// NoAnswer reports whether err means the request may or may not have reached the vendor (no
// status came back): after a Submit this is an in-doubt submission.
func NoAnswer(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status == 0 && !e.Permanent && !e.NotSent
	}
	return !errors.Is(err, context.Canceled)
}

// Transient returns a retryable error that is not about an HTTP answer.
func Transient(vendor, op string, err error) *Error {
	return &Error{Vendor: vendor, Op: op, Err: err, Message: err.Error()}
}

// Malformed is the error for an answer we cannot read (unexpected JSON): the vendor said "done" in a
// way we do not understand. It is permanent: asking again gives the same answer.
func Malformed(vendor, op string, err error, body []byte) *Error {
	return &Error{Vendor: vendor, Op: op, Permanent: true, Err: err,
		Message: fmt.Sprintf("unexpected answer (%v): %s", err, Excerpt(body))}
}

// maxErrorBody bounds what is read of an error answer: vendors' messages are short, and a hostile
// or broken one must not fill memory.
const maxErrorBody = 64 << 10

// ResponseError reads a non-2xx answer into an *Error: the vendor's message from its usual JSON
// shapes ({"message"}, {"detail"}, {"error_description"}, {"code","message"}, a bare string), the
// Retry-After header, and the default classification: 408, 425, 429 and 5xx are transient, every
// other status permanent. Vendor packages adjust Permanent where their documentation says more
// (a 400 for "insufficient credits" is fixed by buying some, still permanent for this document).
// It closes the body.
func ResponseError(vendor, op string, res *http.Response) *Error {
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	e := &Error{Vendor: vendor, Op: op, Status: res.StatusCode, Message: MessageOf(body)}
	if e.Message == "" {
		e.Message = http.StatusText(res.StatusCode)
	}
	e.RetryAfter = ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())
	switch s := res.StatusCode; {
	case s == http.StatusRequestTimeout, s == http.StatusTooEarly, s == http.StatusTooManyRequests, s >= 500:
		e.Permanent = false
	default:
		e.Permanent = true
	}
	return e
}

// MessageOf finds a human message in an error body.
func MessageOf(body []byte) string {
	var s string
	if json.Unmarshal(body, &s) == nil {
		return clean(s)
	}
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		for _, k := range []string{"message", "detail", "error_description", "error", "title", "msg"} {
			if v, ok := m[k].(string); ok && v != "" {
				if code, ok := m["code"].(string); ok && code != "" && k == "message" {
					return clean(code + ": " + v)
				}
				return clean(v)
			}
		}
		return Excerpt(body)
	}
	return Excerpt(body)
}

// Excerpt is a short, printable piece of a body for messages and logs.
func Excerpt(b []byte) string {
	const n = 300
	s := strings.ToValidUTF8(string(b), "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func clean(s string) string { return Excerpt([]byte(s)) }

// ParseRetryAfter reads a Retry-After header: seconds or an HTTP date. Absurd values are capped at
// one hour; garbage is ignored.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), time.Hour)
}

// ParseHTTPURL checks a configured base or token URL: absolute, http or https, with a host. what
// names it in the error ("base URL").
func ParseHTTPURL(what, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the %s %q is not an absolute http(s) URL", what, s)
	}
	return u, nil
}
