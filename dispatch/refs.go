package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// RefIndex maps a vendor's reference (case id, execution id) back to our document: what a
// callback needs, since vendors call back with their ids, not ours.
type RefIndex struct{ kv jetstream.KeyValue }

// OpenRefIndex provisions the index bucket.
func OpenRefIndex(ctx context.Context, bus *events.Bus) (*RefIndex, error) {
	// Kept as long as the events: a reference whose document's events are gone finds nothing to
	// settle, and without an age limit the bucket (and the sweep over a vendor's references)
	// would only grow.
	kv, err := bus.KeyValue(ctx, events.BucketSpec{Purpose: "refs", Description: "vendor reference → document id",
		TTL: bus.Retention()})
	if err != nil {
		return nil, err
	}
	return &RefIndex{kv: kv}, nil
}

// refKey hashes the reference: vendors' ids hold characters Key-Value keys may not (las:…, /).
func refKey(vendor, ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return vendor + "." + hex.EncodeToString(sum[:16])
}

// Put records that ref at vendor is document docID.
func (x *RefIndex) Put(ctx context.Context, vendor, ref, docID string) error {
	if _, err := x.kv.Put(ctx, refKey(vendor, ref), []byte(docID)); err != nil {
		return fmt.Errorf("index %s reference: %w", vendor, err)
	}
	return nil
}

// Lookup returns the document of ref at vendor, "" when the reference is not ours.
func (x *RefIndex) Lookup(ctx context.Context, vendor, ref string) (string, error) {
	e, err := x.kv.Get(ctx, refKey(vendor, ref))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up %s reference: %w", vendor, err)
	}
	return string(e.Value()), nil
}

// Recent returns the documents with a reference at vendor indexed since since, oldest first: a
// vendor's open submissions are among them (what a callback without a readable id asks us to
// look at). One pass over the bucket's current values, no per-key round trips.
func (x *RefIndex) Recent(ctx context.Context, vendor string, since time.Time) ([]string, error) {
	w, err := x.kv.Watch(ctx, vendor+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list %s references: %w", vendor, err)
	}
	defer func() { _ = w.Stop() }()
	var docs []string
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s references: %w", vendor, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list %s references: the watch ended early", vendor)
			}
			if e == nil { // every current value has been seen
				return docs, nil
			}
			if doc := string(e.Value()); !e.Created().Before(since) && !seen[doc] {
				seen[doc] = true
				docs = append(docs, doc)
			}
		}
	}
}
