package events

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
//
// The iterator it returns stops at once for the same reason: when an ordered consumer loses its
// server-side consumer (a node went away, heartbeats stopped), nats.go re-creates it while
// holding the lock its Stop needs, up to 10 s per attempt, so Stop and a Next in progress wait
// that long too (CI saw it hold a stop past its deadline). Here Stop returns at once and Next
// returns ErrMsgIteratorClosed; nats.go's own Stop runs in the background.
func Messages(ctx context.Context, cons jetstream.Consumer, opts ...jetstream.PullMessagesOpt) (*Iterator, error) {
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
		if s.err != nil {
			return nil, s.err
		}
		return newIterator(s.it), nil
	case <-ctx.Done():
		go func() {
			if s := <-ch; s.it != nil {
				s.it.Stop()
			}
		}()
		return nil, ctx.Err()
	}
}

// Iterator hands out a consumer's messages one at a time; see Messages for why it exists.
type Iterator struct {
	inner   jetstream.MessagesContext
	next    chan nextMsg
	stopped chan struct{}
	stop    sync.Once
}

type nextMsg struct {
	m   jetstream.Msg
	err error
}

func newIterator(inner jetstream.MessagesContext) *Iterator {
	it := &Iterator{inner: inner, next: make(chan nextMsg), stopped: make(chan struct{})}
	go it.read()
	return it
}

// read takes messages from nats.go's iterator as they are asked for (the channel has no room:
// nothing is read ahead of the caller) until it fails or the iterator is stopped.
func (it *Iterator) read() {
	defer close(it.next)
	for {
		m, err := it.inner.Next()
		select {
		case it.next <- nextMsg{m, err}:
		case <-it.stopped:
			return
		}
		if err != nil {
			return
		}
	}
}

// Next waits for the next message. After Stop it returns jetstream.ErrMsgIteratorClosed.
func (it *Iterator) Next() (jetstream.Msg, error) {
	select {
	case <-it.stopped:
		return nil, jetstream.ErrMsgIteratorClosed
	default:
	}
	select {
	case n, ok := <-it.next:
		if !ok {
			return nil, jetstream.ErrMsgIteratorClosed
		}
		return n.m, n.err
	case <-it.stopped:
		return nil, jetstream.ErrMsgIteratorClosed
	}
}

// Stop ends the iteration without waiting for nats.go to let go of its consumer.
func (it *Iterator) Stop() {
	it.stop.Do(func() {
		close(it.stopped)
		go it.inner.Stop()
	})
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
