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

// stuckIterator is nats.go's ordered iterator while it re-creates a lost server-side consumer:
// Next and Stop both wait for the lock the re-creation holds.
type stuckIterator struct {
	jetstream.MessagesContext
	lock    chan struct{}
	stopped chan struct{}
}

func (s stuckIterator) Next(...jetstream.NextOpt) (jetstream.Msg, error) {
	<-s.lock
	return nil, jetstream.ErrMsgIteratorClosed
}

func (s stuckIterator) Stop() {
	<-s.lock
	close(s.stopped)
}

type stuckConsumer struct {
	jetstream.Consumer
	it stuckIterator
}

func (c stuckConsumer) Messages(...jetstream.PullMessagesOpt) (jetstream.MessagesContext, error) {
	return c.it, nil
}

func TestStopDoesNotWaitForTheLibrary(t *testing.T) {
	c := stuckConsumer{it: stuckIterator{lock: make(chan struct{}), stopped: make(chan struct{})}}
	it, err := events.Messages(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	next := make(chan error, 1)
	go func() {
		_, err := it.Next()
		next <- err
	}()
	stopped := make(chan struct{})
	go func() {
		it.Stop()
		it.Stop() // twice is harmless
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop waited for the library's lock")
	}
	select {
	case err := <-next:
		if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			t.Fatalf("Next after Stop: %v, want ErrMsgIteratorClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next waited for the library's lock after Stop")
	}
	if _, err := it.Next(); !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
		t.Fatalf("Next after Stop: %v, want ErrMsgIteratorClosed", err)
	}
	// The library's iterator is still stopped once it lets go.
	close(c.it.lock)
	select {
	case <-c.it.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the library's iterator was never stopped")
	}
}
