package events

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Rebuilt counts what Rebuild did.
type Rebuilt struct {
	Events    int // document events read from the stream
	Applied   int // of those, events a document's state did not have yet
	Malformed int // messages on the document subjects that are not events (skipped)
}

// Rebuild replays every document event of the stream, as far as it reaches when Rebuild starts,
// into the state bucket. Applying is idempotent (a state remembers the events it holds), so
// running it over a correct bucket changes nothing and running it twice is harmless; it can run
// while instances serve.
//
// It is the repair for a state bucket that lost writes the stream kept: a bucket deleted by
// hand, or a NATS 2.9 cluster that loses an acknowledged Key-Value write when a node is killed
// (seen in the failover test on Debian's 2.9.10; not on 2.10 and later). It opens the stream and
// the bucket as they are and creates neither.
func Rebuild(ctx context.Context, js jetstream.JetStream, names Names) (Rebuilt, error) {
	var r Rebuilt
	stream, err := js.Stream(ctx, names.Stream())
	if err != nil {
		return r, fmt.Errorf("open stream %s (has ingest run against this NATS?): %w", names.Stream(), err)
	}
	kv, err := js.KeyValue(ctx, names.StateBucket())
	if err != nil {
		return r, fmt.Errorf("open state bucket %s: %w", names.StateBucket(), err)
	}
	states := &States{kv: kv}
	last := stream.CachedInfo().State.LastSeq
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{names.DocumentSubjects()},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return r, fmt.Errorf("read stream %s: %w", names.Stream(), err)
	}
	if cons.CachedInfo().NumPending == 0 {
		return r, nil
	}
	it, err := Messages(ctx, cons)
	if err != nil {
		return r, fmt.Errorf("read stream %s: %w", names.Stream(), err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return r, errors.New("reading the stream stopped before its end")
			}
			return r, fmt.Errorf("read stream %s: %w", names.Stream(), err)
		}
		md, err := m.Metadata()
		if err != nil {
			return r, fmt.Errorf("read stream %s: %w", names.Stream(), err)
		}
		if md.Sequence.Stream > last {
			return r, nil // published after Rebuild began: its producer and the projector have it
		}
		if ev, err := Decode(m.Data()); err != nil {
			r.Malformed++
		} else {
			r.Events++
			_, changed, err := states.Apply(ctx, ev)
			if err != nil {
				return r, fmt.Errorf("rebuild the state of %s from event %s (run again to continue): %w", ev.Subject, ev.ID, err)
			}
			if changed {
				r.Applied++
			}
		}
		if md.Sequence.Stream >= last || md.NumPending == 0 {
			return r, nil
		}
	}
}
