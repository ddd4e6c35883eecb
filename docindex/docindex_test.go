package docindex_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/ingest-dev/ingest/docindex"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
)

// fixture is a bus with a stream the tests publish document events to.
type fixture struct {
	t    testing.TB
	bus  *events.Bus
	last uint64 // stream sequence of the last event published
	base time.Time
}

func newFixture(t testing.TB) *fixture { return newFixtureOn(t, eventstest.Embedded(t)) }

func newFixtureOn(t testing.TB, nc *nats.Conn) *fixture {
	return &fixture{t: t, bus: eventstest.Bus(t, nc), base: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
}

// doc describes a document the tests make.
type doc struct {
	kind, name, filename, route string
	meta                        map[string]string
	chosen                      []string
	minute                      int               // received base + minute
	vendors                     map[string]string // vendor → submitted/completed/failed (each step up to it)
}

// publish sends ev to the stream and folds it into the state store, as producers do.
func (f *fixture) publish(subject string, ev events.Event) {
	f.t.Helper()
	ctx := context.Background()
	ack, err := f.bus.Publish(ctx, subject, ev)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, _, err := f.bus.States().Apply(ctx, ev, ack.Sequence); err != nil {
		f.t.Fatal(err)
	}
	f.last = ack.Sequence
}

func (f *fixture) event(k events.Kind, qualifier, id string, at time.Time, data any) (string, events.Event) {
	f.t.Helper()
	subject, err := f.bus.Names().Subject(k, qualifier)
	if err != nil {
		f.t.Fatal(err)
	}
	ev, err := events.NewEvent(k, string(k)+"-"+qualifier+"-"+id, "/test", id, at, data)
	if err != nil {
		f.t.Fatal(err)
	}
	return subject, ev
}

// add publishes a document's events and returns its id.
func (f *fixture) add(d doc) string {
	f.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	at := f.base.Add(time.Duration(d.minute) * time.Minute)
	f.publish(f.event(events.Received, d.kind, id, at, events.ReceivedData{
		DocumentID: id, Source: events.SourceRef{Kind: d.kind, Name: d.name}, Filename: d.filename,
		ContentType: "application/pdf", Size: 100, Metadata: d.meta, Vendors: d.chosen, Route: d.route, ReceivedAt: at,
	}))
	for _, v := range slices.Sorted(maps.Keys(d.vendors)) {
		f.publish(f.event(events.Submitted, v, id, at.Add(time.Second), events.SubmittedData{DocumentID: id, Vendor: v, VendorRef: "r-" + id}))
		switch d.vendors[v] {
		case "completed":
			f.publish(f.event(events.Completed, v, id, at.Add(2*time.Second), events.CompletedData{DocumentID: id, Vendor: v, VendorRef: "r-" + id}))
		case "failed":
			f.publish(f.event(events.Failed, v, id, at.Add(2*time.Second), events.FailedData{DocumentID: id, Vendor: v, Error: "no"}))
		}
	}
	return id
}

// open opens an index on path over the fixture's bus.
func (f *fixture) open(path string) *docindex.Index {
	f.t.Helper()
	ix, err := docindex.Open(context.Background(), docindex.Config{Bus: f.bus, Path: path})
	if err != nil {
		f.t.Fatal(err)
	}
	return ix
}

// run runs ix until the returned stop is called (or the test ends) and closes it then.
func run(t testing.TB, ix *docindex.Index) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ix.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if err := ix.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// caughtUp waits until ix has applied everything the fixture published.
func (f *fixture) caughtUp(ix *docindex.Index) {
	f.t.Helper()
	eventstest.WaitFor(f.t, 2*time.Minute, "the index to catch up", func() bool {
		p := ix.Progress()
		return p.Sequence >= f.last && p.CaughtUp
	})
}

func ids(t testing.TB, p docindex.Page) []string {
	t.Helper()
	out := []string{}
	for _, raw := range p.Documents {
		var d events.Document
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d.ID)
	}
	return out
}

