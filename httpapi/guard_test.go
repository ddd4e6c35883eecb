package httpapi_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ingest-dev/ingest/httpapi"
)

// guarded is a server with the body and address guards on, a route that reads its body whole, one
// behind an API key, and one that holds its request until released.
type guarded struct {
	url     string
	log     *bytes.Buffer
	logMu   *sync.Mutex
	release chan struct{}
	holding chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func newGuarded(t *testing.T, cfg httpapi.Config) *guarded {
	t.Helper()
	g := &guarded{log: &bytes.Buffer{}, logMu: &sync.Mutex{}, release: make(chan struct{}), holding: make(chan struct{}, 16)}
	cfg.Logger = slog.New(slog.NewTextHandler(lockedWriter{g.logMu, g.log}, nil))
	s, err := httpapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := s.Echo()
	e.POST("/read", func(c echo.Context) error {
		n, err := io.Copy(io.Discard, c.Request().Body)
		if err != nil {
			return err
		}
		return c.String(http.StatusOK, fmt.Sprint(n))
	})
	e.POST("/keyed", func(c echo.Context) error {
		_, err := io.Copy(io.Discard, c.Request().Body)
		return err
	}, httpapi.RequireAPIKey([]string{"guard-test-key-5f1c9e2a7b3d8046"}))
	e.POST("/hold", func(c echo.Context) error {
		g.holding <- struct{}{}
		<-g.release
		_, _ = io.Copy(io.Discard, c.Request().Body)
		return c.NoContent(http.StatusNoContent)
	})
	e.POST("/callbacks/:vendor/:token", func(c echo.Context) error {
		return httpapi.NewProblem(http.StatusNotFound, "no")
	})
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	g.url = ts.URL
	return g
}

func (g *guarded) logged() string {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	return g.log.String()
}

// rawRequest sends a request's head announcing contentLength bytes, then body as send decides,
// and reads the answer. The connection's deadline only guards the test from hanging.
func rawRequest(t *testing.T, base, path string, header string, contentLength int, send func(w io.Writer) error) (*http.Response, error) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n%s\r\n", path, contentLength, header)
	sendErr := make(chan error, 1)
	go func() { sendErr <- send(conn) }()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body = io.NopCloser(bytes.NewReader(body))
	return res, nil
}

// trickle sends n bytes, chunk by chunk, one chunk per tick.
func trickle(n, chunk int, tick time.Duration) func(io.Writer) error {
	return func(w io.Writer) error {
		t := time.NewTicker(tick)
		defer t.Stop()
		for sent := 0; sent < n; sent += chunk {
			if _, err := w.Write(bytes.Repeat([]byte("x"), min(chunk, n-sent))); err != nil {
				return err
			}
			<-t.C
		}
		return nil
	}
}

// A body that trickles below the minimum rate is ended with 408 and the connection closed; one
// that keeps the rate, however slow in total, is read whole.
func TestSlowBodies(t *testing.T) {
	g := newGuarded(t, httpapi.Config{MinBodyRate: 1000, BodyRateWindow: time.Second})

	// 1 byte every 50 ms is 20 bytes/s: far below 1000.
	res, err := rawRequest(t, g.url, "/read", "", 100000, trickle(100000, 1, 50*time.Millisecond))
	if err != nil {
		t.Fatalf("no answer to a trickling body: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestTimeout || !res.Close || !strings.Contains(string(body), "slower than 1000 bytes per second") {
		t.Fatalf("trickling body: %d close=%v %s; want 408, connection closed", res.StatusCode, res.Close, body)
	}

	// Nothing at all after the head: the same.
	res, err = rawRequest(t, g.url, "/read", "", 5000, func(io.Writer) error { return nil })
	if err != nil || res.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("silent body: %v %v; want 408", res, err)
	}

	// 250 bytes every 50 ms is 5000 bytes/s, five times the minimum: 6000 bytes in ~1.2 s pass,
	// across more than one window.
	res, err = rawRequest(t, g.url, "/read", "", 6000, trickle(6000, 250, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || string(body) != "6000" {
		t.Fatalf("steady slow body: %d %s; want 200 6000", res.StatusCode, body)
	}
}

// A request refused before its body is read is answered at once, without waiting for the body
// (net/http would otherwise read up to 256 KiB of it first), and its connection is closed.
func TestRefusedRequestsAreAnsweredWithoutTheirBody(t *testing.T) {
	g := newGuarded(t, httpapi.Config{MinBodyRate: 1000, BodyRateWindow: 20 * time.Second})
	for _, tc := range []struct {
		path, header string
		status       int
	}{
		{"/keyed", "", http.StatusUnauthorized},
		{"/keyed", "Authorization: Bearer wrong-key-0123456789abcdef\r\n", http.StatusUnauthorized},
		{"/callbacks/allspark/not-the-token", "", http.StatusNotFound},
	} {
		// The body never comes: only an answer that does not wait for it arrives before the
		// 20 s window would end the request.
		start := time.Now()
		res, err := rawRequest(t, g.url, tc.path, tc.header, 200<<10, func(io.Writer) error { return nil })
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if res.StatusCode != tc.status || !res.Close {
			t.Fatalf("%s: %d close=%v; want %d and the connection closed", tc.path, res.StatusCode, res.Close, tc.status)
		}
		if waited := time.Since(start); waited >= 20*time.Second {
			t.Fatalf("%s: the answer waited for the body window (%s)", tc.path, waited)
		}
	}
}

// One address may have MaxRequestsPerAddress requests with a body in flight; the next gets 429
// with Retry-After, and once one is answered another is taken.
func TestRequestsPerAddress(t *testing.T) {
	g := newGuarded(t, httpapi.Config{MaxRequestsPerAddress: 2})
	post := func(path string) *http.Response {
		res, err := http.Post(g.url+path, "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Error(err)
			return nil
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if res := post("/hold"); res != nil && res.StatusCode != http.StatusNoContent {
				t.Errorf("held request: %d", res.StatusCode)
			}
		})
	}
	<-g.holding
	<-g.holding
	res := post("/read")
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d Retry-After=%q; want 429 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	// Requests without a body (reads, health) are not counted.
	if res, _ := call(t, http.MethodGet, g.url+"/healthz", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("healthz while at the bound: %d", res.StatusCode)
	}
	close(g.release)
	wg.Wait()
	if res := post("/read"); res.StatusCode != http.StatusOK {
		t.Fatalf("after the held ones ended: %d", res.StatusCode)
	}
}

// A callback's token never appears in the request log or in the problem body.
func TestTokensInPathsAreRedacted(t *testing.T) {
	g := newGuarded(t, httpapi.Config{})
	const token = "the-Secret-callback-Tok3n-1234"
	res, err := http.Post(g.url+"/callbacks/allspark/"+token, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(body), token) || !strings.Contains(string(body), "/callbacks/allspark/[REDACTED]") {
		t.Fatalf("problem body: %s", body)
	}
	log := g.logged()
	if strings.Contains(log, token) || !strings.Contains(log, "/callbacks/allspark/[REDACTED]") {
		t.Fatalf("request log: %s", log)
	}
}
