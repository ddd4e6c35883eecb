// Package lease lets one instance at a time own a piece of work (watching a mailbox, polling a
// folder) across several ingest instances, through a JetStream Key-Value bucket: the holder
// renews its key; when it dies the key expires and another instance takes over within seconds.
package lease

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// Config configures a Manager.
type Config struct {
	Bus *events.Bus
	// TTL is how long a lease outlives its holder's last renewal (default 15 s). Renewals happen
	// every TTL/3.
	TTL time.Duration
	// Owner names this instance in the lease (host/pid).
	Owner  string
	Logger *slog.Logger
}

// Manager hands out leases from one bucket.
type Manager struct {
	kv    jetstream.KeyValue
	ttl   time.Duration
	owner string
	log   *slog.Logger
}

// New provisions the bucket. Its age limit is the lease TTL: a key not renewed disappears on its
// own, which works on NATS 2.9 (per-key TTLs need 2.11).
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	kv, err := cfg.Bus.KeyValue(ctx, events.BucketSpec{
		Purpose: "leases", Description: "which instance watches which source", TTL: cfg.TTL,
	})
	if err != nil {
		return nil, err
	}
	return &Manager{kv: kv, ttl: cfg.TTL, owner: cfg.Owner, log: cfg.Logger}, nil
}

// Run calls work while this instance holds the lease on key, until ctx ends. If the lease is
// lost (this instance stalled past the TTL and another took over), work's context is cancelled
// and Run goes back to waiting. work should return when its context ends.
func (m *Manager) Run(ctx context.Context, key string, work func(ctx context.Context)) {
	log := m.log.With("lease", key)
	waiting := false
	for ctx.Err() == nil {
		rev, err := m.kv.Create(ctx, key, []byte(m.owner))
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) && ctx.Err() == nil {
				log.Warn("lease store not reachable; retrying", "err", err)
			} else if !waiting {
				holder := "another instance"
				if e, err := m.kv.Get(ctx, key); err == nil {
					holder = string(e.Value())
				}
				log.Info("source is watched by another instance; standing by", "holder", holder)
			}
			waiting = true
			select {
			case <-ctx.Done():
			case <-time.After(m.ttl / 3):
			}
			continue
		}
		waiting = false
		log.Info("lease acquired; watching", "owner", m.owner)
		m.hold(ctx, key, rev, work)
	}
}

func (m *Manager) hold(ctx context.Context, key string, rev uint64, work func(ctx context.Context)) {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); work(wctx) }()
	t := time.NewTicker(m.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			cancel()
			// Let the next instance in at once rather than after the TTL.
			_ = m.kv.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev))
			return
		case <-t.C:
			nrev, err := m.kv.Update(wctx, key, []byte(m.owner), rev)
			if err != nil {
				if errors.Is(err, jetstream.ErrKeyNotFound) || events.IsConflict(err) {
					m.log.Warn("lease lost (this instance stalled or the store expired it); stopping work", "lease", key, "err", err)
					cancel()
					<-done
					return
				}
				// A transient error: the TTL leaves room for the next tick.
				continue
			}
			rev = nrev
		}
	}
}