func list(t testing.TB, ix *docindex.Index, q docindex.Query) docindex.Page {
	t.Helper()
	p, err := ix.List(context.Background(), q)
	if err != nil {
		t.Fatalf("list %+v: %v", q, err)
	}
	return p
}

// corpus makes a set of documents with known attributes; names maps a label to its id.
func corpus(f *fixture) map[string]string {
	n := map[string]string{}
	n["mail-gini-done"] = f.add(doc{kind: "imap", name: "invoices", filename: "Invoice-2025-001.pdf", minute: 1,
		meta:   map[string]string{"subject": "March invoice from ACME", "from": "billing@acme.example"},
		chosen: []string{"gini"}, route: "mail", vendors: map[string]string{"gini": "completed"}})
	n["mail-laigo-fail"] = f.add(doc{kind: "imap", name: "receipts", filename: "scan.jpg", minute: 2,
		meta: map[string]string{"subject": "Receipt"}, chosen: []string{"laigo"}, route: "mail", vendors: map[string]string{"laigo": "failed"}})
	n["dav-two"] = f.add(doc{kind: "webdav", name: "share", filename: "contract.pdf", minute: 3,
		meta: map[string]string{"path": "/legal/contract.pdf"}, chosen: []string{"gini", "laigo"}, route: "legal",
		vendors: map[string]string{"gini": "completed", "laigo": "submitted"}})
	n["http-new"] = f.add(doc{kind: "http", name: "api", filename: "upload.pdf", minute: 4,
		meta: map[string]string{"customer": "o'Brien; DROP TABLE docs;--"}, chosen: []string{"cradl"}})
	n["http-plain"] = f.add(doc{kind: "http", name: "api", filename: "notes.txt", minute: 5})
	return n
}

