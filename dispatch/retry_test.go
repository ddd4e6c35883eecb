package dispatch_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/dispatch"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/internal/metricstest"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/gini"
	"github.com/ingest-dev/ingest/vendors/gini/ginisim"
)

// retry publishes the retried event of round n, as the retry API does.
func (r *rig) retry(docID, vendor string, round int) {
	r.t.Helper()
	ev, err := events.NewEvent(events.Retried, events.VendorStepID(docID, events.Retried, vendor, round), "/api", docID, time.Now(),
		events.RetriedData{DocumentID: docID, Vendor: vendor, Round: round, RequestedAt: time.Now(), RequestedBy: "test"})
	if err != nil {
		r.t.Fatal(err)
	}
	subject, _ := r.bus.Names().Subject(events.Retried, vendor)
	if _, _, err := r.bus.Record(context.Background(), subject, ev); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) waitSlot(id, vendor string, round int, want events.Status) events.Document {
	r.t.Helper()
	var doc events.Document
	eventstest.WaitFor(r.t, 20*time.Second, "the vendor slot's round to be "+string(want), func() bool {
		var err error
		doc, err = r.bus.States().Get(context.Background(), id)
		vs := doc.Vendors[vendor]
		return err == nil && vs != nil && vs.Round == round && vs.Status == want
	})
	return doc
}

// The real Gini client against its simulator, which fails the first upload of each document: the
// retried round submits the document again, under the round's own tag, and completes; round 0's
// failure stays in the record, and a repeated or stale retried event submits nothing.
func TestRetriedRoundAgainstGiniSimulator(t *testing.T) {
	sim := ginisim.New(ginisim.Config{ClientID: "id", ClientSecret: "secret", PendingPolls: 1, FailFirstUploads: true})
	ts := httptest.NewServer(sim)
	defer ts.Close()
	client, err := gini.New(gini.Config{BaseURL: ts.URL, ClientID: "id", ClientSecret: "secret", UserIdentifier: "test"})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, client)
	d := r.dispatcher(all, nil)
	r.poller(time.Hour)
	st := r.receive("scan.pdf", pdf("retry me"))
	doc := r.waitSlot(st.DocumentID, "gini", 0, events.StatusFailed)
	if doc.Status != events.StatusFailed {
		t.Fatalf("document %s after round 0 failed", doc.Status)
	}
	firstRef := doc.Vendors["gini"].Ref

	r.retry(st.DocumentID, "gini", 1)
	r.retry(st.DocumentID, "gini", 1) // a repeated request for the same round
	doc = r.waitSlot(st.DocumentID, "gini", 1, events.StatusCompleted)
	if doc.Status != events.StatusCompleted || doc.Vendors["gini"].Ref == firstRef || doc.Vendors["gini"].Error != "" {
		t.Fatalf("document %s, slot %+v (round 0's ref %s)", doc.Status, doc.Vendors["gini"], firstRef)
	}
	// What the status API adds is of the round the state shows: round 1's one attempt.
	enriched := doc
	d.Enrich(context.Background(), &enriched)
	if g := enriched.Vendors["gini"]; g.Attempts != 1 || g.LastError != "" || g.Round != 1 {
		t.Fatalf("enriched slot %+v", g)
	}
	r.retry(st.DocumentID, "gini", 1) // stale: the round is over
	if n := metricstest.Counter(t, r.reg, "ingest_dispatch_retries_total", map[string]string{"vendor": "gini"}); n != 1 {
		t.Errorf("ingest_dispatch_retries_total{vendor=gini} = %v, want 1 (one round taken up)", n)
	}
	uploads := sim.Ledger.All()
	if len(uploads) != 2 || sim.Ledger.Count(st.SHA256) != 2 {
		t.Fatalf("Gini has %d uploads, want 2 (one per round): %+v", len(uploads), uploads)
	}
	// Each round's upload carries its own round's tag, and only that.
	if _, ok := vendors.TaggedAttempt(st.DocumentID, uploads[0].Filename); !ok {
		t.Errorf("round 0 upload %q lacks the document's tag", uploads[0].Filename)
	}
	if _, ok := vendors.TaggedAttempt(st.DocumentID+".r1", uploads[1].Filename); !ok || uploads[1].Ref != doc.Vendors["gini"].Ref {
		t.Errorf("round 1 upload %+v lacks round 1's tag or is not the slot's job", uploads[1])
	}
	if _, ok := vendors.TaggedAttempt(st.DocumentID, uploads[1].Filename); ok {
		t.Errorf("round 1 upload %q carries round 0's tag", uploads[1].Filename)
	}
	ids := map[string]int{}
	for _, ev := range r.eventsOf(st.DocumentID) {
		ids[ev.ID]++
		if ev.Kind() == events.Completed {
			var cd events.CompletedData
			_ = ev.DecodeData(&cd)
			if cd.Round != 1 || cd.VendorRef != doc.Vendors["gini"].Ref {
				t.Errorf("completed %+v", cd)
			}
		}
	}
	id := st.DocumentID
	want := []string{id + ".received", id + ".submitted.gini", id + ".failed.gini", id + ".retried.gini.r1", id + ".submitted.gini.r1", id + ".completed.gini.r1"}
	for _, id := range want {
		if ids[id] != 1 {
			t.Errorf("event %s %d times", id, ids[id])
		}
	}
	if len(ids) != len(want) {
		t.Errorf("events %v, want %v", ids, want)
	}
}

