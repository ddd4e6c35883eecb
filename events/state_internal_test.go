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
				if _, err := d.apply(ev); err != nil {
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
		if _, err := d.apply(ev); err != nil {
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
	if _, err := d.apply(mustEvent(t, Completed, "c", "d", t0, CompletedData{})); err == nil {
		t.Fatal("a vendor event without a vendor was accepted")
	}
}
