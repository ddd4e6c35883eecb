package events_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
)

// A background consumer runs one handler at a time while foreground work is under way, keeps
// going at that pace, and uses all its workers once the foreground work has ended.
func TestBackgroundConsumerYieldsToForeground(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(map[bool]string{false: "fresh", true: "waited past MaxDelay"}[old], func(t *testing.T) {
			testBackgroundConsumer(t, old)
		})
	}
}

// testBackgroundConsumer: with old, the messages have waited longer than MaxDelay, and the
// consumer must use all its workers even during foreground work.
func testBackgroundConsumer(t *testing.T, old bool) {
	b := eventstest.Bus(t, eventstest.Embedded(t))
	subj, _ := b.Names().Subject(events.Received, "http")
	for i := range 12 {
		id := fmt.Sprintf("bg-%d", i)
		ev, _ := events.NewEvent(events.Received, id+".received", "/sources/http/api", id, time.Now(), events.ReceivedData{DocumentID: id})
		if _, err := b.Publish(ctxT(t), subj, ev); err != nil {
			t.Fatal(err)
		}
	}
	cfg := events.PriorityConfig{Saturated: func() bool { return true }}
	if old {
		cfg.MaxDelay = time.Nanosecond
	}
	prio := events.NewPriority(cfg)
	uploading := prio.Foreground()
	var running, most, handled atomic.Int64
	release := make(chan struct{}, 12)
	c, err := b.Consumer(ctxT(t), events.ConsumerSpec{
		Purpose: "background-test", Filter: subj, Workers: 4, Background: prio,
	}, func(ctx context.Context, d events.Delivery) events.Outcome {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		defer running.Add(-1)
		select {
		case <-release:
		case <-ctx.Done():
			return events.RetryAfter(time.Second)
		}
		handled.Add(1)
		return events.Done()
	})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, c.Run)

	if old {
		eventstest.WaitFor(t, 10*time.Second, "all four workers busy for messages that waited", func() bool { return running.Load() == 4 })
		for range 12 {
			release <- struct{}{}
		}
		eventstest.WaitFor(t, 10*time.Second, "every message handled", func() bool { return handled.Load() == 12 })
		uploading()
		return
	}
	// While uploading: handlers one after the other, never two at once.
	for i := range 3 {
		eventstest.WaitFor(t, 10*time.Second, "a handler running", func() bool { return running.Load() == 1 })
		// Time for a second handler to start if the consumer would start one.
		time.Sleep(100 * time.Millisecond)
		if m := most.Load(); m != 1 {
			t.Fatalf("%d handlers ran at once during foreground work, want 1", m)
		}
		release <- struct{}{}
		eventstest.WaitFor(t, 10*time.Second, "the handler done", func() bool { return handled.Load() == int64(i+1) })
	}
	uploading()
	eventstest.WaitFor(t, 10*time.Second, "all four workers busy once intake is quiet", func() bool { return running.Load() == 4 })
	for range 9 {
		release <- struct{}{}
	}
	eventstest.WaitFor(t, 10*time.Second, "every message handled", func() bool { return handled.Load() == 12 })
}
