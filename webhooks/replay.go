package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// ErrDisabled is returned for a replay or redelivery to a subscription its receiver disabled.
var ErrDisabled = errors.New("the subscription is disabled (its receiver answered 410 Gone); enable it first")

// ErrNoDeadLetter is returned when a subscription has no dead letter for an event.
var ErrNoDeadLetter = errors.New("no dead letter for this event")

// ReplayResult says what a replay did.
type ReplayResult struct {
	Subscription string    `json:"subscription"`
	Since        time.Time `json:"since"`
	Matched      int       `json:"matched"`   // events the subscription wants in the range
	Delivered    int       `json:"delivered"` // of those, delivered (in stream order)
	// StoppedAt is the event the replay could not deliver; the ones after it were not sent, so
	// that the receiver sees them in order when the replay is run again.
	StoppedAt *Failure `json:"stopped_at,omitempty"`
}

// Failure is an event a replay or redelivery could not deliver, and why.
type Failure struct {
	EventID string `json:"event_id"`
	Status  int    `json:"status,omitempty"`
	Error   string `json:"error"`
}

// replayTries bounds the attempts per event in a replay: a replay is run by a person waiting
// for it, not by the retry schedule.
const replayTries = 3

// Replay sends again, in stream order, every event since the given time that the subscription
// wants, with the same webhook-id as before (receivers deduplicate by it). It stops at the first
// event it cannot deliver. The subscription's own deliveries go on meanwhile.
func (d *Deliverer) Replay(ctx context.Context, name string, since time.Time) (ReplayResult, error) {
	res := ReplayResult{Subscription: name, Since: since.UTC()}
	s := d.subs[name]
	if s == nil {
		return res, fmt.Errorf("%w: %q", ErrUnknownSubscription, name)
	}
	if s.disabledMark() != nil {
		return res, ErrDisabled
	}
	stream, err := d.bus.JetStream().Stream(ctx, d.bus.Names().Stream())
	if err != nil {
		return res, fmt.Errorf("open the event stream: %w", err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{d.bus.Names().DocumentSubjects()}, // one subject: NATS 2.9
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
	})
	if err != nil {
		return res, fmt.Errorf("read the event stream from %s: %w", since.Format(time.RFC3339), err)
	}
	// What matched the filter when the replay began is the range: the last sequence of the
	// stream may be a message outside the filter (a dead letter), so it is counted instead.
	remaining := cons.CachedInfo().NumPending
	err = events.ReadPending(ctx, cons, func(m jetstream.Msg, md *jetstream.MsgMetadata) bool {
		ev, err := events.Decode(m.Data())
		if err == nil && s.wants(d.bus.Names(), m.Subject(), ev.Kind()) && d.passesFilters(ctx, s, ev) {
			res.Matched++
			if f := d.deliverNow(ctx, s, ev, m.Subject(), md.Sequence.Stream, m.Data()); f != nil {
				res.StoppedAt = f
				return false
			}
			res.Delivered++
		}
		remaining--
		return remaining > 0 // the stream as it was when the replay began is done
	})
	if err != nil && ctx.Err() == nil {
		return res, fmt.Errorf("read the event stream: %w", err)
	}
	return res, err

}

func (d *Deliverer) passesFilters(ctx context.Context, s *sub, ev events.Event) bool {
	if !s.filtered() {
		return true
	}
	f, err := facts(ctx, d.bus, ev)
	return err == nil && s.matches(f)
}

// deliverNow delivers one event at once, a few tries at most, and records the attempts that
// failed (and the success after them).
func (d *Deliverer) deliverNow(ctx context.Context, s *sub, ev events.Event, subject string, seq uint64, body []byte) *Failure {
	dl := events.Delivery{Subject: subject, Data: body, Sequence: seq}
	var res result
	for try := 1; try <= replayTries; try++ {
		res = d.send(ctx, s, ev.ID, body)
		dl.Attempt = try
		if res.ok() {
			d.m.deliveries.WithLabelValues(s.Name, "delivered").Inc()
			if try > 1 {
				d.record(ctx, s, ev, dl, res.Attempt(), false)
			}
			return nil
		}
		d.record(ctx, s, ev, dl, res.Attempt(), false)
		if res.Status == http.StatusGone {
			d.disable(ctx, s, ev.ID, "the receiver answered 410 Gone")
			break
		}
		wait := time.Duration(try) * time.Second
		if res.hasRetryAfter && res.retryAfter <= 30*time.Second {
			wait = res.retryAfter
		}
		if try < replayTries {
			select {
			case <-ctx.Done():
				return &Failure{EventID: ev.ID, Status: res.Status, Error: ctx.Err().Error()}
			case <-time.After(wait):
			}
		}
	}
	return &Failure{EventID: ev.ID, Status: res.Status, Error: res.Err}
}

// DeadLetters returns the subscription's dead letters still in the stream, oldest first.
func (d *Deliverer) DeadLetters(ctx context.Context, name string) ([]events.DeliveryFailedData, error) {
	if d.subs[name] == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownSubscription, name)
	}
	stream, err := d.bus.JetStream().Stream(ctx, d.bus.Names().Stream())
	if err != nil {
		return nil, fmt.Errorf("open the event stream: %w", err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{d.bus.Names().DeliveryFailedSubject(name)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("read the dead letters: %w", err)
	}
	n := cons.CachedInfo().NumPending
	var out []events.DeliveryFailedData
	for n > 0 {
		batch, err := cons.Fetch(int(min(n, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read the dead letters: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var ev events.Event
			var data events.DeliveryFailedData
			if json.Unmarshal(m.Data(), &ev) == nil && json.Unmarshal(ev.Data, &data) == nil {
				out = append(out, data)
			}
		}
		if err := batch.Error(); err != nil && got == 0 {
			return nil, fmt.Errorf("read the dead letters: %w", err)
		}
		n -= uint64(got)
	}
	return out, nil
}

// Redeliver delivers the event of one dead letter again, at once and with the same webhook-id.
func (d *Deliverer) Redeliver(ctx context.Context, name, eventID string) error {
	s := d.subs[name]
	if s == nil {
		return fmt.Errorf("%w: %q", ErrUnknownSubscription, name)
	}
	if s.disabledMark() != nil {
		return ErrDisabled
	}
	letters, err := d.DeadLetters(ctx, name)
	if err != nil {
		return err
	}
	var seq uint64
	for _, l := range letters {
		if l.EventID == eventID {
			seq = l.StreamSequence
		}
	}
	if seq == 0 {
		return fmt.Errorf("%w %q in subscription %s", ErrNoDeadLetter, eventID, name)
	}
	stream, err := d.bus.JetStream().Stream(ctx, d.bus.Names().Stream())
	if err != nil {
		return fmt.Errorf("open the event stream: %w", err)
	}
	raw, err := stream.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("event %s (stream sequence %d) is no longer in the stream: %w", eventID, seq, err)
	}
	ev, err := events.Decode(raw.Data)
	if err != nil || ev.ID != eventID {
		return fmt.Errorf("stream sequence %d does not hold event %s any more", seq, eventID)
	}
	if f := d.deliverNow(ctx, s, ev, raw.Subject, seq, raw.Data); f != nil {
		return &DeliveryError{Failure: *f}
	}
	return nil
}

// DeliveryError is a redelivery the receiver did not take.
type DeliveryError struct{ Failure Failure }

func (e *DeliveryError) Error() string {
	return fmt.Sprintf("the receiver did not take event %s: %s", e.Failure.EventID, e.Failure.Error)
}
