package docindex_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/docindex"
	"github.com/ingest-dev/ingest/events"
)

// fill publishes document events until there are at least nEvents of them and nDocs documents:
// every document received (from one of 3 sources, 4 routes, with mail-like metadata), most
// submitted to one of 4 vendors, and most of those completed or failed. Published asynchronously:
// this is setup, not what is measured.
func fill(b *testing.B, f *fixture, nDocs, nEvents int) {
	b.Helper()
	vendors := []string{"gini", "laigo", "cradl", "allspark"}
	sources := []events.SourceRef{{Kind: "imap", Name: "invoices"}, {Kind: "webdav", Name: "share"}, {Kind: "http", Name: "api"}}
	s := &sender{b: b, f: f}
	nev := 0
	for i := 0; i < nDocs || nev < nEvents; i++ {
		id := uuid.Must(uuid.NewV7()).String()
		at := f.base.Add(time.Duration(i) * time.Second)
		src, v := sources[i%3], vendors[i%4]
		s.received(i, id, at, src, v)
		nev++
		if i%10 < 8 {
			s.send("submitted", v, id, at.Add(time.Second), map[string]any{"document_id": id, "vendor": v, "vendor_ref": "r" + id})
			nev++
		}
		switch i % 10 {
		case 0, 1, 2, 3, 4, 5:
			s.send("completed", v, id, at.Add(2*time.Second), map[string]any{"document_id": id, "vendor": v, "vendor_ref": "r" + id})
			nev++
		case 6:
			s.send("failed", v, id, at.Add(2*time.Second), map[string]any{"document_id": id, "vendor": v, "error": "refused"})
			nev++
		}
	}
	s.flush()
}

// sender publishes events asynchronously (setup, not what is measured), waiting for the
// acknowledgements every 2,000 and at flush; the fixture's last sequence follows.
type sender struct {
	b    *testing.B
	f    *fixture
	acks []jetstream.PubAckFuture
}

func (s *sender) send(k events.Kind, q, id string, at time.Time, data any) {
	subject, ev := s.f.event(k, q, id, at, data)
	body, err := json.Marshal(ev)
	if err != nil {
		s.b.Fatal(err)
	}
	a, err := s.f.bus.JetStream().PublishAsync(subject, body)
	if err != nil {
		s.b.Fatal(err)
	}
	if s.acks = append(s.acks, a); len(s.acks) >= 2000 {
		s.flush()
	}
}

// received sends document i's received event, with mail-like metadata.
func (s *sender) received(i int, id string, at time.Time, src events.SourceRef, vendor string) {
	s.send("received", src.Kind, id, at, map[string]any{
		"document_id": id, "source": src, "filename": fmt.Sprintf("invoice-%06d.pdf", i), "content_type": "application/pdf",
		"size": 1000 + i, "received_at": at, "route": fmt.Sprintf("route%d", i%4), "vendors": []string{vendor},
		"metadata": map[string]string{"subject": fmt.Sprintf("Invoice %d from customer %d", i, i%997), "from": fmt.Sprintf("billing%d@example.com", i%101)},
	})
}

func (s *sender) flush() {
	s.f.last = max(s.f.last, wait(s.b, context.Background(), s.f.bus.JetStream(), s.acks))
	s.acks = s.acks[:0]
}

func wait(b *testing.B, ctx context.Context, js jetstream.JetStream, acks []jetstream.PubAckFuture) uint64 {
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
	case <-time.After(time.Minute):
		b.Fatal("publishing took over a minute")
	}
	var last uint64
	for _, a := range acks {
		select {
		case pa := <-a.Ok():
			last = max(last, pa.Sequence)
		case err := <-a.Err():
			b.Fatal(err)
		}
	}
	return last
}

