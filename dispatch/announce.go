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

// eventID is the idempotency key of a vendor step: one submitted, one completed, one failed event
// per document and vendor, however often the step is retried.
func eventID(docID string, k events.Kind, vendor string) string {
	return docID + "." + string(k) + "." + vendor
}

func (a announcer) announce(ctx context.Context, k events.Kind, docID, vendor string, at time.Time, data any) error {
	subject, err := a.bus.Names().Subject(k, vendor)
	if err != nil {
		return err
	}
	ev, err := events.NewEvent(k, eventID(docID, k, vendor), events.VendorURI(vendor), docID, at, data)
	if err != nil {
		return err
	}
	_, _, err = a.bus.Record(ctx, subject, ev)
	return err
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
	key := fmt.Sprintf("results/%s/%s/completed.json", d.DocumentID, d.Vendor)
	if _, err := bus.Blobs().Put(ctx, key, bytes.NewReader(body), map[string]string{"content-type": "application/json"}); err != nil {
		return d, err
	}
	d.Text, d.Raw, d.ResultObjectKey = "", nil, key
	if b, _ := json.Marshal(d); len(b) > maxEventData {
		d.Fields = nil // even the fields alone are too many: all of it is in the object
	}
	return d, nil
}
