package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
)

// ProblemContentType is the media type of error bodies (RFC 9457).
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem detail. Handlers return one as their error; the server writes it.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance,omitempty"`
	// RequestID ties the answer to the server's log lines.
	RequestID string `json:"request_id,omitempty"`
	// Limit is set on 413 answers: the limit in bytes.
	Limit int64 `json:"limit_bytes,omitempty"`
	// Detected is set on 415 answers: what the content was found to be.
	Detected string `json:"detected,omitempty"`

	header http.Header
}

// NewProblem returns a problem with a status and a sentence for the person reading it.
func NewProblem(status int, format string, args ...any) *Problem {
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: fmt.Sprintf(format, args...)}
}

// WithHeader adds a response header (Retry-After, WWW-Authenticate).
func (p *Problem) WithHeader(key, value string) *Problem {
	if p.header == nil {
		p.header = http.Header{}
	}
	p.header.Set(key, value)
	return p
}

// WithLimit records the limit a 413 refers to.
func (p *Problem) WithLimit(n int64) *Problem {
	p.Limit = n
	return p
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

// errorHandler answers every error as problem+json.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	p := s.toProblem(err, c)
	p.Instance = RedactedPath(c)
	p.RequestID = c.Response().Header().Get(echo.HeaderXRequestID)
	for k, v := range p.header {
		c.Response().Header()[k] = v
	}
	if c.Request().ContentLength != 0 {
		// The body may be unread (refused before it was looked at: no API key, a wrong callback
		// token, a trickling client). Without this, net/http reads up to 256 KiB of it before
		// the answer goes out, at whatever pace the client likes; closing skips that.
		c.Response().Header().Set(echo.HeaderConnection, "close")
	}
	body, _ := json.Marshal(p)
	c.Response().Header().Set(echo.HeaderContentType, ProblemContentType)
	c.Response().WriteHeader(p.Status)
	if c.Request().Method != http.MethodHead {
		_, _ = c.Response().Write(body)
	}
}

func (s *Server) toProblem(err error, c echo.Context) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	var slow *SlowBodyError
	if errors.As(err, &slow) {
		return SlowBodyProblem(slow)
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return NewProblem(http.StatusNotFound, "there is no endpoint %s %s", c.Request().Method, RedactedPath(c))
		case http.StatusMethodNotAllowed:
			return NewProblem(http.StatusMethodNotAllowed, "%s is not allowed on %s", c.Request().Method, RedactedPath(c))
		case http.StatusRequestEntityTooLarge:
			return NewProblem(http.StatusRequestEntityTooLarge, "the request body is too large")
		}
		if he.Code >= 400 && he.Code < 500 {
			return NewProblem(he.Code, "%v", he.Message)
		}
	}
	s.log.ErrorContext(c.Request().Context(), "request failed", "method", c.Request().Method, "path", RedactedPath(c),
		"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "err", err)
	return NewProblem(http.StatusInternalServerError, "the server could not complete the request; the log has the details under this request_id")
}
