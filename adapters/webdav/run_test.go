package webdav

import (
	"context"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/lease"
)

// Run polls on its own, under a lease as the service runs it, and returns when its context ends.
func TestRunUnderLease(t *testing.T) {
	dav := newDAV(t)
	h := newHarness(t, dav.URL, func(c *Config) { c.PollInterval = 20 * time.Millisecond })
	h.clock.advance(time.Hour) // files are old enough at once
	leases, err := lease.New(context.Background(), lease.Config{Bus: h.bus, Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go leases.Run(ctx, "webdav-scans", func(ctx context.Context) { done <- h.w.Run(ctx) })

	dav.write("a.pdf", pdf("a", 100))
	eventstest.WaitFor(t, 10*time.Second, "a.pdf taken and moved", func() bool { return dav.exists("processed/a.pdf") })
	if n := len(h.received()); n != 1 {
		t.Fatalf("%d documents, want 1", n)
	}
	dav.setFault(failNth("PROPFIND", "", 500, 1000))
	eventstest.WaitFor(t, 10*time.Second, "Health to report the failure", func() bool { return h.w.Health() != nil })
	// A failed poll is a pass all the same: LastPass says when it looked, Health how it went.
	failedAt := h.w.LastPass()
	eventstest.WaitFor(t, 10*time.Second, "a later pass", func() bool { return h.w.LastPass().After(failedAt) })
	dav.clearFault()
	eventstest.WaitFor(t, 10*time.Second, "Health to recover", func() bool { return h.w.Health() == nil })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
