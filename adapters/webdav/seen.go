package webdav

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// Outcomes of a file, as recorded.
const (
	outcomeIngested = "ingested"
	outcomeRejected = "rejected"
)

// record is what the watcher remembers about a file it has dealt with: which version, and whether
// the file stays in the folder on purpose.
type record struct {
	Path    string    `json:"path"`
	FileID  string    `json:"fileid,omitempty"`
	Version string    `json:"version"`
	DocID   string    `json:"doc_id"`
	Outcome string    `json:"outcome"`
	Left    bool      `json:"left"` // stays in the folder on purpose: after "keep", or rejected without move_failed
	At      time.Time `json:"at"`
}

// seenStore keeps records in the KV bucket <namespace>-webdav-seen, keyed by source name and a
// hash of the file's identity (paths can hold any character; keys cannot).
type seenStore struct {
	kv     jetstream.KeyValue
	source string
}

func openSeen(ctx context.Context, bus *events.Bus, source string) (*seenStore, error) {
	// The Bus gives it the deployment's replicas: the same durability as the events it vouches for.
	kv, err := bus.KeyValue(ctx, events.BucketSpec{
		Purpose: "webdav-seen", Description: "WebDAV files already ingested (identity, ETag) per source",
	})
	if err != nil {
		return nil, err
	}
	return &seenStore{kv: kv, source: source}, nil
}

func (s *seenStore) key(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return s.source + "." + hex.EncodeToString(sum[:20])
}

func (s *seenStore) get(ctx context.Context, identity string) (record, bool, error) {
	e, err := s.kv.Get(ctx, s.key(identity))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("read what was ingested before: %w", err)
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return record{}, false, fmt.Errorf("record %s is not valid JSON: %w", e.Key(), err)
	}
	return r, true, nil
}

func (s *seenStore) put(ctx context.Context, identity string, r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, s.key(identity), b); err != nil {
		return fmt.Errorf("remember %s as %s: %w", r.Path, r.Outcome, err)
	}
	return nil
}

// forget removes a record once its file has left the folder: a new file under the same name is
// then a new file, not a new version.
func (s *seenStore) forget(ctx context.Context, identity string) error {
	if err := s.kv.Purge(ctx, s.key(identity)); err != nil {
		return fmt.Errorf("forget a file that left the folder: %w", err)
	}
	return nil
}

// tidy drops the purge markers forget leaves behind, which would otherwise pile up (one per file
// ever moved). NATS 2.9 has no marker TTL, so this is done now and then.
func (s *seenStore) tidy(ctx context.Context) error {
	return s.kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(time.Hour))
}
