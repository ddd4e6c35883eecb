package console

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// A watcher's health is known only to the instance whose watcher runs (the lease holder). So
// that the sources page of every instance can say how a mailbox or folder is doing, the holder
// writes what its watcher reports into a Key-Value bucket every statusEvery; others read it.

// DefaultStatusEvery is how often the lease holder writes its sources' state.
const DefaultStatusEvery = 10 * time.Second

// sourceStatus is one source's state as its lease holder last saw it.
type sourceStatus struct {
	Instance  string    `json:"instance"`
	CheckedAt time.Time `json:"checked_at"`
	Working   bool      `json:"working"`
	Error     string    `json:"error,omitempty"`
	// Since is when it last changed between working and failing (as far as this instance saw).
	Since time.Time `json:"since"`
	// LastError stays after the source works again: what went wrong last, and when it was seen.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// LastPass is when the watcher last looked through the mailbox or folder to its end.
	LastPass time.Time `json:"last_pass,omitzero"`
}

// watched reports whether any source has a watcher to report on.
func (c *Console) watched() bool {
	for _, s := range c.cfg.Sources {
		if s.Lease != "" && s.Health != nil {
			return true
		}
	}
	return false
}

func (c *Console) openStatus(ctx context.Context) error {
	if !c.watched() {
		return nil
	}
	kv, err := c.bus.KeyValue(ctx, events.BucketSpec{
		Purpose: "source-status", Description: "state of each mailbox and folder as its watching instance sees it",
		TTL: 24 * time.Hour,
	})
	if err != nil {
		return err
	}
	c.status = kv
	return nil
}

// reportSources writes the state of every source this instance watches now.
func (c *Console) reportSources(ctx context.Context) {
	if c.status == nil {
		return
	}
	leases, err := c.leases(ctx)
	if err != nil {
		return
	}
	now := c.cfg.Now().UTC()
	for _, src := range c.cfg.Sources {
		if src.Lease == "" || src.Health == nil {
			continue
		}
		if e, err := leases.Get(ctx, src.Lease); err != nil || string(e.Value()) != c.cfg.Self {
			continue // watched elsewhere, or by nobody: its holder reports it
		}
		prev, _ := c.readStatus(ctx, src.Lease)
		st := sourceStatus{Instance: c.cfg.Self, CheckedAt: now, Working: true, Since: now}
		if herr := src.Health(); herr != nil {
			st.Working, st.Error = false, herr.Error()
		}
		if src.LastPass != nil {
			st.LastPass = src.LastPass().UTC()
		}
		st.LastError, st.LastErrorAt = prev.LastError, prev.LastErrorAt
		if !st.Working {
			st.LastError, st.LastErrorAt = st.Error, now
		}
		if prev.Instance == c.cfg.Self && prev.Working == st.Working && !prev.Since.IsZero() {
			st.Since = prev.Since
		}
		body, _ := json.Marshal(st)
		if _, err := c.status.Put(ctx, src.Lease, body); err != nil && ctx.Err() == nil {
			c.log.Debug("source state not written", "source", src.Lease, "err", err)
		}
	}
}

func (c *Console) readStatus(ctx context.Context, lease string) (sourceStatus, bool) {
	var st sourceStatus
	if c.status == nil {
		return st, false
	}
	e, err := c.status.Get(ctx, lease)
	if err != nil || json.Unmarshal(e.Value(), &st) != nil {
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			c.log.Debug("source state not read", "source", lease, "err", err)
		}
		return sourceStatus{}, false
	}
	return st, true
}
