package events_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
)

func publish(t *testing.T, b *events.Bus, k events.Kind, qualifier, id, doc string, at time.Time, data any) {
	t.Helper()
	subject, err := b.Names().Subject(k, qualifier)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.NewEvent(k, id, "/test", doc, at, data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctxT(t), subject, ev); err != nil {
		t.Fatal(err)
	}
}

// ScanBack pages rejected events newest first across many other events (several windows back),
// never returning an event twice or one at or after its bound.
func TestScanBack(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		b := eventstest.Bus(t, nc)
		now := time.Now()
		var want []string // rejected ids, oldest first
		for i := range 3000 {
			doc := fmt.Sprintf("doc-%04d", i)
			if i%500 == 7 || i > 2995 {
				id := doc + ".rejected"
				publish(t, b, events.Rejected, "imap", id, doc, now, events.RejectedData{DocumentID: doc, Reason: "malformed"})
				want = append(want, id)
				continue
			}
			publish(t, b, events.Received, "http", doc+".received", doc, now, events.ReceivedData{DocumentID: doc})
		}
		filter := b.Names().KindSubjects(events.Rejected)
		var got []string
		before := uint64(0)
		for page := 0; ; page++ {
			evs, err := b.ScanBack(ctxT(t), filter, before, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if before != 0 && ev.Sequence >= before {
					t.Fatalf("page %d: sequence %d not before %d", page, ev.Sequence, before)
				}
				got = append(got, ev.ID)
				before = ev.Sequence
			}
			if len(evs) < 3 {
				break
			}
		}
		if len(got) != len(want) {
			t.Fatalf("got %d rejected events %v, want %d", len(got), got, len(want))
		}
		for i := range got {
			if got[i] != want[len(want)-1-i] {
				t.Fatalf("event %d is %s, want %s (newest first)", i, got[i], want[len(want)-1-i])
			}
		}
		if evs, err := b.ScanBack(ctxT(t), b.Names().KindSubjects(events.Failed), 0, 10); err != nil || len(evs) != 0 {
			t.Fatalf("no failed events: %v %v", evs, err)
		}
	})
}

// FindEvent finds an event by id near its time among others on the same subject, or at its
// sequence when the history knows it, and says when the stream does not hold it.
func TestFindEvent(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		b := eventstest.Bus(t, nc)
		now := time.Now()
		for i := range 50 {
			doc := fmt.Sprintf("doc-%02d", i)
			publish(t, b, events.Completed, "gini", doc+".completed.gini", doc, now,
				events.CompletedData{DocumentID: doc, Vendor: "gini", VendorRef: "ref-" + doc, CompletedAt: now})
		}
		subject, _ := b.Names().Subject(events.Completed, "gini")
		const id = "doc-31.completed.gini"
		ev, err := b.FindEvent(ctxT(t), subject, events.HistoryEntry{EventID: id, Time: now})
		if err != nil {
			t.Fatal(err)
		}
		var cd events.CompletedData
		if err := ev.DecodeData(&cd); err != nil || cd.VendorRef != "ref-doc-31" || ev.Sequence == 0 {
			t.Fatalf("found %+v %+v %v", ev, cd, err)
		}
		seq, other := ev.Sequence, ev.Sequence+1 // other: doc-32's event
		for _, c := range []struct {
			name string
			h    events.HistoryEntry
		}{
			// At its sequence, whatever the time says (no scan would find it two hours off).
			{"by sequence", events.HistoryEntry{EventID: id, Time: now.Add(-2 * time.Hour), Seq: seq}},
			// Another event at the sequence given (a stream made anew): found by its time.
			{"another event there", events.HistoryEntry{EventID: id, Time: now, Seq: other}},
			{"past the stream's end", events.HistoryEntry{EventID: id, Time: now, Seq: seq + 1000}},
		} {
			ev, err := b.FindEvent(ctxT(t), subject, c.h)
			if err != nil || ev.ID != id || ev.Sequence != seq {
				t.Errorf("%s: found %s at %d, %v", c.name, ev.ID, ev.Sequence, err)
			}
		}
		for _, c := range []struct {
			subject string
			h       events.HistoryEntry
		}{
			{subject, events.HistoryEntry{EventID: "doc-99.completed.gini", Time: now}}, // never published
			{subject, events.HistoryEntry{EventID: id, Time: now.Add(-2 * time.Hour)}},  // published long after the time given
			{subject, events.HistoryEntry{EventID: id, Time: now.Add(-2 * time.Hour), Seq: other}},
			{b.Names().KindSubjects(events.Failed), events.HistoryEntry{EventID: id, Time: now}},
			{b.Names().KindSubjects(events.Failed), events.HistoryEntry{EventID: id, Time: now, Seq: seq}}, // not on that subject
		} {
			if _, err := b.FindEvent(ctxT(t), c.subject, c.h); !errors.Is(err, events.ErrEventNotFound) {
				t.Errorf("%s on %s near %s at %d: %v, want ErrEventNotFound", c.h.EventID, c.subject, c.h.Time, c.h.Seq, err)
			}
		}
	})
}
