// Package httpapi is ingest's one HTTP server: middleware (request ids, logs, metrics, panics),
// RFC 9457 problem+json errors, API-key authentication, and the health and metrics endpoints.
// Inputs (the HTTP drop, vendor callbacks) add their routes to it.
package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures the server.
type Config struct {
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	Logger            *slog.Logger
	Registry          *prometheus.Registry // serves /metrics and receives the HTTP metrics
	// Ready reports whether the service can take work (NATS and JetStream reachable).
	Ready func(ctx context.Context) error
	// MinBodyRate (bytes per second, 0: off) and BodyRateWindow: a request body must bring
	// MinBodyRate × BodyRateWindow bytes in every window, else its Read fails with
	// *SlowBodyError (default window 20 s).
	MinBodyRate    int64
	BodyRateWindow time.Duration
	// MaxRequestsPerAddress bounds the requests with a body one client address has in flight
	// (429 beyond); 0: no bound.
	MaxRequestsPerAddress int
	// ReadyDetail adds to /readyz's answer what an operator should see without it making the
	// service unready (webhook subscriptions a receiver disabled). Nil: nothing.
	ReadyDetail func(ctx context.Context) map[string]any
}

// Server is the HTTP server.
type Server struct {
	echo     *echo.Echo
	log      *slog.Logger
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
}

// New builds the server with its middleware and the /healthz, /readyz and /metrics endpoints.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Client addresses are the peer's; X-Forwarded-For from anyone would let a client pick its own.
	e.IPExtractor = echo.ExtractIPDirect()
	e.Server.ReadHeaderTimeout = cfg.ReadHeaderTimeout
	e.Server.IdleTimeout = cfg.IdleTimeout
	// No ReadTimeout: a 64 MiB upload on a slow line may take minutes. Slow-loris headers are
	// bounded by ReadHeaderTimeout.
	e.Server.ErrorLog = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)

	s := &Server{
		echo: e,
		log:  cfg.Logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_http_requests_total", Help: "HTTP requests by method, route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ingest_http_request_duration_seconds", Help: "HTTP request duration by method and route.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"method", "route"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ingest_http_requests_in_flight", Help: "HTTP requests being served.",
		}),
	}
	for _, c := range []prometheus.Collector{s.requests, s.duration, s.inflight} {
		if err := cfg.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	e.HTTPErrorHandler = s.errorHandler
	if cfg.BodyRateWindow <= 0 {
		cfg.BodyRateWindow = 20 * time.Second
	}
	limit := &perAddress{max: cfg.MaxRequestsPerAddress, count: map[string]int{}}
	e.Use(
		middleware.RequestIDWithConfig(middleware.RequestIDConfig{
			// An incoming X-Request-ID is kept; sanitizeRequestID replaces it unless it is harmless
			// to log and echo back.
			RequestIDHandler: func(c echo.Context, id string) {
				c.SetRequest(c.Request().WithContext(context.WithValue(c.Request().Context(), requestIDKey{}, id)))
			},
			Generator: newRequestID,
		}),
		s.sanitizeRequestID,
		s.observe,
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				s.log.Error("handler panicked", "path", RedactedPath(c), "err", err, "stack", string(stack))
				return err
			},
		}),
		limit.middleware,
		paceBodies(cfg.MinBodyRate, cfg.BodyRateWindow),
	)
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", func(c echo.Context) error {
		if cfg.Ready != nil {
			ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
			defer cancel()
			if err := cfg.Ready(ctx); err != nil {
				return NewProblem(http.StatusServiceUnavailable, "not ready: %v", err).WithHeader("Retry-After", "5")
			}
		}
		body := map[string]any{"status": "ready"}
		if cfg.ReadyDetail != nil {
			ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
			defer cancel()
			for k, v := range cfg.ReadyDetail(ctx) {
				if k != "status" {
					body[k] = v
				}
			}
		}
		return c.JSON(http.StatusOK, body)
	})
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{})))
	return s, nil
}

// Echo is the router, for adding routes.
func (s *Server) Echo() *echo.Echo { return s.echo }

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.echo.Listener = ln
	err := s.echo.Start("")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for in-flight requests (an upload being stored)
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.echo.Shutdown(ctx) }

