package docapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/docapi"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/httpapi"
)

const retryAPIKey = "retry-test-key-0123456789abcdef0123"

type retryFixture struct {
	t   *testing.T
	bus *events.Bus
	api *docapi.API
	ts  *httptest.Server
}

func newRetryFixture(t *testing.T) *retryFixture { return newRetryFixtureOn(t, eventstest.Embedded(t)) }

// onEveryServer runs test against the embedded nats-server and the external NATS 2.9 (skipped,
// loudly, when there is none): the decisions rest on Key-Value compare-and-set and the stream's
// duplicate window, which both must keep.
func onEveryServer(t *testing.T, test func(t *testing.T, f *retryFixture)) {
	t.Run("embedded", func(t *testing.T) { test(t, newRetryFixture(t)) })
	t.Run("external NATS 2.9", func(t *testing.T) { test(t, newRetryFixtureOn(t, eventstest.External(t))) })
}

func newRetryFixtureOn(t *testing.T, nc *nats.Conn) *retryFixture {
	t.Helper()
	bus := eventstest.Bus(t, nc)
	kv, err := bus.KeyValue(context.Background(), events.BucketSpec{Purpose: "idempotency", Description: "Idempotency-Key records of POST /v1/documents", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	api, err := docapi.New(docapi.Config{Bus: bus, APIKeys: []string{retryAPIKey}, Idempotency: kv})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	api.Register(srv.Echo())
	ts := httptest.NewServer(srv.Echo())
	t.Cleanup(ts.Close)
	return &retryFixture{t: t, bus: bus, api: api, ts: ts}
}

// record publishes one event and folds it into the state, as producers do.
func (f *retryFixture) record(k events.Kind, id, doc, qualifier string, data any) {
	f.t.Helper()
	ev, err := events.NewEvent(k, id, "/test", doc, time.Now(), data)
	if err != nil {
		f.t.Fatal(err)
	}
	subject, err := f.bus.Names().Subject(k, qualifier)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, _, err := f.bus.Record(context.Background(), subject, ev); err != nil {
		f.t.Fatal(err)
	}
}

// document makes a document that went to gini and laigo: gini failed, laigo completed.
func (f *retryFixture) document(id string) {
	f.record(events.Received, id+".received", id, "http", events.ReceivedData{DocumentID: id, Filename: "a.pdf", ObjectKey: "documents/" + id,
		Vendors: []string{"gini", "laigo"}, Source: events.SourceRef{Kind: "http", Name: "api"}})
	f.record(events.Submitted, id+".submitted.gini", id, "gini", events.SubmittedData{DocumentID: id, Vendor: "gini", VendorRef: "G1"})
	f.record(events.Failed, id+".failed.gini", id, "gini", events.FailedData{DocumentID: id, Vendor: "gini", VendorRef: "G1", Error: "ERROR", Permanent: true})
	f.record(events.Submitted, id+".submitted.laigo", id, "laigo", events.SubmittedData{DocumentID: id, Vendor: "laigo", VendorRef: "L1"})
	f.record(events.Completed, id+".completed.laigo", id, "laigo", events.CompletedData{DocumentID: id, Vendor: "laigo", VendorRef: "L1"})
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) doc(t *testing.T) events.Document {
	t.Helper()
	var d events.Document
	if err := json.Unmarshal(a.body, &d); err != nil {
		t.Fatalf("%d %s: %v", a.status, a.body, err)
	}
	return d
}

func (f *retryFixture) post(path, key string) answer {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.ts.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+retryAPIKey)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, body}
}

// retried counts the retried events in the stream, by id.
func (f *retryFixture) retried() map[string]int {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := f.bus.JetStream().Stream(ctx, f.bus.Names().Stream())
	if err != nil {
		f.t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{f.bus.Names().KindSubjects(events.Retried)}})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]int{}
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			f.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			ev, err := events.Decode(m.Data())
			if err != nil {
				f.t.Fatal(err)
			}
			out[ev.ID]++
		}
		if n == 0 {
			return out
		}
	}
}

