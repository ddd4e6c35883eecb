package service_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/events/schema"
)

const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// hookReceiver verifies deliveries with the Standard Webhooks reference library.
type hookReceiver struct {
	srv   *httptest.Server
	down  atomic.Bool
	calls atomic.Int64
	mu    sync.Mutex
	got   []events.Event
	raw   [][]byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	wh, err := standardwebhooks.NewWebhook(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if h.down.Load() {
			w.Header().Set("Retry-After", "1") // else the next try is minutes away (the schedule)
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		ev, err := events.Decode(body)
		if err != nil || ev.ID != r.Header.Get("webhook-id") {
			http.Error(w, "not our event", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.got = append(h.got, ev)
		h.raw = append(h.raw, body)
		h.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) events() []events.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]events.Event(nil), h.got...)
}

// byDoc counts distinct event ids per document.
func (h *hookReceiver) distinctFor(docs ...string) int {
	want := map[string]bool{}
	for _, d := range docs {
		want[d] = true
	}
	seen := map[string]bool{}
	for _, ev := range h.events() {
		if want[ev.Subject] {
			seen[ev.ID] = true
		}
	}
	return len(seen)
}

func webhookConfig(t *testing.T, url string) config.Config {
	cfg := testConfig(t)
	cfg.Routes = nil // the catalog's default route: the sandbox gini
	vendorsYAML(t, &cfg, "  gini: {poll: {initial: 50ms}}\n")
	s := config.DefaultSubscription()
	s.Name, s.URL, s.Secret, s.Ordered, s.AllowPrivateTargets = "all", url, config.StringList{hookSecret}, true, true
	cfg.Subscriptions = []config.Subscription{s}
	return cfg
}

// The service delivers every document event of a full run (received, submitted, completed) to a
// subscription, in order, signed; shows it in /readyz; replays with the same webhook-ids; and a
// restart while the receiver is down loses nothing.
func TestWebhooksThroughTheService(t *testing.T) {
	rv := newHookReceiver(t)
	cfg := webhookConfig(t, rv.srv.URL)
	s := start(t, cfg)
	c := &httpdrop.Client{BaseURL: "http://" + s.HTTPAddr(), APIKey: key}
	path, _ := writePDF(t, 10<<10)
	var docs []string
	for range 3 {
		resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, resp.Documents[0].ID)
	}
	eventstest.WaitFor(t, 20*time.Second, "received, submitted and completed of 3 documents", func() bool { return rv.distinctFor(docs...) == 9 })
	// Ordered: each document's events arrive in the order of its life.
	step := map[string]int{}
	for _, ev := range rv.events() {
		k := map[events.Kind]int{events.Received: 1, events.Submitted: 2, events.Completed: 3}[ev.Kind()]
		if k <= step[ev.Subject] {
			t.Fatalf("document %s: %s after step %d", ev.Subject, ev.Type, step[ev.Subject])
		}
		step[ev.Subject] = k
	}

	// Every event of the run, as delivered, is valid against the published schemas.
	types := map[string]*schema.Schema{}
	for _, et := range schema.EventTypes(s.Bus().Names()) {
		types[et.Type] = schema.Envelope(et)
	}
	rv.mu.Lock()
	for _, raw := range rv.raw {
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		sch := types[doc["type"].(string)]
		if sch == nil {
			t.Fatalf("no schema for %s", doc["type"])
		}
		if errs := sch.Validate(doc); len(errs) > 0 {
			t.Errorf("a delivered %s does not match its schema: %v\n%s", doc["type"], errs, raw)
		}
	}
	rv.mu.Unlock()
	if res, body := get(t, s.HTTPAddr(), "/asyncapi.json"); res.StatusCode != 200 || !strings.Contains(string(body), `"asyncapi": "3.0.0"`) {
		t.Fatalf("/asyncapi.json: %d %.200s", res.StatusCode, body)
	}

	res, body := get(t, s.HTTPAddr(), "/readyz")
	var ready struct {
		Status   string `json:"status"`
		Webhooks []struct{ Name, State string }
	}
	if err := json.Unmarshal(body, &ready); err != nil || res.StatusCode != 200 || len(ready.Webhooks) != 1 ||
		ready.Webhooks[0].Name != "all" || ready.Webhooks[0].State != "active" {
		t.Fatalf("/readyz: %d %s", res.StatusCode, body)
	}

	// Replay: the same events again, same ids, in order.
	before := len(rv.events())
	req, _ := http.NewRequest("POST", "http://"+s.HTTPAddr()+"/v1/subscriptions/all/replay?since=1h", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rbody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var replay struct{ Matched, Delivered int }
	if json.Unmarshal(rbody, &replay) != nil || resp.StatusCode != 200 || replay.Delivered != 9 || replay.Matched != 9 {
		t.Fatalf("replay: %d %s", resp.StatusCode, rbody)
	}
	again := rv.events()[before:]
	first := rv.events()[:before]
	for i := range again {
		if again[i].ID != first[i].ID {
			t.Fatalf("replayed %d: %s, first sent %s", i, again[i].ID, first[i].ID)
		}
	}

	// The receiver goes down, documents keep coming, the service restarts: nothing is lost.
	rv.down.Store(true)
	calls := rv.calls.Load()
	var later []string
	for range 2 {
		resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		later = append(later, resp.Documents[0].ID)
	}
	eventstest.WaitFor(t, 10*time.Second, "attempts against the receiver while it is down", func() bool { return rv.calls.Load() > calls+1 })
	stop(t, s)
	rv.down.Store(false)
	s = start(t, cfg)
	eventstest.WaitFor(t, 30*time.Second, "every event of the later documents after the restart", func() bool {
		return rv.distinctFor(later...) == 6
	})
	if !strings.Contains(string(rbody), `"subscription":"all"`) {
		t.Fatalf("replay answer %s", rbody)
	}
}
