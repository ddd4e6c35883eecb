// Package httpdrop is the HTTP drop: POST /v1/documents takes documents (multipart or a raw body).
// A 202 is answered only after JetStream acknowledged the received event: an accepted document is
// never lost. Reading documents back is package docapi's.
package httpdrop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/intake"
)

// Config configures the HTTP drop.
type Config struct {
	Bus    *events.Bus
	Intake *intake.Intake
	// SourceName is the source's name in events (kind is always "http").
	SourceName       string
	APIKeys          []string
	MaxDocumentBytes int64
	MaxRequestBytes  int64
	MaxFiles         int
	IdempotencyTTL   time.Duration
	// CheckRouting refuses an upload that names a vendor or route this deployment does not have,
	// at once with a 400, instead of accepting a document that can only fail. Nil: no check.
	CheckRouting func(vendors []string, route string) error
	// Liveness tells which instances are running: a repeat of a request whose instance died
	// takes its Idempotency-Key over at once. Nil: a claim is only taken over after an hour.
	Liveness   Liveness
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Liveness is what the drop needs to know of running instances (see package liveness).
type Liveness interface {
	Self() string
	Alive(ctx context.Context, instance string) (bool, error)
}

// Drop serves the document endpoints.
type Drop struct {
	cfg      Config
	bus      *events.Bus
	in       *intake.Intake
	idem     jetstream.KeyValue
	log      *slog.Logger
	rejected *prometheus.CounterVec
	// running are the attempts (idemRecord.Attempt) of this instance's keyed requests in flight.
	running sync.Map
	sweep   sweep
}

// New provisions the idempotency bucket and returns the drop.
func New(ctx context.Context, cfg Config) (*Drop, error) {
	if cfg.Bus == nil || cfg.Intake == nil {
		return nil, errors.New("httpdrop: Bus and Intake are required")
	}
	if len(cfg.APIKeys) == 0 {
		return nil, errors.New("httpdrop: at least one API key is required")
	}
	if cfg.SourceName == "" {
		cfg.SourceName = "api"
	}
	if cfg.MaxDocumentBytes <= 0 {
		cfg.MaxDocumentBytes = 64 << 20
	}
	if cfg.MaxRequestBytes < cfg.MaxDocumentBytes {
		cfg.MaxRequestBytes = 4 * cfg.MaxDocumentBytes
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = 20
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	kv, err := cfg.Bus.KeyValue(ctx, events.BucketSpec{
		Purpose: "idempotency", Description: "Idempotency-Key records of POST /v1/documents",
		// The bucket's age limit expires records; per-key TTLs would need NATS 2.11.
		TTL: cfg.IdempotencyTTL,
	})
	if err != nil {
		return nil, err
	}
	d := &Drop{
		cfg:  cfg,
		bus:  cfg.Bus,
		in:   cfg.Intake,
		idem: kv,
		log:  cfg.Logger,
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_http_drop_refused_total", Help: "Uploads refused, by reason.",
		}, []string{"reason"}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(d.rejected); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return d, nil
}

// Run settles, until ctx ends, the Idempotency-Key writes that the store did not confirm when
// they were made (NATS was away): without it such a key could stay locked.
func (d *Drop) Run(ctx context.Context) error {
	d.runSweep(ctx, time.Second)
	return nil
}

// Register adds the routes to the server.
func (d *Drop) Register(e *echo.Echo) {
	g := e.Group("/v1/documents", httpapi.RequireAPIKey(d.cfg.APIKeys))
	g.POST("", d.upload)
}
