// Package liveness tells which ingest instances are running. Each instance writes a heartbeat
// into a Key-Value bucket whose age limit is a few seconds; work an instance owns (a submission in
// flight, an Idempotency-Key claim) names it, and when its heartbeat is gone any other instance —
// or the same one restarted, which is a new instance — takes the work over at once instead of
// waiting out a long lease.
package liveness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// DefaultTTL is how long an instance counts as alive after its last heartbeat.
const DefaultTTL = 10 * time.Second

// Config configures a Registry.
type Config struct {
	Bus *events.Bus
	// TTL is how long a heartbeat lasts (default 10 s). Heartbeats are written every TTL/5, so a
	// process may stall for most of the TTL before others think it dead.
	TTL    time.Duration
	Logger *slog.Logger
}

// Registry is this instance's heartbeat and the view of the others'.
type Registry struct {
	kv      jetstream.KeyValue
	ttl     time.Duration
	self    string
	started time.Time
	log     *slog.Logger
}

type beat struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
}

// New provisions the heartbeat bucket and names this instance. Nothing is written until Run.
func New(ctx context.Context, cfg Config) (*Registry, error) {
	if cfg.Bus == nil {
		return nil, errors.New("liveness: a Bus is required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// The bucket's age limit is the heartbeat's lifetime: NATS 2.9 has no per-key TTL, and a
	// whole-bucket one does the job since every key is rewritten well within it.
	kv, err := cfg.Bus.KeyValue(ctx, events.BucketSpec{
		Purpose: "instances", Description: "heartbeats of running ingest instances", TTL: cfg.TTL,
	})
	if err != nil {
		return nil, err
	}
	return &Registry{kv: kv, ttl: cfg.TTL, self: newInstanceID(), started: time.Now().UTC(), log: cfg.Logger}, nil
}

// newInstanceID is unique per process start: a restarted process must not inherit the claims of
// its previous life, since that life may have died half-way through them.
func newInstanceID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, host)
	if host == "" {
		host = "host"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Self names this instance.
func (r *Registry) Self() string { return r.self }

// TTL is how long a heartbeat lasts.
func (r *Registry) TTL() time.Duration { return r.ttl }

// Beat writes one heartbeat now.
func (r *Registry) Beat(ctx context.Context) error {
	host, _ := os.Hostname()
	body, _ := json.Marshal(beat{Host: host, PID: os.Getpid(), Started: r.started})
	if _, err := r.kv.Put(ctx, r.self, body); err != nil {
		return fmt.Errorf("write heartbeat: %w", err)
	}
	return nil
}

// Run keeps this instance's heartbeat until ctx ends, then removes it, so that the instance's
// unfinished work is taken over at once after a clean stop too. The first heartbeat is written
// before Run returns an error or starts waiting.
func (r *Registry) Run(ctx context.Context) error {
	every := r.ttl / 5
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		bctx, cancel := context.WithTimeout(ctx, every)
		err := r.Beat(bctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			r.log.Warn("heartbeat not written; other instances may take this one's work over", "instance", r.self, "err", err)
			failing = true
		case err == nil && failing:
			r.log.Info("heartbeat written again", "instance", r.self)
			failing = false
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = r.kv.Delete(dctx, r.self)
			cancel()
			return nil
		case <-t.C:
		}
	}
}

// Alive reports whether instance id has a current heartbeat. An error means the question could
// not be answered (NATS unreachable): the caller must not treat it as "dead".
func (r *Registry) Alive(ctx context.Context, id string) (bool, error) {
	if id == "" || !validKey(id) {
		return false, nil // written by a version without heartbeats, or not an instance id
	}
	if id == r.self {
		return true, nil
	}
	_, err := r.kv.Get(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("look up the heartbeat of instance %s: %w", id, err)
	}
}

func validKey(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-/_=.", r)) {
			return false
		}
	}
	return !strings.HasPrefix(s, ".") && !strings.HasSuffix(s, ".")
}
