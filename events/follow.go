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
	return Follow(ctx, b.js, FollowConfig{Stream: b.names.Stream(), Subject: subject, FromStart: fromStart}, fn)
}

// FollowConfig says what Follow reads.
type FollowConfig struct {
	Stream, Subject string
	// FromStart replays the whole stream first; otherwise only messages published after the
	// consumer exists are delivered.
	FromStart bool
	// Ready, when set, is called once the consumer exists: from then on nothing published is
	// missed. A reader of new messages that publishes itself (a load generator, a test, a user
	// who runs tail and then submits) waits for it.
	Ready func()
}

// Follow is Bus.Follow for a reader that did not provision the stream (ingest tail).
func Follow(ctx context.Context, js jetstream.JetStream, cfg FollowConfig, fn func(jetstream.Msg)) error {
	stream, subject := cfg.Stream, cfg.Subject
	policy := jetstream.DeliverNewPolicy
	if cfg.FromStart {
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
	it, err := Messages(ctx, cons)
	if err != nil {
		return fmt.Errorf("follow %s: %w", subject, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	if cfg.Ready != nil {
		cfg.Ready()
	}
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

// Messages starts cons's message iterator, giving up when ctx ends. For an ordered consumer,
// nats.go creates the server-side consumer inside Messages, with 10 s timeouts and retries of
// its own that no context reaches; on a busy cluster that outlasted a service's whole shutdown
// time (CI saw the document index hold a stop for 9 s). If ctx ends first, the iterator the call
// returns later is stopped.
func Messages(ctx context.Context, cons jetstream.Consumer, opts ...jetstream.PullMessagesOpt) (jetstream.MessagesContext, error) {
	type started struct {
		it  jetstream.MessagesContext
		err error
	}
	ch := make(chan started, 1)
	go func() {
		it, err := cons.Messages(opts...)
		ch <- started{it, err}
	}()
	select {
	case s := <-ch:
		return s.it, s.err
	case <-ctx.Done():
		go func() {
			if s := <-ch; s.it != nil {
				s.it.Stop()
			}
		}()
		return nil, ctx.Err()
	}
}

// ReadPending hands fn the consumer's messages until fn says stop or the consumer has delivered
// all it had pending (the count each message carries): it never waits for messages still to
// come. It returns the iterator's error, or ctx's when ctx ended.
func ReadPending(ctx context.Context, cons jetstream.Consumer, fn func(jetstream.Msg, *jetstream.MsgMetadata) bool, opts ...jetstream.PullMessagesOpt) error {
	if cons.CachedInfo().NumPending == 0 {
		return nil
	}
	it, err := Messages(ctx, cons, opts...)
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if !fn(m, md) || md.NumPending == 0 {
			return nil
		}
	}
}
