package webhooks

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

// Attempt is one try to deliver an event, as an operator sees it.
type Attempt struct {
	Attempt   int       `json:"attempt"` // the delivery's attempt number (JetStream's delivery count)
	At        time.Time `json:"at"`
	Status    int       `json:"status,omitempty"` // 0: no answer
	LatencyMS float64   `json:"latency_ms"`
	Err       string    `json:"error,omitempty"`
	Response  string    `json:"response,omitempty"` // status line and the start of the body
}

// Record is what is kept about one event's delivery to one subscription once it needed more than
// one attempt (a first-try success is only counted, to keep the fast path one HTTP request).
type Record struct {
	Subscription   string    `json:"subscription"`
	EventID        string    `json:"event_id"`
	EventType      string    `json:"event_type"`
	EventSubject   string    `json:"event_subject"`
	DocumentID     string    `json:"document_id"`
	StreamSequence uint64    `json:"stream_sequence"`
	Attempts       int       `json:"attempts"`
	FirstAttemptAt time.Time `json:"first_attempt_at,omitzero"`
	Delivered      bool      `json:"delivered"`
	Last           []Attempt `json:"last_attempts"` // the latest keptAttempts, oldest first
}

const keptAttempts = 10

// recordKey is the record's key: subscription and event id, hashed when the id has characters a
// key may not (ours never do).
func recordKey(subscription, eventID string) string {
	for _, r := range eventID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '=') {
			sum := sha256.Sum256([]byte(eventID))
			return subscription + ".h" + hex.EncodeToString(sum[:16])
		}
	}
	return subscription + "." + eventID
}

// record adds an attempt to the event's record (expired: a note that no attempt was made) and
// returns the record. A record that cannot be kept is logged: it informs, it decides nothing
// but the dead letter's details.
func (d *Deliverer) record(ctx context.Context, s *sub, ev events.Event, dl events.Delivery, a Attempt, expired bool) Record {
	ctx = context.WithoutCancel(ctx)
	key := recordKey(s.Name, ev.ID)
	var rec Record
	if e, err := d.attempts.Get(ctx, key); err == nil {
		_ = json.Unmarshal(e.Value(), &rec)
	}
	rec.Subscription, rec.EventID, rec.EventType, rec.EventSubject, rec.DocumentID = s.Name, ev.ID, ev.Type, dl.Subject, ev.Subject
	if dl.Sequence != 0 {
		rec.StreamSequence = dl.Sequence
	}
	if !expired {
		a.Attempt = dl.Attempt
		rec.Attempts = max(rec.Attempts+1, dl.Attempt)
		if rec.FirstAttemptAt.IsZero() {
			rec.FirstAttemptAt = a.At
		}
		rec.Delivered = a.Err == "" && a.Status >= 200 && a.Status < 300
	}
	rec.Last = append(rec.Last, a)
	if len(rec.Last) > keptAttempts {
		rec.Last = rec.Last[len(rec.Last)-keptAttempts:]
	}
	b, _ := json.Marshal(rec)
	if _, err := d.attempts.Put(ctx, key, b); err != nil {
		d.log.Warn("could not keep the record of a webhook attempt", "subscription", s.Name, "event_id", ev.ID, "err", err)
	}
	return rec
}

// Attempts returns the record of an event's delivery to a subscription (ErrNoRecord when every
// attempt so far was a first-try success, or there was none).
func (d *Deliverer) Attempts(ctx context.Context, subscription, eventID string) (Record, error) {
	if d.subs[subscription] == nil {
		return Record{}, fmt.Errorf("%w: %q", ErrUnknownSubscription, subscription)
	}
	e, err := d.attempts.Get(ctx, recordKey(subscription, eventID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, ErrNoRecord
	}
	if err != nil {
		return Record{}, fmt.Errorf("read the delivery record: %w", err)
	}
	var rec Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return Record{}, fmt.Errorf("the delivery record of %s is damaged: %w", eventID, err)
	}
	return rec, nil
}

// ErrNoRecord: no attempt of this delivery was recorded (it succeeded at once, or never ran).
var ErrNoRecord = errors.New("no recorded attempts for this event (first-try deliveries are only counted)")
