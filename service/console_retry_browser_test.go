package service_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
)

// A person opens a document that failed at Gini and presses "Retry at gini": the retry round goes
// through the dispatcher to the sandbox Gini, and the page shows the document completed, in round 1.
func TestConsoleRetryInABrowser(t *testing.T) {
	cfg := testConfig(t)
	// No routes: the upload waits until the test fails it at Gini, as a vendor would have.
	cfg.Routes = []config.Route{}
	vendorsYAML(t, &cfg, "  gini: {poll: {initial: 200ms, max: 200ms}}\n")
	s := start(t, cfg)
	b := newBrowser(t, "http://"+s.HTTPAddr())
	b.signIn(key)

	path, _ := writePDF(t, 20<<10)
	c := &httpdrop.Client{BaseURL: "http://" + s.HTTPAddr(), APIKey: key}
	resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Documents[0].ID
	failed, err := events.NewEvent(events.Failed, id+".failed.gini", "/vendors/gini", id, time.Now(),
		events.FailedData{DocumentID: id, Vendor: "gini", Error: "ERROR: the sandbox says no", Permanent: true, FailedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := s.Bus().Names().Subject(events.Failed, "gini")
	if _, _, err := s.Bus().Record(ctxT(t), subject, failed); err != nil {
		t.Fatal(err)
	}

	b.open("/ui/documents/" + id)
	b.waitText("#status", "failed", 10*time.Second)
	b.step("see the retry button", 10*time.Second, chromedp.WaitVisible(chromedp.CSS("#retry-gini")))
	b.screenshot("failed-document")
	b.submit("retry at gini", "#retry-gini")
	b.waitText("#status", "completed", 45*time.Second)
	b.screenshot("retried-document")
	doc, err := s.Bus().States().Get(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if g := doc.Vendors["gini"]; doc.Status != events.StatusCompleted || g.Round != 1 || g.Ref == "" {
		t.Fatalf("after the retry: %s, gini %+v", doc.Status, g)
	}
	if tl := b.text("#timeline"); !strings.Contains(tl, "retried") {
		t.Errorf("the timeline does not show the retry: %s", tl)
	}
}