func TestListFiltersAndCounts(t *testing.T) {
	f := newFixture(t)
	n := corpus(f)
	ix := f.open(filepath.Join(t.TempDir(), "documents.db"))
	run(t, ix)
	f.caughtUp(ix)
	at := func(m int) time.Time { return f.base.Add(time.Duration(m) * time.Minute) }
	for _, tc := range []struct {
		name   string
		q      docindex.Query
		want   []string
		status map[string]int64
		vendor map[string]int64
	}{
		{"all, newest first", docindex.Query{}, []string{"http-plain", "http-new", "dav-two", "mail-laigo-fail", "mail-gini-done"},
			map[string]int64{"received": 2, "submitted": 1, "failed": 1, "completed": 1},
			map[string]int64{"gini": 2, "laigo": 2, "cradl": 1}},
		{"status", docindex.Query{Status: events.StatusCompleted}, []string{"mail-gini-done"},
			map[string]int64{"completed": 1}, map[string]int64{"gini": 1}},
		{"vendor", docindex.Query{Vendor: "laigo"}, []string{"dav-two", "mail-laigo-fail"},
			map[string]int64{"submitted": 1, "failed": 1}, map[string]int64{"gini": 1, "laigo": 2}},
		{"vendor chosen, not yet submitted", docindex.Query{Vendor: "cradl"}, []string{"http-new"},
			map[string]int64{"received": 1}, map[string]int64{"cradl": 1}},
		{"source kind", docindex.Query{SourceKind: "imap"}, []string{"mail-laigo-fail", "mail-gini-done"},
			map[string]int64{"failed": 1, "completed": 1}, map[string]int64{"gini": 1, "laigo": 1}},
		{"source kind and name", docindex.Query{SourceKind: "imap", SourceName: "receipts"}, []string{"mail-laigo-fail"},
			map[string]int64{"failed": 1}, map[string]int64{"laigo": 1}},
		{"route", docindex.Query{Route: "legal"}, []string{"dav-two"},
			map[string]int64{"submitted": 1}, map[string]int64{"gini": 1, "laigo": 1}},
		{"time range", docindex.Query{Since: at(2), Until: at(4)}, []string{"dav-two", "mail-laigo-fail"},
			map[string]int64{"submitted": 1, "failed": 1}, map[string]int64{"gini": 1, "laigo": 2}},
		{"q in filename, any case", docindex.Query{Q: "invoice"}, []string{"mail-gini-done"},
			map[string]int64{"completed": 1}, map[string]int64{"gini": 1}},
		{"q in metadata, two words", docindex.Query{Q: "acme march"}, []string{"mail-gini-done"},
			map[string]int64{"completed": 1}, map[string]int64{"gini": 1}},
		{"q substring", docindex.Query{Q: ".pdf"}, []string{"http-new", "dav-two", "mail-gini-done"},
			map[string]int64{"received": 1, "submitted": 1, "completed": 1}, map[string]int64{"gini": 2, "laigo": 1, "cradl": 1}},
		{"q and a time range", docindex.Query{Q: ".pdf", Since: at(3)}, []string{"http-new", "dav-two"},
			map[string]int64{"received": 1, "submitted": 1}, map[string]int64{"gini": 1, "laigo": 1, "cradl": 1}},
		{"q that looks like SQL", docindex.Query{Q: `o'Brien; DROP TABLE docs;--`}, []string{"http-new"},
			map[string]int64{"received": 1}, map[string]int64{"cradl": 1}},
		{"q with FTS syntax", docindex.Query{Q: `"NEAR(a b)" OR * %_`}, []string{},
			map[string]int64{}, map[string]int64{}},
		{"filters combine", docindex.Query{SourceKind: "imap", Vendor: "gini", Status: events.StatusCompleted}, []string{"mail-gini-done"},
			map[string]int64{"completed": 1}, map[string]int64{"gini": 1}},
		{"nothing matches", docindex.Query{Vendor: "allspark"}, []string{}, map[string]int64{}, map[string]int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := list(t, ix, tc.q)
			want := []string{}
			for _, label := range tc.want {
				want = append(want, n[label])
			}
			if got := ids(t, p); !slices.Equal(got, want) {
				t.Errorf("documents %v, want %v (labels %v)", got, want, tc.want)
			}
			if fmt.Sprint(p.Counts.Status) != fmt.Sprint(tc.status) || fmt.Sprint(p.Counts.Vendor) != fmt.Sprint(tc.vendor) {
				t.Errorf("counts %v %v, want %v %v", p.Counts.Status, p.Counts.Vendor, tc.status, tc.vendor)
			}
			if p.NextCursor != nil {
				t.Errorf("next_cursor %q on the only page", *p.NextCursor)
			}
		})
	}
	// The index's document is the state store's, byte for byte once decoded.
	for _, id := range n {
		state, err := f.bus.States().Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		p := list(t, ix, docindex.Query{Q: ""})
		for _, raw := range p.Documents {
			var d events.Document
			_ = json.Unmarshal(raw, &d)
			if d.ID == id {
				a, _ := json.Marshal(state)
				b, _ := json.Marshal(d)
				if string(a) != string(b) {
					t.Errorf("index has\n%s\nstate has\n%s", b, a)
				}
			}
		}
	}
}

func TestCursorPages(t *testing.T) {
	f := newFixture(t)
	var want []string
	for i := range 7 {
		// Two documents per minute: the id breaks the tie.
		want = append(want, f.add(doc{kind: "http", name: "api", filename: "f.pdf", minute: i / 2}))
	}
	// Newest first, the later id first within a minute: UUIDv7 ids grow, so the reverse of making.
	slices.Reverse(want)
	ix := f.open(filepath.Join(t.TempDir(), "documents.db"))
	run(t, ix)
	f.caughtUp(ix)
	var got []string
	q := docindex.Query{Limit: 3}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		p := list(t, ix, q)
		got = append(got, ids(t, p)...)
		if p.Counts.Status["received"] != 7 {
			t.Errorf("counts %v: the whole set on every page", p.Counts.Status)
		}
		if p.NextCursor == nil {
			break
		}
		q.Cursor = *p.NextCursor
	}
	if !slices.Equal(got, want) {
		t.Errorf("pages gave %v, want %v", got, want)
	}
}

