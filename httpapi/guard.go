package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ingest-dev/ingest/internal/redact"
)

// What the server does against clients that hold it up: bodies that trickle, too many requests
// from one address, bodies nobody asked for. There is no ReadTimeout (a 64 MiB upload on a slow
// line may take minutes); instead a body must keep moving.

// SlowBodyError is the error a request body's Read returns once the client has sent less than
// the minimum rate for a whole window. Handlers answer it 408.
type SlowBodyError struct {
	MinRate int64 // bytes per second
	Window  time.Duration
}

func (e *SlowBodyError) Error() string {
	return fmt.Sprintf("the request body arrived slower than %d bytes per second over %s", e.MinRate, e.Window)
}

// SlowBodyProblem is the answer to a body that trickled.
func SlowBodyProblem(err *SlowBodyError) *Problem {
	return NewProblem(http.StatusRequestTimeout, "%v; the connection is closed (send the body at a steady pace)", err)
}

// pacedBody ends a body that arrives slower than minRate. Each window must bring minRate × window
// bytes; when it does, the connection's read deadline moves a window on. The deadline is a
// socket deadline, so a client that sends nothing at all is caught too, without a timer per
// request.
type pacedBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	err      SlowBodyError
	perWin   int64 // bytes each window must bring
	inWindow int64
	expired  func() bool
}

func (b *pacedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.inWindow += int64(n)
	if b.inWindow >= b.perWin {
		b.inWindow = 0
		_ = b.rc.SetReadDeadline(time.Now().Add(b.err.Window))
	}
	switch {
	case err == io.EOF:
		// The server reads the connection in the background once the body is done (to notice a
		// client that goes away): that read must not run into our deadline.
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		slow := b.err
		return n, &slow
	}
	return n, err
}

// paceBodies applies pacedBody to every request that has a body.
func paceBodies(minRate int64, window time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if minRate <= 0 || req.ContentLength == 0 || req.Body == nil || req.Body == http.NoBody {
				return next(c)
			}
			rc := http.NewResponseController(c.Response())
			if err := rc.SetReadDeadline(time.Now().Add(window)); err != nil {
				return next(c) // not a connection we can set deadlines on (a test recorder)
			}
			defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
			req.Body = &pacedBody{ReadCloser: req.Body, rc: rc,
				err: SlowBodyError{MinRate: minRate, Window: window}, perWin: max(1, minRate*int64(window/time.Second))}
			return next(c)
		}
	}
}

// perAddress bounds the requests with a body one client address has in flight.
type perAddress struct {
	max   int
	mu    sync.Mutex
	count map[string]int
}

func (l *perAddress) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if l.max <= 0 || c.Request().ContentLength == 0 {
			return next(c)
		}
		addr := c.RealIP()
		l.mu.Lock()
		if l.count[addr] >= l.max {
			l.mu.Unlock()
			return NewProblem(http.StatusTooManyRequests, "this address has %d requests in flight already; send the next when one has been answered", l.max).
				WithHeader("Retry-After", "1")
		}
		l.count[addr]++
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			if l.count[addr]--; l.count[addr] == 0 {
				delete(l.count, addr)
			}
			l.mu.Unlock()
		}()
		return next(c)
	}
}

// secretParam says whether a route parameter is a credential (a callback's token): it is written
// as redact.Mark wherever the request's path is logged or echoed.
func secretParam(name string) bool { return name == "token" }

// RedactedPath is the request's path with its secret parameters replaced, for logs and problem
// bodies.
func RedactedPath(c echo.Context) string {
	path := c.Request().URL.Path
	for i, name := range c.ParamNames() {
		if secretParam(name) && i < len(c.ParamValues()) {
			if v := c.ParamValues()[i]; v != "" {
				path = strings.Replace(path, v, redact.Mark, 1)
			}
		}
	}
	return path
}