func TestRetryAnswers(t *testing.T) {
	f := newRetryFixture(t)
	f.document("doc-1")
	problems := []struct {
		name, path string
		status     int
		detail     string
	}{
		{"unknown document", "/v1/documents/nope/retry", 404, `there is no document with id "nope"`},
		{"hostile id", "/v1/documents/..%2F..%2Fetc/retry", 404, "there is no document"},
		{"vendor not the document's", "/v1/documents/doc-1/retry?vendor=cradl", 404, `does not go to vendor "cradl" (its vendors: gini, laigo)`},
		{"completed vendor", "/v1/documents/doc-1/retry?vendor=laigo", 409, "is completed at laigo"},
		{"vendor that cannot be one", "/v1/documents/doc-1/retry?vendor=../gini", 400, `the vendor "../gini" cannot be a vendor name`},
		{"empty vendor", "/v1/documents/doc-1/retry?vendor=", 400, "the query parameter vendor is empty"},
		{"vendor twice", "/v1/documents/doc-1/retry?vendor=gini&vendor=laigo", 400, "vendor is given 2 times"},
		{"unknown parameter", "/v1/documents/doc-1/retry?force=1", 400, `unknown query parameter "force"`},
	}
	for _, p := range problems {
		t.Run(p.name, func(t *testing.T) {
			a := f.post(p.path, "")
			var prob httpapi.Problem
			_ = json.Unmarshal(a.body, &prob)
			if a.status != p.status || prob.Status != p.status || !strings.HasPrefix(a.header.Get("Content-Type"), httpapi.ProblemContentType) || !strings.Contains(prob.Detail, p.detail) {
				t.Fatalf("%d %s %s, want %d with %q", a.status, a.header.Get("Content-Type"), a.body, p.status, p.detail)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodPost, f.ts.URL+"/v1/documents/doc-1/retry", nil)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without an API key: %v %v", res, err)
	}

	a := f.post("/v1/documents/doc-1/retry?vendor=gini", "")
	if a.status != http.StatusAccepted {
		t.Fatalf("retry: %d %s", a.status, a.body)
	}
	doc := a.doc(t)
	if g := doc.Vendors["gini"]; doc.Status != events.StatusSubmitted || g.Round != 1 || g.Status != events.StatusReceived || g.Error != "" {
		t.Fatalf("after the retry: %s, gini %+v", doc.Status, g)
	}
	if l := doc.Vendors["laigo"]; l.Round != 0 || l.Status != events.StatusCompleted {
		t.Fatalf("laigo touched: %+v", l)
	}
	// The slot is no longer failed: a second retry is refused, and no round is added.
	if a := f.post("/v1/documents/doc-1/retry?vendor=gini", ""); a.status != http.StatusConflict || !strings.Contains(string(a.body), "waiting to be submitted at gini (round 1)") {
		t.Fatalf("second retry: %d %s", a.status, a.body)
	}
	if a := f.post("/v1/documents/doc-1/retry", ""); a.status != http.StatusConflict || !strings.Contains(string(a.body), "has no failed vendor") {
		t.Fatalf("retry of every failed vendor, none failed: %d %s", a.status, a.body)
	}
	if got := f.retried(); len(got) != 1 || got["doc-1.retried.gini.r1"] != 1 {
		t.Fatalf("retried events %v", got)
	}
	var rd events.RetriedData
	ev := f.lastRetried("doc-1")
	if err := ev.DecodeData(&rd); err != nil || rd.Round != 1 || rd.PreviousError != "ERROR" || !strings.HasPrefix(rd.RequestedBy, "api:") {
		t.Fatalf("retried data %+v (%v)", rd, err)
	}
}

func (f *retryFixture) lastRetried(doc string) events.Event {
	f.t.Helper()
	d, err := f.bus.States().Get(context.Background(), doc)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx := context.Background()
	s, _ := f.bus.JetStream().Stream(ctx, f.bus.Names().Stream())
	for _, h := range d.History {
		if h.Type == events.Retried.Type() {
			subject, _ := f.bus.Names().Subject(events.Retried, h.Vendor)
			m, err := s.GetLastMsgForSubject(ctx, subject)
			if err != nil {
				f.t.Fatal(err)
			}
			ev, err := events.Decode(m.Data)
			if err != nil {
				f.t.Fatal(err)
			}
			return ev
		}
	}
	f.t.Fatal("no retried event in the history")
	return events.Event{}
}

// Without ?vendor every failed vendor gets its next round.
func TestRetryEveryFailedVendor(t *testing.T) {
	f := newRetryFixture(t)
	f.document("doc-2")
	// laigo completed: only gini is retried.
	a := f.post("/v1/documents/doc-2/retry", "")
	if a.status != http.StatusAccepted || a.doc(t).Vendors["gini"].Round != 1 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	// Round 1 fails too: the next retry is round 2.
	f.record(events.Failed, events.VendorStepID("doc-2", events.Failed, "gini", 1), "doc-2", "gini", events.FailedData{DocumentID: "doc-2", Vendor: "gini", Error: "again", Permanent: true, Round: 1})
	a = f.post("/v1/documents/doc-2/retry", "")
	if g := a.doc(t).Vendors["gini"]; a.status != http.StatusAccepted || g.Round != 2 || g.Status != events.StatusReceived {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if got := f.retried(); len(got) != 2 || got["doc-2.retried.gini.r1"] != 1 || got["doc-2.retried.gini.r2"] != 1 {
		t.Fatalf("retried events %v", got)
	}
}

func TestRetryIdempotencyKey(t *testing.T) { onEveryServer(t, retryIdempotencyKey) }

func retryIdempotencyKey(t *testing.T, f *retryFixture) {
	f.document("doc-3")
	f.document("doc-4")
	a := f.post("/v1/documents/doc-3/retry?vendor=gini", "key-1")
	if a.status != http.StatusAccepted || a.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %v %s", a.status, a.header, a.body)
	}
	// The round fails again; the same request with the same key is answered, not repeated.
	f.record(events.Failed, events.VendorStepID("doc-3", events.Failed, "gini", 1), "doc-3", "gini", events.FailedData{DocumentID: "doc-3", Vendor: "gini", Error: "again", Permanent: true, Round: 1})
	a = f.post("/v1/documents/doc-3/retry?vendor=gini", "key-1")
	if g := a.doc(t).Vendors["gini"]; a.status != http.StatusAccepted || a.header.Get("Idempotent-Replayed") != "true" || g.Round != 1 || g.Status != events.StatusFailed {
		t.Fatalf("replay: %d %v %s", a.status, a.header, a.body)
	}
	for _, other := range []string{"/v1/documents/doc-3/retry", "/v1/documents/doc-4/retry?vendor=gini"} {
		if a := f.post(other, "key-1"); a.status != http.StatusUnprocessableEntity || !strings.Contains(string(a.body), "used for a different request") {
			t.Fatalf("%s with the key of another request: %d %s", other, a.status, a.body)
		}
	}
	for _, bad := range []string{"a key", strings.Repeat("k", 256)} {
		if a := f.post("/v1/documents/doc-3/retry?vendor=gini", bad); a.status != http.StatusBadRequest || !strings.Contains(string(a.body), "Idempotency-Key") {
			t.Fatalf("key %.20q: %d %s", bad, a.status, a.body)
		}
	}
	// A new key is a new request: round 2.
	if a := f.post("/v1/documents/doc-3/retry?vendor=gini", "key-2"); a.status != http.StatusAccepted || a.doc(t).Vendors["gini"].Round != 2 {
		t.Fatalf("new key: %d %s", a.status, a.body)
	}
	if got := f.retried(); len(got) != 2 || got["doc-3.retried.gini.r1"] != 1 || got["doc-3.retried.gini.r2"] != 1 {
		t.Fatalf("retried events %v", got)
	}
}

// Many retries of one failed vendor at once make one round: without a key one is accepted and
// the others are told it is under way; with one key all are accepted, as one request.
func TestConcurrentRetriesMakeOneRound(t *testing.T) { onEveryServer(t, concurrentRetries) }

func concurrentRetries(t *testing.T, f *retryFixture) {
	f.document("doc-5")
	f.document("doc-6")
	const n = 12
	for _, c := range []struct{ doc, key string }{{"doc-5", ""}, {"doc-6", "same-key"}} {
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				a := f.post("/v1/documents/"+c.doc+"/retry?vendor=gini", c.key)
				mu.Lock()
				statuses[a.status]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if c.key == "" && (statuses[http.StatusAccepted] != 1 || statuses[http.StatusConflict] != n-1) {
			t.Errorf("%s without a key: answers %v, want one 202 and %d 409", c.doc, statuses, n-1)
		}
		if c.key != "" && statuses[http.StatusAccepted]+statuses[http.StatusConflict] != n || statuses[http.StatusAccepted] == 0 {
			t.Errorf("%s with one key: answers %v", c.doc, statuses)
		}
	}
	if got := f.retried(); len(got) != 2 || got["doc-5.retried.gini.r1"] != 1 || got["doc-6.retried.gini.r1"] != 1 {
		t.Fatalf("retried events %v, want one round each", got)
	}
}

// The Go function the console calls: the same decisions, typed errors.
func TestRetryFunction(t *testing.T) {
	f := newRetryFixture(t)
	f.document("doc-7")
	ctx := docapi.WithRequester(context.Background(), "console")
	for _, c := range []struct {
		id, vendor string
		want       error
	}{{"missing", "", docapi.ErrNotFound}, {"doc-7", "cradl", docapi.ErrNotFound}, {"doc-7", "laigo", docapi.ErrNotRetryable}, {"doc-7", "Gini!", docapi.ErrBadRetry}} {
		if _, err := f.api.Retry(ctx, c.id, c.vendor, ""); !errors.Is(err, c.want) {
			t.Errorf("Retry(%s, %s): %v, want %v", c.id, c.vendor, err, c.want)
		}
	}
	doc, err := f.api.Retry(ctx, "doc-7", "", "console-key")
	if err != nil || doc.Vendors["gini"].Round != 1 {
		t.Fatalf("Retry: %+v, %v", doc, err)
	}
	if _, err := f.api.Retry(ctx, "doc-7", "", "console-key"); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if _, err := f.api.Retry(ctx, "doc-7", "gini", "console-key"); !errors.Is(err, docapi.ErrIdempotencyMismatch) {
		t.Fatalf("key of another request: %v", err)
	}
	var rd events.RetriedData
	if err := f.lastRetried("doc-7").DecodeData(&rd); err != nil || rd.RequestedBy != "console" {
		t.Fatalf("retried by %+v", rd)
	}
}