func TestRedeliveredEventChangesNothing(t *testing.T) {
	f := newFixture(t)
	id := f.add(doc{kind: "http", name: "api", filename: "a.pdf", chosen: []string{"gini"}, vendors: map[string]string{"gini": "completed"}})
	ix := f.open(filepath.Join(t.TempDir(), "documents.db"))
	run(t, ix)
	f.caughtUp(ix)
	before := list(t, ix, docindex.Query{})
	// The same submitted event again, past the duplicate window's reach (no message id): the
	// stream holds it twice.
	subject, ev := f.event(events.Submitted, "gini", id, f.base.Add(time.Second), events.SubmittedData{DocumentID: id, Vendor: "gini", VendorRef: "r-" + id})
	body, _ := json.Marshal(ev)
	ack, err := f.bus.JetStream().Publish(context.Background(), subject, body)
	if err != nil {
		t.Fatal(err)
	}
	f.last = ack.Sequence
	f.caughtUp(ix)
	after := list(t, ix, docindex.Query{})
	before.Index, after.Index = docindex.Progress{}, docindex.Progress{} // the position moves on, of course
	a, _ := json.Marshal(before)
	b, _ := json.Marshal(after)
	if string(a) != string(b) {
		t.Errorf("a repeated event changed the list:\n%s\n%s", a, b)
	}
}

func TestRestartResumesWhereItStopped(t *testing.T) { restartResumes(t, newFixture(t)) }

// On the NATS 2.9 server of the development machines and CI: the ordered consumer starting at a
// sequence works there too.
func TestRestartResumesExternalNATS(t *testing.T) {
	restartResumes(t, newFixtureOn(t, eventstest.External(t)))
}

func restartResumes(t *testing.T, f *fixture) {
	for i := range 5 {
		f.add(doc{kind: "http", name: "api", filename: "a.pdf", minute: i})
	}
	path := filepath.Join(t.TempDir(), "documents.db")
	ix := f.open(path)
	stop := run(t, ix)
	f.caughtUp(ix)
	stop()
	seq := f.last
	var later []string
	for i := range 3 {
		later = append(later, f.add(doc{kind: "imap", name: "box", filename: "b.pdf", minute: 10 + i,
			chosen: []string{"gini"}, vendors: map[string]string{"gini": "completed"}}))
	}
	ix = f.open(path)
	if got := ix.Progress().Sequence; got != seq {
		t.Fatalf("reopened at sequence %d, stored %d", got, seq)
	}
	run(t, ix)
	f.caughtUp(ix)
	// 3 documents × received, submitted, completed: read exactly once each.
	if got := ix.Read(); got != 9 {
		t.Errorf("read %d events after the restart, want the 9 new ones", got)
	}
	p := list(t, ix, docindex.Query{})
	if len(p.Documents) != 8 || p.Counts.Status["completed"] != 3 || p.Counts.Status["received"] != 5 {
		t.Errorf("after restart: %d documents, counts %v", len(p.Documents), p.Counts.Status)
	}
}

func TestRebuildsWhenDeletedOrOfAnotherVersion(t *testing.T) {
	f := newFixture(t)
	for i := range 4 {
		f.add(doc{kind: "http", name: "api", filename: "a.pdf", minute: i, chosen: []string{"gini"}, vendors: map[string]string{"gini": "failed"}})
	}
	path := filepath.Join(t.TempDir(), "documents.db")
	ix := f.open(path)
	stop := run(t, ix)
	f.caughtUp(ix)
	want := list(t, ix, docindex.Query{})
	stop()
	check := func(how string) {
		t.Helper()
		ix := f.open(path)
		stop := run(t, ix)
		f.caughtUp(ix)
		got := list(t, ix, docindex.Query{})
		a, _ := json.Marshal(want.Documents)
		b, _ := json.Marshal(got.Documents)
		if string(a) != string(b) || fmt.Sprint(got.Counts) != fmt.Sprint(want.Counts) {
			t.Errorf("%s: rebuilt index differs:\n%s\n%s", how, b, a)
		}
		stop()
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(path + suffix)
	}
	check("deleted")
	// Another schema version: an older or newer binary's file.
	db := f.open(path)
	_ = db.Close()
	setUserVersion(t, path, 99)
	check("other version")
}

