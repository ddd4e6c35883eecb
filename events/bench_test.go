package events_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
)

func BenchmarkPublishReceived(b *testing.B) {
	bus := eventstest.Bus(b, eventstest.Embedded(b))
	subj, _ := bus.Names().Subject(events.Received, "http")
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("doc-%d", i)
		ev, _ := events.NewEvent(events.Received, id+".received", "/sources/http/api", id, time.Now(), events.ReceivedData{DocumentID: id, Filename: "a.pdf"})
		if _, err := bus.Publish(ctx, subj, ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlobPut100KiB(b *testing.B) {
	bus := eventstest.Bus(b, eventstest.Embedded(b))
	data := bytes.Repeat([]byte("x"), 100<<10)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		i++
		if _, err := bus.Blobs().Put(ctx, fmt.Sprintf("documents/%d", i), bytes.NewReader(data), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStateApply(b *testing.B) {
	bus := eventstest.Bus(b, eventstest.Embedded(b))
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("doc-%d", i)
		ev, _ := events.NewEvent(events.Received, id+".received", "/s", id, time.Now(), events.ReceivedData{DocumentID: id})
		if _, _, err := bus.States().Apply(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}
