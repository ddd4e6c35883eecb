package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamEvent is an event as read back from the stream, with where and when the stream stored it.
type StreamEvent struct {
	Event
	Sequence  uint64    // stream sequence
	OnSubject string    // the NATS subject it was published on (Event.Subject is the document id)
	Stored    time.Time // the stream's timestamp
}

// ErrEventNotFound is returned when the stream no longer holds (or never held) an event.
var ErrEventNotFound = errors.New("event not in the stream")

// How FindEvent looks for an event by its time, when its sequence is not known. The stream has
// no index by event id, and a document's subjects do not carry its id, so the event is looked
// for among the events of its subject stored around its time: from a little before (the
// producing instance's clock may run ahead of the NATS server's) to well after (a completed event
// is timed before its result files are stored, which may take minutes). A scan stops at the
// event; the bounds only cut short the search for one that is not there.
const (
	findBefore  = time.Minute
	findAfter   = 30 * time.Minute
	findMaxScan = 20000
	readTimeout = 15 * time.Second
	// readMaxBytes bounds what a read holds buffered: completed events may be near 1 MiB each.
	readMaxBytes = 8 << 20
)

// FindEvent reads the event a document's history names, published on subject. With the event's
// stream sequence (h.Seq) that is one get; without it (histories recorded before sequences were
// kept), or when the message there is another (the stream was made anew), the event is looked for
// among those of its subject stored around its time (h.Time). ErrEventNotFound when the stream
// does not hold it: aged out (nats.stream.max_age), or never published.
func (b *Bus) FindEvent(ctx context.Context, subject string, h HistoryEntry) (StreamEvent, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	if h.Seq != 0 {
		ev, err := b.eventAt(ctx, subject, h.EventID, h.Seq)
		if err == nil || !errors.Is(err, ErrEventNotFound) {
			return ev, err
		}
	}
	return b.scanFor(ctx, subject, h.EventID, h.Time)
}

// eventAt reads event id at stream sequence seq. ErrEventNotFound when the stream holds no
// message there, or another one; any other failure is returned as it is (could not tell).
func (b *Bus) eventAt(ctx context.Context, subject, id string, seq uint64) (StreamEvent, error) {
	m, err := b.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return StreamEvent{}, fmt.Errorf("event %s at sequence %d: %w", id, seq, ErrEventNotFound)
	}
	if err != nil {
		return StreamEvent{}, fmt.Errorf("read event %s from the stream: %w", id, err)
	}
	if m.Subject != subject || m.Header.Get(jetstream.MsgIDHeader) != id {
		return StreamEvent{}, fmt.Errorf("event %s at sequence %d: %w", id, seq, ErrEventNotFound)
	}
	ev, err := Decode(m.Data)
	if err != nil || ev.ID != id {
		return StreamEvent{}, fmt.Errorf("event %s at sequence %d: %w", id, seq, ErrEventNotFound)
	}
	return StreamEvent{Event: ev, Sequence: m.Sequence, OnSubject: m.Subject, Stored: m.Time}, nil
}

// scanFor looks for event id among the events of subject stored around near.
func (b *Bus) scanFor(ctx context.Context, subject, id string, near time.Time) (StreamEvent, error) {
	start := near.Add(-findBefore)
	cons, err := b.reader(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, // one subject: works on NATS 2.9
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		return StreamEvent{}, fmt.Errorf("read %s from the stream: %w", subject, err)
	}
	defer b.dropReader(cons)
	var found StreamEvent
	scanned := 0
	err = ReadPending(ctx, cons, func(m jetstream.Msg, md *jetstream.MsgMetadata) bool {
		scanned++
		if md.Timestamp.After(near.Add(findAfter)) || scanned > findMaxScan {
			return false
		}
		// The Nats-Msg-Id is the event id: most messages are passed over without decoding.
		if m.Headers().Get(jetstream.MsgIDHeader) != id {
			return true
		}
		ev, err := Decode(m.Data())
		if err != nil || ev.ID != id {
			return true
		}
		found = StreamEvent{Event: ev, Sequence: md.Sequence.Stream, OnSubject: m.Subject(), Stored: md.Timestamp}
		return false
	}, jetstream.PullMaxBytes(readMaxBytes))
	if err != nil {
		return StreamEvent{}, fmt.Errorf("read %s from the stream: %w", subject, err)
	}
	if found.Sequence == 0 {
		return StreamEvent{}, fmt.Errorf("event %s: %w", id, ErrEventNotFound)
	}
	return found, nil
}

// ScanBack returns up to limit events on subject (a filter, e.g. "ingest.document.rejected.>")
// stored before stream sequence before (0: up to the newest), newest first. Messages on the
// subject that are not events are skipped.
//
// JetStream reads forward only, so the stream is read in windows of sequences walking back from
// the end, each four times the last: a page of rare events in a long stream costs a few windows,
// and memory holds no more than limit events whatever a window holds.
func (b *Bus) ScanBack(ctx context.Context, subject string, before uint64, limit int) ([]StreamEvent, error) {
	if limit <= 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	info, err := b.stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the state of stream %s: %w", b.names.Stream(), err)
	}
	first, end := info.State.FirstSeq, info.State.LastSeq+1
	if first == 0 {
		first = 1
	}
	hi := end
	if before != 0 && before < end {
		hi = before
	}
	var out []StreamEvent
	for span := uint64(1024); hi > first && len(out) < limit; span *= 4 {
		lo := first
		if hi-first > span {
			lo = hi - span
		}
		win, err := b.readWindow(ctx, subject, lo, hi, limit-len(out))
		if err != nil {
			return nil, err
		}
		for i := len(win) - 1; i >= 0; i-- {
			out = append(out, win[i])
		}
		hi = lo
	}
	return out, nil
}

// readWindow returns the last keep events on subject with sequences in [lo, hi), oldest first.
func (b *Bus) readWindow(ctx context.Context, subject string, lo, hi uint64, keep int) ([]StreamEvent, error) {
	cons, err := b.reader(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    lo,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s from the stream: %w", subject, err)
	}
	defer b.dropReader(cons)
	var ring []StreamEvent // the newest keep, oldest first
	err = ReadPending(ctx, cons, func(m jetstream.Msg, md *jetstream.MsgMetadata) bool {
		if md.Sequence.Stream >= hi {
			return false
		}
		if ev, err := Decode(m.Data()); err == nil {
			if len(ring) == keep {
				ring = append(ring[:0], ring[1:]...)
			}
			ring = append(ring, StreamEvent{Event: ev, Sequence: md.Sequence.Stream, OnSubject: m.Subject(), Stored: md.Timestamp})
		}
		return true
	}, jetstream.PullMaxBytes(readMaxBytes))
	if err != nil {
		return nil, fmt.Errorf("read %s from the stream: %w", subject, err)
	}
	return ring, nil
}

// reader is an ordered consumer for one read of a request. Such reads are many and short, so
// each consumer is deleted when done (dropReader) rather than left for the server to time out,
// and a short inactivity threshold removes one whose deletion was lost.
func (b *Bus) reader(ctx context.Context, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	cfg.InactiveThreshold = 30 * time.Second
	return b.js.OrderedConsumer(ctx, b.names.Stream(), cfg)
}

func (b *Bus) dropReader(cons jetstream.Consumer) {
	name := cons.CachedInfo().Name
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.js.DeleteConsumer(ctx, b.names.Stream(), name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		b.log.Debug("a finished stream reader was not deleted; the server drops it when idle", "consumer", name, "err", err)
	}
}