func TestListWhileBehind(t *testing.T) {
	f := newFixture(t)
	f.add(doc{kind: "http", name: "api", filename: "a.pdf"})
	ix := f.open(filepath.Join(t.TempDir(), "documents.db"))
	t.Cleanup(func() { ix.Close() })
	// Not running: answered at once, from what it has, saying it is not caught up.
	p := list(t, ix, docindex.Query{})
	if len(p.Documents) != 0 || p.Index.CaughtUp {
		t.Errorf("before catching up: %d documents, index %+v", len(p.Documents), p.Index)
	}
}

func setUserVersion(t *testing.T, path string, v int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
		t.Fatal(err)
	}
}

// Counts come from aggregates (whole hours) and from the documents (the rest): whatever the
// split, they must be what the listed documents add up to.
func TestCountsMatchTheList(t *testing.T) {
	f := newFixture(t)
	outcomes := []string{"completed", "failed", "submitted", ""}
	vendors := []string{"gini", "laigo"}
	for i := range 24 {
		d := doc{kind: []string{"http", "imap"}[i%2], name: "src", filename: "f.pdf", minute: i * 25, route: []string{"a", "b", "c"}[i%3]}
		if o := outcomes[i%4]; o != "" {
			d.chosen = []string{vendors[i%2]}
			d.vendors = map[string]string{vendors[i%2]: o}
		}
		f.add(d)
	}
	ix := f.open(filepath.Join(t.TempDir(), "documents.db"))
	run(t, ix)
	f.caughtUp(ix)
	at := func(m int) time.Time { return f.base.Add(time.Duration(m) * time.Minute) }
	for _, q := range []docindex.Query{
		{Since: at(45), Until: at(255)}, // partial hours at both ends, whole ones between
		{Since: at(60), Until: at(180)}, // exactly whole hours
		{Since: at(100)},
		{Until: at(301)},
		{Since: at(20), Until: at(55)}, // within one hour
		{Since: at(45), Until: at(500), Status: events.StatusCompleted},
		{Since: at(45), Until: at(500), Vendor: "laigo", SourceKind: "imap"},
		{Since: at(45), Route: "b", Q: "f.pdf"},
	} {
		p := list(t, ix, docindex.Query{Since: q.Since, Until: q.Until, Status: q.Status, Vendor: q.Vendor,
			SourceKind: q.SourceKind, Route: q.Route, Q: q.Q, Limit: 500})
		want := docindex.Counts{Status: map[string]int64{}, Vendor: map[string]int64{}}
		for _, raw := range p.Documents {
			var d events.Document
			_ = json.Unmarshal(raw, &d)
			want.Status[string(d.Status)]++
			for _, v := range d.Chosen {
				want.Vendor[v]++
			}
		}
		if fmt.Sprint(p.Counts) != fmt.Sprint(want) {
			t.Errorf("%+v: counts %v, the %d documents listed add up to %v", q, p.Counts, len(p.Documents), want)
		}
		if len(p.Documents) == 0 {
			t.Errorf("%+v: nothing listed; the case tests nothing", q)
		}
	}
}