// untimedReconciler looks through every job the vendor has, whatever its age (as DocuMine's
// file list does): only the tag tells one round's job from another's.
type untimedReconciler struct{ *fakeVendor }

func (u untimedReconciler) Find(_ context.Context, doc vendors.Document, _ time.Time) (vendors.Lookup, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := vendors.Matcher{DocID: doc.ID}
	for ref, name := range u.names {
		m.Offer(ref, name)
	}
	return m.Lookup(true, ""), nil
}

// A dispatcher killed in the middle of a retried round's upload: the next one finds the round's
// own job by its tag (never round 0's failed job of the same document), and nothing is uploaded
// a third time.
func TestInterruptedRetryIsReconciledToItsOwnRound(t *testing.T) {
	fake := newFake("allspark")
	fake.failRef = true
	v := untimedReconciler{fake}
	r := newRig(t, v)
	rules := []dispatch.Rule{{Name: "d", Vendors: []string{"allspark"}}}
	d1 := r.dispatcher(rules, nil)
	r.poller(time.Hour)
	st := r.receive("case.pdf", pdf("retried, killed"))
	r.waitSlot(st.DocumentID, "allspark", 0, events.StatusFailed)

	fake.mu.Lock()
	fake.failRef, fake.hang = false, make(chan struct{})
	fake.mu.Unlock()
	r.retry(st.DocumentID, "allspark", 1)
	eventstest.WaitFor(t, 10*time.Second, "round 1's upload to reach the vendor", func() bool { return fake.uploadsOf(st.SHA256) == 2 })
	d1.kill() // mid-call
	fake.mu.Lock()
	fake.hang = nil
	fake.mu.Unlock()

	r.dispatcher(rules, nil)
	doc := r.waitSlot(st.DocumentID, "allspark", 1, events.StatusCompleted)
	if n := fake.uploadsOf(st.SHA256); n != 2 {
		t.Fatalf("uploaded %d times, want one per round", n)
	}
	if ref := doc.Vendors["allspark"].Ref; ref != "allspark-2" {
		t.Fatalf("round 1 was given job %s, want its own allspark-2 (allspark-1 is round 0's)", ref)
	}
	var sd events.SubmittedData
	for _, ev := range r.eventsOf(st.DocumentID) {
		if ev.ID == events.VendorStepID(st.DocumentID, events.Submitted, "allspark", 1) {
			_ = ev.DecodeData(&sd)
		}
	}
	if !sd.Reconciled || sd.Round != 1 || sd.VendorRef != "allspark-2" {
		t.Fatalf("round 1 submitted %+v", sd)
	}
	if !strings.Contains(fake.names["allspark-2"], vendors.TagPrefix(st.DocumentID+".r1")) {
		t.Fatalf("round 1 job named %q", fake.names["allspark-2"])
	}
}
