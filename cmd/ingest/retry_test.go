package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
)

// ingest retry against a running service: a document whose Gini round failed is retried, the
// sandbox Gini takes round 1 and completes it; a second retry is refused with the reason.
func TestRetryCommand(t *testing.T) {
	// No routes: the document waits until the test fails it at Gini; the retry then really goes
	// through the dispatcher to the sandbox Gini.
	ctx, cfgPath, s := runningService(t, "routes: []\nvendors:\n  gini: {poll: {initial: 100ms, max: 200ms}}\n", 60*time.Second)

	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"submit", writeFile(t, "scan.pdf", "%PDF-1.4\nretry me\n"), "--config", cfgPath}, &out, &errOut); code != 0 {
		t.Fatalf("submit: exit %d, %s", code, errOut.String())
	}
	var sub struct{ ID string }
	if err := json.Unmarshal(out.Bytes(), &sub); err != nil {
		t.Fatal(err)
	}
	failed, _ := events.NewEvent(events.Failed, sub.ID+".failed.gini", "/vendors/gini", sub.ID, time.Now(),
		events.FailedData{DocumentID: sub.ID, Vendor: "gini", Error: "ERROR", Permanent: true, FailedAt: time.Now()})
	subject, _ := s.Bus().Names().Subject(events.Failed, "gini")
	if _, _, err := s.Bus().Record(ctx, subject, failed); err != nil {
		t.Fatal(err)
	}

	out.Reset()
	if code := run(ctx, []string{"retry", sub.ID, "--vendor", "gini", "--key", "k1", "--config", cfgPath}, &out, &errOut); code != 0 {
		t.Fatalf("retry: exit %d, %s", code, errOut.String())
	}
	var doc events.Document
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.Vendors["gini"] == nil || doc.Vendors["gini"].Round != 1 {
		t.Fatalf("retry printed %s (%v)", out.String(), err)
	}
	eventstest.WaitFor(t, 30*time.Second, "round 1 to complete at the sandbox Gini", func() bool {
		d, err := s.Bus().States().Get(ctx, sub.ID)
		return err == nil && d.Status == events.StatusCompleted && d.Vendors["gini"].Round == 1
	})
	// The same command with the same key answers again, without a round; without a key it is
	// refused: nothing has failed.
	out.Reset()
	if code := run(ctx, []string{"retry", sub.ID, "--vendor", "gini", "--key", "k1", "--config", cfgPath}, &out, &errOut); code != 0 || !strings.Contains(out.String(), `"round": 1`) {
		t.Fatalf("retry again with the key: exit %d, %s %s", code, out.String(), errOut.String())
	}
	errOut.Reset()
	if code := run(ctx, []string{"retry", sub.ID, "--config", cfgPath}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "409") || !strings.Contains(errOut.String(), "no failed vendor") {
		t.Fatalf("retry of a completed document: exit %d, %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run(ctx, []string{"retry", "no-such-document", "--config", cfgPath}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "404") {
		t.Fatalf("retry of an unknown document: exit %d, %q", code, errOut.String())
	}
}
