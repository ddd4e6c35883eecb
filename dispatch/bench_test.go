package dispatch_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ingest-dev/ingest/dispatch"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/intake"
	"github.com/ingest-dev/ingest/vendors"
)

// BenchmarkReceivedToCompleted is the dispatch path of one 100 KiB document: from its received
// event to its completed event, through the dispatcher, the poller and an instant vendor in
// memory. Allocations include the embedded NATS server's.
func BenchmarkReceivedToCompleted(b *testing.B) {
	nc := eventstest.Embedded(b)
	bus := eventstest.Bus(b, nc)
	ctx := context.Background()
	v := newFake("gini")
	vs := map[string]vendors.Vendor{"gini": v}
	router, err := dispatch.NewRouter([]dispatch.Rule{{Name: "all", Vendors: []string{"gini"}}}, []string{"gini"})
	if err != nil {
		b.Fatal(err)
	}
	in, err := intake.New(intake.Config{Bus: bus, Route: router.Route})
	if err != nil {
		b.Fatal(err)
	}
	var completed atomic.Int64
	sub, err := nc.Subscribe(bus.Names().KindSubjects(events.Completed), func(*nats.Msg) { completed.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	data := bytes.Repeat([]byte("%PDF-1.4 benchmark "), 100<<10/19)

	b.StopTimer()
	for i := range b.N {
		id := intake.NewDocumentID()
		st, err := in.Stage(ctx, id, fmt.Sprintf("doc-%d.pdf", i), bytes.NewReader(data), 1<<30)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := in.Commit(ctx, st, intake.Origin{Source: events.SourceRef{Kind: "http", Name: "api"}, NewID: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.StartTimer()
	d, err := dispatch.NewDispatcher(ctx, dispatch.Config{Bus: bus, Vendors: vs, Router: router})
	if err != nil {
		b.Fatal(err)
	}
	p, err := dispatch.NewPoller(ctx, dispatch.PollConfig{Bus: bus, Vendors: vs,
		Settings: map[string]vendors.PollSettings{"gini": {Initial: time.Millisecond}}})
	if err != nil {
		b.Fatal(err)
	}
	before := nc.Stats()
	stopD, stopP := runUntil(b, d.Run), runUntil(b, p.Run)
	deadline := time.Now().Add(time.Duration(b.N)*100*time.Millisecond + 30*time.Second)
	for completed.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d documents completed before the deadline", completed.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	// Messages this client sent and received per document (requests, publishes, acks, deliveries):
	// the round trips that dispatch costs, which a change that adds one shows here.
	after := nc.Stats()
	b.ReportMetric(float64(after.OutMsgs-before.OutMsgs)/float64(b.N), "sent/doc")
	b.ReportMetric(float64(after.InMsgs-before.InMsgs)/float64(b.N), "received/doc")
	stopD()
	stopP()
}