// BenchmarkLiveSteps: an index that is caught up takes documents' later steps as they come, each
// in a later batch than the document's row was written in: 20,000 documents in waves (all of a
// wave received, then all submitted, then all completed); the submitted and completed steps are
// measured. A wave of 1,000 is about what is in flight at a few hundred documents a second; one
// wave of 20,000 is a backlog. Run with -benchtime=1x.
func BenchmarkLiveSteps(b *testing.B) {
	const n = 20000
	for _, wave := range []int{1000, n} {
		b.Run(fmt.Sprintf("wave=%d", wave), func(b *testing.B) {
			b.StopTimer()
			for range b.N {
				f := newFixture(b)
				ix := f.open(filepath.Join(b.TempDir(), "documents.db"))
				stop := run(b, ix)
				s := &sender{b: b, f: f}
				var took time.Duration
				for first := 0; first < n; first += wave {
					ids := make([]string, wave)
					for i := range ids {
						ids[i] = uuid.Must(uuid.NewV7()).String()
						s.received(first+i, ids[i], f.base.Add(time.Duration(first+i)*time.Second), events.SourceRef{Kind: "http", Name: "api"}, "gini")
					}
					s.flush()
					f.caughtUp(ix)
					b.StartTimer()
					start := time.Now()
					for _, k := range []events.Kind{events.Submitted, events.Completed} {
						for i, id := range ids {
							s.send(k, "gini", id, f.base.Add(time.Duration(first+i)*time.Second+time.Second), map[string]any{"document_id": id, "vendor": "gini", "vendor_ref": "r" + id})
						}
						s.flush()
						f.caughtUp(ix)
					}
					took += time.Since(start)
					b.StopTimer()
				}
				b.ReportMetric(2*n/took.Seconds(), "events/s")
				stop()
			}
		})
	}
}

// BenchmarkCatchUp: a fresh index reading 100,000 events from the stream, batch after batch.
// Run with -benchtime=1x: each iteration is a whole catch-up.
func BenchmarkCatchUp(b *testing.B) {
	f := newFixture(b)
	fill(b, f, 0, 100_000)
	st, err := f.bus.JetStream().Stream(context.Background(), f.bus.Names().Stream())
	if err != nil {
		b.Fatal(err)
	}
	n := st.CachedInfo().State.Msgs
	var took time.Duration
	for b.Loop() {
		start := time.Now()
		ix := f.open(filepath.Join(b.TempDir(), "documents.db"))
		stop := run(b, ix)
		f.caughtUp(ix)
		took += time.Since(start)
		stop()
	}
	b.ReportMetric(float64(n)*float64(b.N)/took.Seconds(), "events/s")
	b.ReportMetric(float64(n), "events")
}

// BenchmarkListPage: pages of 50 from an index of 100,000 documents, with filters taking turns
// (none, status, vendor, source, route, time range, q, a combination, a next page). Run with
// -benchtime=1000x; p99-ms is the 99th percentile of one page's time (with its counts).
func BenchmarkListPage(b *testing.B) {
	f := newFixture(b)
	fill(b, f, 100_000, 0)
	ix := f.open(filepath.Join(b.TempDir(), "documents.db"))
	run(b, ix)
	f.caughtUp(ix)
	ctx := context.Background()
	first, err := ix.List(ctx, docindex.Query{Limit: 50})
	if err != nil || first.NextCursor == nil {
		b.Fatal(err)
	}
	mid := f.base.Add(50_000 * time.Second)
	queries := []docindex.Query{
		{},
		{Status: events.StatusFailed},
		{Vendor: "laigo"},
		{SourceKind: "imap", SourceName: "invoices"},
		{Route: "route2"},
		{Since: mid, Until: mid.Add(2 * time.Hour)},
		{Q: "customer 421"},
		{Q: "billing7@"},
		{Status: events.StatusCompleted, Vendor: "gini", Since: mid},
		{Cursor: *first.NextCursor},
	}
	var took []time.Duration
	perQuery := make([]time.Duration, len(queries))
	i := 0
	for b.Loop() {
		q := queries[i%len(queries)]
		q.Limit = 50
		i++
		start := time.Now()
		if _, err := ix.List(ctx, q); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		perQuery[(i-1)%len(queries)] = max(perQuery[(i-1)%len(queries)], time.Since(start))
	}
	for k, d := range perQuery {
		b.Logf("slowest of query %d (%+v): %s", k, queries[k], d)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
}
