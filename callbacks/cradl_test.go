package callbacks_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/callbacks"
	"github.com/ingest-dev/ingest/dispatch"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/intake"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/cradl"
	"github.com/ingest-dev/ingest/vendors/cradl/cradlsim"
)

// What Cradl really sends — the classic workflow export, unsigned, with the headers configured in
// the workflow; the newer webhook, signed over whatever headers it lists, its ids a run and a
// document — completes a workflow execution that polling would never see finish, or is refused
// where the configuration says so.
func TestCradlWebhookEndToEnd(t *testing.T) {
	classic := cradlsim.WebhookConfig{Headers: map[string]string{"X-Api-Key": "configured-in-the-workflow"}}
	cases := []struct {
		name          string
		sim           cradlsim.WebhookConfig
		ourSecret     string
		requireSigned bool
		completes     bool
	}{
		{"classic export, no secret", classic, "", false, true},
		{"classic export, secret, unsigned allowed", classic, secret, false, true},
		{"classic export, secret, signatures required", classic, secret, true, false},
		{"signed webhook", cradlsim.WebhookConfig{Secret: secret}, secret, true, true},
		{"signed webhook, nonce only", cradlsim.WebhookConfig{Secret: secret, SignedHeaders: []string{"x-cradl-nonce"}}, secret, true, true},
		{"signed webhook, no headers signed", cradlsim.WebhookConfig{Secret: secret, SignedHeaders: []string{}}, secret, true, true},
		{"signed webhook, other secret", cradlsim.WebhookConfig{Secret: "another-secret"}, secret, true, false},
		{"signed export", cradlsim.WebhookConfig{Secret: secret, Format: cradlsim.FormatExport}, secret, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { cradlWebhook(t, c.sim, c.ourSecret, c.requireSigned, c.completes) })
	}
}

func cradlWebhook(t *testing.T, hook cradlsim.WebhookConfig, webhookSecret string, requireSigned, completes bool) {
	ctx := context.Background()
	// Our server's URL must be known to the simulator before our routes exist.
	var handler atomic.Pointer[http.Handler]
	ours := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handler.Load()).ServeHTTP(w, r) }))
	defer ours.Close()
	hook.URL = ours.URL + "/v1/callbacks/cradl/" + token
	sim, err := cradlsim.New(cradlsim.Config{ClientID: "id", ClientSecret: "cs", WorkflowID: "wf", PendingPolls: 1 << 20, Webhook: hook})
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(sim)
	defer simSrv.Close()
	client, err := cradl.New(cradl.Config{BaseURL: simSrv.URL, TokenURL: simSrv.URL + "/oauth2/token", ClientID: "id", ClientSecret: "cs",
		Mode: cradl.ModeWorkflow, WorkflowID: "wf", WebhookSecret: webhookSecret, RequireSignedWebhooks: requireSigned})
	if err != nil {
		t.Fatal(err)
	}

	bus := eventstest.Bus(t, eventstest.Embedded(t))
	p, err := bus.NewProjector(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, p.Run)
	vs := map[string]vendors.Vendor{"cradl": client}
	router, _ := dispatch.NewRouter([]dispatch.Rule{{Name: "d", Vendors: []string{"cradl"}}}, []string{"cradl"})
	in, _ := intake.New(intake.Config{Bus: bus, Route: router.Route})
	refs, _ := dispatch.OpenRefIndex(ctx, bus)
	d, err := dispatch.NewDispatcher(ctx, dispatch.Config{Bus: bus, Vendors: vs, Router: router, Refs: refs})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, d.Run)
	poller, err := dispatch.NewPoller(ctx, dispatch.PollConfig{Bus: bus, Vendors: vs,
		Settings: map[string]vendors.PollSettings{"cradl": {CallbackGrace: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, poller.Run)
	recv, err := callbacks.New(ctx, callbacks.Config{Bus: bus, Poller: poller, Refs: refs, PublicURL: ours.URL,
		Endpoints: []callbacks.Endpoint{{Vendor: "cradl", Token: token, Verifier: client.CallbackVerifier(), Parser: client}}})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, recv.Run)
	srv, _ := httpapi.New(httpapi.Config{})
	recv.Register(srv.Echo())
	var h http.Handler = srv.Echo()
	handler.Store(&h)

	st, err := in.Stage(ctx, intake.NewDocumentID(), "invoice.pdf", strings.NewReader("%PDF-1.7\ninvoice"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Commit(ctx, st, intake.Origin{Source: events.SourceRef{Kind: "http", Name: "api"}}); err != nil {
		t.Fatal(err)
	}
	var ref string
	eventstest.WaitFor(t, 10*time.Second, "the execution to start", func() bool {
		doc, err := bus.States().Get(ctx, st.DocumentID)
		if err == nil && doc.Vendors["cradl"] != nil {
			ref = doc.Vendors["cradl"].Ref
		}
		return ref != ""
	})
	err = sim.CompleteExecution(ref) // Cradl finishes and calls us
	if !completes {
		if d := sim.Deliveries(); err == nil || len(d) != 1 || d[0].Status != http.StatusUnauthorized {
			t.Fatalf("webhook delivery: %v %+v; want refused with 401", err, d)
		}
		if doc, _ := bus.States().Get(ctx, st.DocumentID); doc.Status == events.StatusCompleted {
			t.Fatal("a refused webhook completed the document")
		}
		return
	}
	if err != nil {
		t.Fatalf("webhook delivery: %v", err)
	}
	eventstest.WaitFor(t, 10*time.Second, "completion by webhook", func() bool {
		doc, err := bus.States().Get(ctx, st.DocumentID)
		return err == nil && doc.Status == events.StatusCompleted
	})
	// Cradl was told the result was taken, as its own integrations do.
	eventstest.WaitFor(t, 5*time.Second, "the execution to be marked completed", func() bool {
		for _, e := range sim.Executions() {
			if e.ExecutionID == ref {
				return e.Status == "completed"
			}
		}
		return false
	})
}