type requestIDKey struct{}

// RequestID returns the request id middleware assigned, for log lines.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

// sanitizeRequestID replaces a client's X-Request-ID that is not a short token: it is logged and
// echoed back, so it must not carry newlines, markup or kilobytes.
func (s *Server) sanitizeRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Response().Header().Get(echo.HeaderXRequestID)
		if !validRequestID(id) {
			id = newRequestID()
			c.Response().Header().Set(echo.HeaderXRequestID, id)
			c.SetRequest(c.Request().WithContext(context.WithValue(c.Request().Context(), requestIDKey{}, id)))
		}
		return next(c)
	}
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// observe logs each request once and counts it.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		s.inflight.Inc()
		defer s.inflight.Dec()
		err := next(c)
		if err != nil {
			// Write the problem now so that the status below is the one the client got.
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		method := c.Request().Method
		s.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
		s.duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
		if route == "/healthz" || route == "/readyz" || route == "/metrics" {
			return nil
		}
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		} else if status >= 400 {
			level = slog.LevelWarn
		}
		attrs := []any{"method", method, "path", RedactedPath(c), "status", status,
			"bytes_in", c.Request().ContentLength, "bytes_out", c.Response().Size,
			"duration", time.Since(start).Round(time.Microsecond).String(), "remote", c.RealIP(),
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID)}
		if id := c.Get(DocIDKey); id != nil {
			attrs = append(attrs, "doc_id", id)
		}
		s.log.Log(c.Request().Context(), level, "http request", attrs...)
		return nil
	}
}

// ClientKey is the echo.Context key of the authenticated client's name (a digest prefix of its
// API key).
const ClientKey = "client"

// DocIDKey is the echo.Context key under which handlers leave the document id(s) a request
// concerned, so the request's log line carries them.
const DocIDKey = "doc_id"

// RequireAPIKey accepts requests with "Authorization: Bearer <key>" for one of keys. Every key is
// compared in constant time, all of them every time, so timing tells nothing about any key.
func RequireAPIKey(keys []string) echo.MiddlewareFunc {
	digests := Digests(keys)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Request().Header.Get(echo.HeaderAuthorization)
			if h == "" {
				return NewProblem(http.StatusUnauthorized, "this endpoint needs an API key: send the header Authorization: Bearer <key>").
					WithHeader("WWW-Authenticate", `Bearer realm="ingest"`)
			}
			scheme, token, _ := strings.Cut(h, " ")
			if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
				return NewProblem(http.StatusUnauthorized, "the Authorization header must read: Bearer <key>").
					WithHeader("WWW-Authenticate", `Bearer realm="ingest"`)
			}
			client, ok := digests.Match(strings.TrimSpace(token))
			if !ok {
				return NewProblem(http.StatusUnauthorized, "the API key is not valid").
					WithHeader("WWW-Authenticate", `Bearer realm="ingest", error="invalid_token"`)
			}
			// Requests are scoped by client (idempotency keys, logs) without keeping the key.
			c.Set(ClientKey, client)
			return next(c)
		}
	}
}

// KeyDigests are API keys as they are kept in memory: their SHA-256 digests.
type KeyDigests [][32]byte

// Digests returns the digests of keys.
func Digests(keys []string) KeyDigests {
	d := make(KeyDigests, len(keys))
	for i, k := range keys {
		d[i] = sha256.Sum256([]byte(k))
	}
	return d
}

// Match compares key with every key in constant time, all of them every time, and names the one
// it matched by a prefix of its digest (never the key itself), for logs and per-client scopes.
func (d KeyDigests) Match(key string) (client string, ok bool) {
	got := sha256.Sum256([]byte(key))
	match, which := 0, 0
	for i := range d {
		eq := subtle.ConstantTimeCompare(got[:], d[i][:])
		match |= eq
		which = subtle.ConstantTimeSelect(eq, i, which)
	}
	if match != 1 || key == "" {
		return "", false
	}
	return hex.EncodeToString(d[which][:6]), true
}
