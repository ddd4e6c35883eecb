package events_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// slowConsumer's Messages blocks until released, as nats.go's ordered consumer does while it
// creates its server-side consumer on a busy cluster.
type slowConsumer struct {
	jetstream.Consumer
	release chan struct{}
	stopped chan struct{}
}

func (c slowConsumer) Messages(...jetstream.PullMessagesOpt) (jetstream.MessagesContext, error) {
	<-c.release
	return stoppable{stopped: c.stopped}, nil
}

type stoppable struct {
	jetstream.MessagesContext
	stopped chan struct{}
}

func (s stoppable) Stop() { close(s.stopped) }

func TestMessagesGivesUpWhenTheContextEnds(t *testing.T) {
	c := slowConsumer{release: make(chan struct{}), stopped: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := events.Messages(ctx, c)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Messages waited for the consumer although its context ended")
	}
	// The iterator that comes later is stopped, not leaked.
	close(c.release)
	select {
	case <-c.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the late iterator was not stopped")
	}
}
