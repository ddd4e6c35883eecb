package events

import (
	"testing"
	"time"
)

func mustEvent(t *testing.T, k Kind, id, doc string, at time.Time, data any) Event {
	t.Helper()
	ev, err := NewEvent(k, id, "/test", doc, at, data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestDocumentStatusIsDerivedFromEvents(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recv := mustEvent(t, Received, "d.r", "d", t0, ReceivedData{DocumentID: "d", Filename: "a.pdf", Size: 9})
	sub := func(v string, n int) Event {
		return mustEvent(t, Submitted, "d.s."+v, "d", t0.Add(time.Duration(n)*time.Second), SubmittedData{Vendor: v, VendorRef: "ref-" + v})
	}
	done := func(v string, n int) Event {
		return mustEvent(t, Completed, "d.c."+v, "d", t0.Add(time.Duration(n)*time.Second), CompletedData{Vendor: v, VendorRef: "ref-" + v})
	}
	fail := func(v string, n int) Event {
		return mustEvent(t, Failed, "d.f."+v, "d", t0.Add(time.Duration(n)*time.Second), FailedData{Vendor: v, Error: "no credits"})
	}
	cases := []struct {
		name string
		evs  []Event
		want Status
	}{
		{"received only", []Event{recv}, StatusReceived},
		{"submitted", []Event{recv, sub("gini", 1)}, StatusSubmitted},
		{"completed", []Event{recv, sub("gini", 1), done("gini", 2)}, StatusCompleted},
		{"completed arrives before submitted", []Event{recv, done("gini", 2), sub("gini", 1)}, StatusCompleted},
		{"one vendor still working", []Event{recv, sub("gini", 1), done("gini", 2), sub("laigo", 3)}, StatusSubmitted},
		{"one failed, other done", []Event{recv, sub("gini", 1), done("gini", 2), sub("laigo", 3), fail("laigo", 4)}, StatusFailed},
		{"repeated events change nothing", []Event{recv, sub("gini", 1), sub("gini", 1), done("gini", 2), done("gini", 2)}, StatusCompleted},
		{"a chosen vendor not yet heard of", []Event{
			mustEvent(t, Received, "d.r", "d", t0, ReceivedData{Vendors: []string{"gini", "laigo"}}), sub("gini", 1), done("gini", 2)}, StatusSubmitted},
		{"all chosen vendors done", []Event{
			mustEvent(t, Received, "d.r", "d", t0, ReceivedData{Vendors: []string{"gini", "laigo"}}), sub("gini", 1), done("gini", 2), sub("laigo", 3), done("laigo", 4)}, StatusCompleted},
		{"rejected", []Event{mustEvent(t, Rejected, "d.x", "d", t0, RejectedData{Reason: "unsupported_type", Detail: "it is a zip"})}, StatusRejected},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d Document
			for _, ev := range c.evs {
				if _, err := d.apply(ev, 0); err != nil {
					t.Fatal(err)
				}
			}
			if d.Status != c.want {
				t.Fatalf("status %q, want %q", d.Status, c.want)
			}
			seen := map[string]bool{}
			for i, h := range d.History {
				if seen[h.EventID] {
					t.Fatalf("event %s twice in history", h.EventID)
				}
				seen[h.EventID] = true
				if i > 0 && h.Time.Before(d.History[i-1].Time) {
					t.Fatal("history is not in time order")
				}
			}
		})
	}
}

func TestApplyRecordsVendorSlots(t *testing.T) {
	t0 := time.Now()
	var d Document
	for _, ev := range []Event{
		mustEvent(t, Received, "r", "d", t0, ReceivedData{Filename: "x.png", SHA256: "ab"}),
		mustEvent(t, Submitted, "s", "d", t0.Add(time.Second), SubmittedData{Vendor: "gini", VendorRef: "G-1"}),
		mustEvent(t, Failed, "f", "d", t0.Add(2*time.Second), FailedData{Vendor: "gini", Error: "ERROR state"}),
	} {
		if _, err := d.apply(ev, 0); err != nil {
			t.Fatal(err)
		}
	}
	g := d.Vendors["gini"]
	if g == nil || g.Ref != "G-1" || g.Status != StatusFailed || g.Error != "ERROR state" {
		t.Fatalf("gini slot %+v", g)
	}
	if d.Filename != "x.png" || d.SHA256 != "ab" {
		t.Fatalf("received data not kept: %+v", d)
	}
	if _, err := d.apply(mustEvent(t, Completed, "c", "d", t0, CompletedData{}), 0); err == nil {
		t.Fatal("a vendor event without a vendor was accepted")
	}
}