// A document's later events reach the index in a later batch than its first: its counts move
// from the old status to the new one (the aggregates of whole hours must still add up to the
// listed documents), however the batch groups them.
func TestCountsFollowLaterEvents(t *testing.T) {
	f := newFixture(t)
	ix := f.open(filepath.Join(t.TempDir(), "documents.db"))
	run(t, ix)
	ids := make([]string, 12)
	for i := range ids {
		ids[i] = f.add(doc{kind: "http", name: "api", filename: "f.pdf", minute: i * 20, chosen: []string{"gini"}})
	}
	f.caughtUp(ix)
	for i, id := range ids {
		at := f.base.Add(time.Duration(i*20)*time.Minute + time.Second)
		f.publish(f.event(events.Submitted, "gini", id, at, events.SubmittedData{DocumentID: id, Vendor: "gini", VendorRef: "r-" + id}))
		if i%3 != 0 {
			f.publish(f.event(events.Completed, "gini", id, at.Add(time.Second), events.CompletedData{DocumentID: id, Vendor: "gini", VendorRef: "r-" + id}))
		}
	}
	f.caughtUp(ix)
	p := list(t, ix, docindex.Query{Since: f.base, Until: f.base.Add(4 * time.Hour), Limit: 500})
	if got := fmt.Sprint(p.Counts.Status); got != "map[completed:8 submitted:4]" {
		t.Errorf("counts %s over whole hours, want completed 8, submitted 4 (none still received)", got)
	}
}

// Events the index never read are gone from the stream (aged out while the instance was down):
// it cannot catch up, so it starts over from what the stream holds.
func TestRebuildsWhenTheStreamMovedOn(t *testing.T) {
	f := newFixture(t)
	f.add(doc{kind: "http", name: "api", filename: "old.pdf"})
	path := filepath.Join(t.TempDir(), "documents.db")
	ix := f.open(path)
	stop := run(t, ix)
	f.caughtUp(ix)
	stop()
	f.add(doc{kind: "http", name: "api", filename: "missed.pdf", minute: 1})
	st, err := f.bus.JetStream().Stream(context.Background(), f.bus.Names().Stream())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	kept := f.add(doc{kind: "http", name: "api", filename: "kept.pdf", minute: 2})
	ix = f.open(path)
	run(t, ix)
	f.caughtUp(ix)
	if got := ids(t, list(t, ix, docindex.Query{})); !slices.Equal(got, []string{kept}) {
		t.Errorf("after the stream moved on the index lists %v, want only what the stream holds (%s)", got, kept)
	}
}

// A document whose first event reaches the index after a later one (a producer that crashed
// before its received event was projected, published again later) is listed by the source,
// route and time its received event gives, once that comes: a row's columns other than status
// and vendors are rewritten when they change.
func TestFirstEventArrivingLateMovesTheRow(t *testing.T) {
	f := newFixture(t)
	ix := f.open(filepath.Join(t.TempDir(), "documents.db"))
	run(t, ix)
	id := uuid.Must(uuid.NewV7()).String()
	at := f.base.Add(10 * time.Minute)
	f.publish(f.event(events.Submitted, "gini", id, at.Add(time.Minute), events.SubmittedData{DocumentID: id, Vendor: "gini", VendorRef: "r"}))
	f.caughtUp(ix)
	f.publish(f.event(events.Received, "webdav", id, at, events.ReceivedData{
		DocumentID: id, Source: events.SourceRef{Kind: "webdav", Name: "share"}, Filename: "late.pdf",
		ContentType: "application/pdf", Size: 1, Route: "legal", ReceivedAt: at, Vendors: []string{"gini"},
	}))
	f.caughtUp(ix)
	for _, q := range []docindex.Query{
		{SourceKind: "webdav", SourceName: "share"},
		{Route: "legal"},
		{Since: at, Until: at.Add(time.Second)},
		{Status: events.StatusSubmitted, Q: "late.pdf"},
	} {
		q.Limit = 10
		if got := ids(t, list(t, ix, q)); len(got) != 1 || got[0] != id {
			t.Errorf("%+v lists %v, want the document", q, got)
		}
	}
}
