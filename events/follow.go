package events

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Follow calls fn with every message on subject (a filter within the stream, e.g.
// "ingest.document.completed.>") until ctx ends: only new ones, or the whole stream first when
// fromStart is set. It uses an ordered consumer: nothing is left on the server when it returns.
func (b *Bus) Follow(ctx context.Context, subject string, fromStart bool, fn func(jetstream.Msg)) error {
	return Follow(ctx, b.js, b.names.Stream(), subject, fromStart, fn)
}

// Follow is Bus.Follow for a reader that did not provision the stream (ingest tail).
func Follow(ctx context.Context, js jetstream.JetStream, stream, subject string, fromStart bool, fn func(jetstream.Msg)) error {
	policy := jetstream.DeliverNewPolicy
	if fromStart {
		policy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, // one subject: works on NATS 2.9
		DeliverPolicy:  policy,
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s does not exist yet (has ingest ever run against this NATS?): %w", stream, err)
		}
		return fmt.Errorf("follow %s: %w", subject, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow %s: %w", subject, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("follow %s: %w", subject, err)
		}
		fn(m)
	}
}
