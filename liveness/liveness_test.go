package liveness_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/liveness"
)

func TestHeartbeatAliveAndGone(t *testing.T) {
	for name, conn := range map[string]func(testing.TB) *nats.Conn{"embedded": eventstest.Embedded, "external": eventstest.External} {
		t.Run(name, func(t *testing.T) {
			bus := eventstest.Bus(t, conn(t))
			ctx := context.Background()
			ttl := 1500 * time.Millisecond
			a, err := liveness.New(ctx, liveness.Config{Bus: bus, TTL: ttl})
			if err != nil {
				t.Fatal(err)
			}
			b, err := liveness.New(ctx, liveness.Config{Bus: bus, TTL: ttl})
			if err != nil {
				t.Fatal(err)
			}
			if a.Self() == b.Self() {
				t.Fatalf("two registries share the instance id %q", a.Self())
			}
			// Not started yet: not alive.
			if alive, err := b.Alive(ctx, a.Self()); err != nil || alive {
				t.Fatalf("before its first heartbeat a is alive=%v err=%v", alive, err)
			}
			// A killed instance: heartbeats that stop without the clean-stop delete.
			if err := a.Beat(ctx); err != nil {
				t.Fatal(err)
			}
			if alive, err := b.Alive(ctx, a.Self()); err != nil || !alive {
				t.Fatalf("after a heartbeat a is alive=%v err=%v", alive, err)
			}
			eventstest.WaitFor(t, 4*ttl, "the heartbeat of a stopped instance to expire", func() bool {
				alive, err := b.Alive(ctx, a.Self())
				return err == nil && !alive
			})

			// A running instance stays alive past its TTL, and is gone at once after a clean stop.
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- a.Run(rctx) }()
			eventstest.WaitFor(t, 2*time.Second, "a running", func() bool {
				alive, err := b.Alive(ctx, a.Self())
				return err == nil && alive
			})
			deadline := time.Now().Add(2 * ttl)
			for time.Now().Before(deadline) {
				if alive, err := b.Alive(ctx, a.Self()); err != nil || !alive {
					t.Fatalf("a running instance looked dead (alive=%v err=%v)", alive, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if alive, err := b.Alive(ctx, a.Self()); err != nil || alive {
				t.Fatalf("after a clean stop a is alive=%v err=%v", alive, err)
			}
			// Ids of records written before heartbeats existed (host/pid) or empty: dead.
			for _, id := range []string{"", "host/123", "bad id"} {
				if alive, err := b.Alive(ctx, id); err != nil || alive {
					t.Errorf("Alive(%q) = %v, %v; want false, nil", id, alive, err)
				}
			}
		})
	}
}

func TestAliveCouldNotTell(t *testing.T) {
	nc := eventstest.Embedded(t)
	bus := eventstest.Bus(t, nc)
	ctx := context.Background()
	r, err := liveness.New(ctx, liveness.Config{Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	alive, err := r.Alive(cctx, "other-1-abcd")
	if err == nil {
		t.Fatalf("with NATS gone Alive answered %v without an error; it must say it could not tell", alive)
	}
	if alive, err := r.Alive(cctx, r.Self()); err != nil || !alive {
		t.Fatalf("an instance is always alive to itself: %v, %v", alive, err)
	}
}
