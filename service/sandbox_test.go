package service_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ingest-dev/ingest"
	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
)

// A document still in flight at the sandbox vendors when ingest stops completes after it starts
// again on the same data_dir: the simulators kept their jobs, as the real vendors would.
func TestSandboxWorkInFlightSurvivesRestart(t *testing.T) {
	cfg, err := config.Parse(ingest.DefaultConfigYAML(), "config.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	test := testConfig(t)
	cfg.DataDir, cfg.HTTP.Listen, cfg.NATS.Embedded.Listen, cfg.HTTP.APIKeys = test.DataDir, test.HTTP.Listen, test.NATS.Embedded.Listen, test.HTTP.APIKeys
	// Every vendor says "not yet" a few times and is asked only every 300 ms: the stop comes while
	// the document is in flight at each of them.
	vendorsYAML(t, &cfg, `
  laigo: {rate_limit: 0, sandbox_pending_polls: 3, poll: {initial: 300ms, max: 300ms}}
  gini: {sandbox_pending_polls: 3, poll: {initial: 300ms, max: 300ms}}
  allspark: {sandbox_pending_polls: 3, poll: {initial: 300ms, max: 300ms}}
  documine: {sandbox_pending_polls: 3, poll: {initial: 300ms, max: 300ms}}
  cradl: {sandbox_pending_polls: 3, poll: {initial: 300ms, max: 300ms}}
`)
	// Every sandbox keeps its records under data_dir/sandbox/<vendor>.
	sandboxVendorsThatKeepState := []string{"laigo", "gini", "allspark", "documine", "cradl"}
	s := start(t, cfg)
	path, _ := writePDF(t, 4<<10)
	c := &httpdrop.Client{BaseURL: "http://" + s.HTTPAddr(), APIKey: key}
	resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{Vendors: sandboxVendorsThatKeepState})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Documents[0].ID
	eventstest.WaitFor(t, 20*time.Second, "the document to be submitted everywhere", func() bool {
		_, body := get(t, s.HTTPAddr(), "/v1/documents/"+id)
		var doc events.Document
		if json.Unmarshal(body, &doc) != nil {
			return false
		}
		for _, v := range sandboxVendorsThatKeepState {
			if doc.Vendors[v] == nil || doc.Vendors[v].Status != events.StatusSubmitted {
				return false
			}
		}
		return true
	})
	stop(t, s)

	s2 := start(t, cfg)
	doc := waitCompleted(t, s2, id)
	for _, v := range sandboxVendorsThatKeepState {
		if vs := doc.Vendors[v]; vs == nil || vs.Status != events.StatusCompleted || vs.Attempts != 1 {
			t.Errorf("%s after the restart: %+v; want completed at its first submission", v, vs)
		}
	}
}