// Rounds: a retried event starts a new round of a failed (document, vendor); events of an older
// round change nothing once a newer one began, whatever order the events come in.
func TestVendorRounds(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	recv := mustEvent(t, Received, "d.received", "d", t0, ReceivedData{DocumentID: "d", Vendors: []string{"gini"}})
	sub := func(round, n int, ref string) Event {
		return mustEvent(t, Submitted, VendorStepID("d", Submitted, "gini", round), "d", at(n), SubmittedData{Vendor: "gini", VendorRef: ref, Round: round})
	}
	done := func(round, n int, ref string) Event {
		return mustEvent(t, Completed, VendorStepID("d", Completed, "gini", round), "d", at(n), CompletedData{Vendor: "gini", VendorRef: ref, Round: round})
	}
	fail := func(round, n int, msg string) Event {
		return mustEvent(t, Failed, VendorStepID("d", Failed, "gini", round), "d", at(n), FailedData{Vendor: "gini", Error: msg, Round: round})
	}
	retry := func(round, n int) Event {
		return mustEvent(t, Retried, VendorStepID("d", Retried, "gini", round), "d", at(n), RetriedData{Vendor: "gini", Round: round})
	}
	cases := []struct {
		name   string
		evs    []Event
		status Status // the document's
		slot   VendorState
	}{
		{"failed round 0", []Event{recv, sub(0, 1, "A"), fail(0, 2, "boom")}, StatusFailed,
			VendorState{Status: StatusFailed, Round: 0, Ref: "A", Error: "boom"}},
		{"retried: queued for round 1, nothing of round 0 kept", []Event{recv, sub(0, 1, "A"), fail(0, 2, "boom"), retry(1, 3)}, StatusSubmitted,
			VendorState{Status: StatusReceived, Round: 1}},
		{"round 1 submitted", []Event{recv, sub(0, 1, "A"), fail(0, 2, "boom"), retry(1, 3), sub(1, 4, "B")}, StatusSubmitted,
			VendorState{Status: StatusSubmitted, Round: 1, Ref: "B"}},
		{"round 1 completed", []Event{recv, sub(0, 1, "A"), fail(0, 2, "boom"), retry(1, 3), sub(1, 4, "B"), done(1, 5, "B")}, StatusCompleted,
			VendorState{Status: StatusCompleted, Round: 1, Ref: "B"}},
		{"the retried event comes last", []Event{recv, sub(0, 1, "A"), fail(0, 2, "boom"), sub(1, 4, "B"), done(1, 5, "B"), retry(1, 3)}, StatusCompleted,
			VendorState{Status: StatusCompleted, Round: 1, Ref: "B"}},
		{"round 0's failure comes after round 1 began", []Event{recv, sub(0, 1, "A"), retry(1, 3), sub(1, 4, "B"), fail(0, 2, "boom")}, StatusSubmitted,
			VendorState{Status: StatusSubmitted, Round: 1, Ref: "B"}},
		{"a stale completion of round 0 changes nothing", []Event{recv, sub(0, 1, "A"), fail(0, 2, "boom"), retry(1, 3), done(0, 6, "A")}, StatusSubmitted,
			VendorState{Status: StatusReceived, Round: 1}},
		{"the same retried event twice is one round", []Event{recv, sub(0, 1, "A"), fail(0, 2, "boom"), retry(1, 3), sub(1, 4, "B"), retry(1, 3)}, StatusSubmitted,
			VendorState{Status: StatusSubmitted, Round: 1, Ref: "B"}},
		{"round 2 after round 1 failed too", []Event{recv, sub(0, 1, "A"), fail(0, 2, "x"), retry(1, 3), sub(1, 4, "B"), fail(1, 5, "y"), retry(2, 6), sub(2, 7, "C"), done(2, 8, "C")}, StatusCompleted,
			VendorState{Status: StatusCompleted, Round: 2, Ref: "C"}},
		{"round 1 failed again", []Event{recv, sub(0, 1, "A"), fail(0, 2, "x"), retry(1, 3), sub(1, 4, "B"), fail(1, 5, "y")}, StatusFailed,
			VendorState{Status: StatusFailed, Round: 1, Ref: "B", Error: "y"}},
		// Two instances settled one submission at once (a callback, a poll): the result stands,
		// whichever event the state takes first.
		{"completed and failed in one round", []Event{recv, sub(0, 1, "A"), done(0, 2, "A"), fail(0, 3, "the job is gone")}, StatusCompleted,
			VendorState{Status: StatusCompleted, Round: 0, Ref: "A"}},
		{"failed, then completed in one round", []Event{recv, sub(0, 1, "A"), fail(0, 2, "no answer in time"), done(0, 3, "A")}, StatusCompleted,
			VendorState{Status: StatusCompleted, Round: 0, Ref: "A"}},
		{"a stale retried event of round 1 after round 2 began", []Event{recv, fail(0, 2, "x"), retry(1, 3), fail(1, 5, "y"), retry(2, 6), sub(2, 7, "C"), retry(1, 3)}, StatusSubmitted,
			VendorState{Status: StatusSubmitted, Round: 2, Ref: "C"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d Document
			for _, ev := range c.evs {
				if _, err := d.apply(ev, 0); err != nil {
					t.Fatal(err)
				}
			}
			got := *d.Vendors["gini"]
			got.UpdatedAt, got.SubmittedAt = time.Time{}, time.Time{}
			if d.Status != c.status || got.Status != c.slot.Status || got.Round != c.slot.Round || got.Ref != c.slot.Ref || got.Error != c.slot.Error {
				t.Fatalf("document %s, slot %+v; want %s, %+v", d.Status, got, c.status, c.slot)
			}
			// Every order of the same events gives the same round and stage (reversed, here; a
			// reference only a submitted event carries is not learnt after the round ended, as
			// before rounds).
			var r Document
			for i := len(c.evs) - 1; i >= 0; i-- {
				if _, err := r.apply(c.evs[i], 0); err != nil {
					t.Fatal(err)
				}
			}
			if rs := r.Vendors["gini"]; rs.Round != got.Round || rs.Status != got.Status || r.Status != d.Status {
				t.Fatalf("reversed: slot %+v, want %+v", rs, got)
			}
		})
	}
	var d Document
	if _, err := d.apply(mustEvent(t, Retried, "d.retried.gini", "d", t0, RetriedData{Vendor: "gini"}), 0); err == nil {
		t.Fatal("a retried event without a round was accepted")
	}
	if got := VendorStepID("d", Completed, "gini", 0); got != "d.completed.gini" {
		t.Fatalf("round 0 id %q changed", got)
	}
	if got := VendorStepID("d", Retried, "gini", 3); got != "d.retried.gini.r3" {
		t.Fatalf("round 3 id %q", got)
	}
}

// Recording on a snapshot leaves the snapshot as it was read: its caller may still look at it.
func TestApplyOnLeavesTheSnapshot(t *testing.T) {
	d := Document{ID: "doc", Vendors: map[string]*VendorState{"gini": {Status: StatusSubmitted}},
		History: make([]HistoryEntry, 1, 4)}
	d.History[0] = HistoryEntry{EventID: "doc.received"}
	c := d.clone()
	ev, _ := NewEvent(Completed, "doc.completed.gini", "/v", "doc", time.Now(), CompletedData{DocumentID: "doc", Vendor: "gini"})
	if changed, err := c.apply(ev, 0); err != nil || !changed {
		t.Fatalf("apply: %v %v", changed, err)
	}
	if d.Vendors["gini"].Status != StatusSubmitted || len(d.History) != 1 || d.History[:2][1].EventID != "" {
		t.Fatalf("the original changed with its copy: %+v", d)
	}
}
