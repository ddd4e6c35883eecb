package lease_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/lease"
)

func TestOneHolderAndTakeover(t *testing.T) {
	for _, name := range []string{"embedded", "external"} {
		t.Run(name, func(t *testing.T) {
			nc := eventstest.Embedded
			if name == "external" {
				nc = eventstest.External
			}
			bus := eventstest.Bus(t, nc(t))
			ttl := 1500 * time.Millisecond
			var holders, maxHolders atomic.Int32
			var who sync.Map
			work := func(owner string) func(context.Context) {
				return func(ctx context.Context) {
					n := holders.Add(1)
					for {
						m := maxHolders.Load()
						if n <= m || maxHolders.CompareAndSwap(m, n) {
							break
						}
					}
					who.Store("current", owner)
					<-ctx.Done()
					holders.Add(-1)
				}
			}
			ctxA, stopA := context.WithCancel(context.Background())
			ctxB, stopB := context.WithCancel(context.Background())
			defer stopB()
			var wg sync.WaitGroup
			for owner, ctx := range map[string]context.Context{"a": ctxA, "b": ctxB} {
				m, err := lease.New(context.Background(), lease.Config{Bus: bus, TTL: ttl, Owner: owner})
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() { defer wg.Done(); m.Run(ctx, "mailbox-1", work(owner)) }()
			}
			eventstest.WaitFor(t, 5*time.Second, "a holder", func() bool { return holders.Load() == 1 })
			first, _ := who.Load("current")
			// The holder goes away: the other takes over.
			if first == "a" {
				stopA()
			} else {
				stopB()
			}
			eventstest.WaitFor(t, 3*ttl, "the takeover", func() bool {
				cur, _ := who.Load("current")
				return cur != first && holders.Load() == 1
			})
			stopA()
			stopB()
			wg.Wait()
			if maxHolders.Load() != 1 {
				t.Fatalf("%d instances held the lease at once", maxHolders.Load())
			}
		})
	}
}

// The holder's process dies (its connection drops without a goodbye): the lease expires and the
// other instance takes over within the TTL.
func TestTakeoverAfterCrash(t *testing.T) {
	b := eventstest.EmbeddedBroker(t, t.TempDir())
	ctx := context.Background()
	open := func() (*nats.Conn, *events.Bus) {
		nc, err := nats.Connect(b.URL())
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		bus, err := events.Open(ctx, js, events.Config{Namespace: "crash"})
		if err != nil {
			t.Fatal(err)
		}
		return nc, bus
	}
	ncA, busA := open()
	_, busB := open()
	ttl := 1500 * time.Millisecond
	mA, _ := lease.New(ctx, lease.Config{Bus: busA, TTL: ttl, Owner: "a"})
	mB, _ := lease.New(ctx, lease.Config{Bus: busB, TTL: ttl, Owner: "b"})
	var holder atomic.Value
	holder.Store("")
	started := make(chan struct{})
	actx, stopA := context.WithCancel(ctx)
	defer stopA()
	go mA.Run(actx, "folder", func(ctx context.Context) { holder.Store("a"); close(started); <-ctx.Done() })
	<-started
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	go mB.Run(bctx, "folder", func(ctx context.Context) { holder.Store("b"); <-ctx.Done() })
	ncA.Close() // a dies
	begun := time.Now()
	eventstest.WaitFor(t, 4*ttl, "b to take over", func() bool { return holder.Load() == "b" })
	t.Logf("takeover after %s (TTL %s)", time.Since(begun).Round(100*time.Millisecond), ttl)
}
