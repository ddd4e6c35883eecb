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
	var applyErr error
	err = ReadPending(ctx, cons, func(m jetstream.Msg, md *jetstream.MsgMetadata) bool {
		if md.Sequence.Stream > last {
			return false // published after Rebuild began: its producer and the projector have it
		}
		if ev, err := Decode(m.Data()); err != nil {
			r.Malformed++
		} else {
			r.Events++
			_, changed, err := states.Apply(ctx, ev, md.Sequence.Stream)
			if err != nil {
				applyErr = fmt.Errorf("rebuild the state of %s from event %s (run again to continue): %w", ev.Subject, ev.ID, err)
				return false
			}
			if changed {
				r.Applied++
			}
		}
		return md.Sequence.Stream < last
	})
	switch {
	case applyErr != nil:
		return r, applyErr
	case errors.Is(err, jetstream.ErrMsgIteratorClosed):
		return r, errors.New("reading the stream stopped before its end")
	case err != nil && ctx.Err() == nil:
		return r, fmt.Errorf("read stream %s: %w", names.Stream(), err)
	}
	return r, err

}
