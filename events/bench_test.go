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
		if _, _, err := bus.States().Apply(ctx, ev, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// A vendor step recorded the way the dispatcher does (Record: read the state, publish, write it)
// and the way the poller does after reading the state for its own decision (RecordOn: the
// state is not read again).
func BenchmarkRecordStep(b *testing.B) {
	for _, onSnapshot := range []bool{false, true} {
		name := "Record"
		if onSnapshot {
			name = "ReadThenRecordOn"
		}
		b.Run(name, func(b *testing.B) {
			bus := eventstest.Bus(b, eventstest.Embedded(b))
			recvSubj, _ := bus.Names().Subject(events.Received, "http")
			subj, _ := bus.Names().Subject(events.Submitted, "gini")
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				id := fmt.Sprintf("doc-%d", i)
				recv, _ := events.NewEvent(events.Received, id+".received", "/s", id, time.Now(), events.ReceivedData{DocumentID: id})
				if _, err := bus.RecordNew(ctx, recvSubj, recv); err != nil {
					b.Fatal(err)
				}
				ev, _ := events.NewEvent(events.Submitted, id+".submitted.gini", "/vendors/gini", id, time.Now(),
					events.SubmittedData{DocumentID: id, Vendor: "gini", VendorRef: "g-1"})
				b.StartTimer()
				var err error
				if onSnapshot {
					var snap events.Snapshot
					if snap, err = bus.States().Read(ctx, id); err == nil {
						_, _, err = bus.RecordOn(ctx, subj, ev, snap)
					}
				} else {
					if _, err = bus.States().Get(ctx, id); err == nil {
						_, _, err = bus.Record(ctx, subj, ev)
					}
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
