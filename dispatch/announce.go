package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/ingest-dev/ingest/events"
)

// announcer publishes a vendor step's event once and folds it into the document state.
type announcer struct {
	bus *events.Bus
	log *slog.Logger
}

// announce publishes the event of kind k of one round of a (document, vendor). Its id is the
// idempotency key of the step (events.VendorStepID): one submitted, one completed, one failed
// event per document, vendor and round, however often the step is retried.
func (a announcer) announce(ctx context.Context, k events.Kind, s slot, at time.Time, data any) error {
	return a.announceOn(ctx, k, s, at, data, events.Snapshot{})
}

// announceOn is announce for a caller that read the document's state shortly before.
func (a announcer) announceOn(ctx context.Context, k events.Kind, s slot, at time.Time, data any, snap events.Snapshot) error {
	subject, err := a.bus.Names().Subject(k, s.vendor)
	if err != nil {
		return err
	}
	ev, err := events.NewEvent(k, s.eventID(k), events.VendorURI(s.vendor), s.doc, at, data)
	if err != nil {
		return err
	}
	_, _, err = a.bus.RecordOn(ctx, subject, ev, snap)
	return err
}

// resultKey is where a result file of a round is kept: results/<doc>/<vendor>/<name> for round
// 0, results/<doc>/<vendor>/r<n>/<name> for a later round, so that rounds never share a file.
func resultKey(docID, vendor string, round int, name string) string {
	if round > 0 {
		return fmt.Sprintf("results/%s/%s/r%d/%s", docID, vendor, round, name)
	}
	return fmt.Sprintf("results/%s/%s/%s", docID, vendor, name)
}

// maxEventData keeps a completed event under the stream's 1 MiB message limit with room for the
// envelope.
const maxEventData = 900 << 10

// fitCompleted moves text and raw JSON into the Object Store when the event would be too large:
// subscribers get the fields and a key to the whole result.
func fitCompleted(ctx context.Context, bus *events.Bus, d events.CompletedData) (events.CompletedData, error) {
	if len(d.Raw) > 0 && !json.Valid(d.Raw) {
		// The vendor's answer is kept verbatim, as a JSON string when it is not JSON.
		quoted, _ := json.Marshal(string(d.Raw))
		d.Raw = quoted
	}
	body, err := json.Marshal(d)
	if err != nil {
		return d, fmt.Errorf("encode result: %w", err)
	}
	if len(body) <= maxEventData {
		return d, nil
	}
	key := resultKey(d.DocumentID, d.Vendor, d.Round, "completed.json")
	if _, err := bus.Blobs().Put(ctx, key, bytes.NewReader(body), map[string]string{"content-type": "application/json"}); err != nil {
		return d, err
	}
	d.Text, d.Raw, d.ResultObjectKey = "", nil, key
	if b, _ := json.Marshal(d); len(b) > maxEventData {
		d.Fields = nil // even the fields alone are too many: all of it is in the object
	}
	return d, nil
}
