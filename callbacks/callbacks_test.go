package callbacks_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/callbacks"
	"github.com/ingest-dev/ingest/dispatch"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/intake"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/allspark"
	"github.com/ingest-dev/ingest/vendors/allspark/allsparksim"
	"github.com/ingest-dev/ingest/vendors/cradl"
)

const (
	token  = "allspark-callback-token-0123"
	secret = "cradl-webhook-secret"
)

type rig struct {
	sim *allsparksim.Server
	t   *testing.T
	bus *events.Bus
	in  *intake.Intake
	url string
}

type opts struct {
	pendingPolls   int                        // the vendor's "not yet" answers before a case completes
	callbackFormat allsparksim.CallbackFormat // set: the simulator calls back, in this format
	unsignedCradl  bool                       // require_signed_webhooks: false
	grace          time.Duration              // before polling looks without a callback
	parkWindow     time.Duration
	cidrs          []netip.Prefix
}

func newRig(t *testing.T, o opts) *rig {
	t.Helper()
	ctx := context.Background()
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	p, err := bus.NewProjector(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, p.Run)
	// Our server's URL must be known to the simulator (it may call back) before our routes exist.
	var handler atomic.Pointer[http.Handler]
	ours := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handler.Load()).ServeHTTP(w, r) }))
	t.Cleanup(ours.Close)
	sc := allsparksim.Config{APIKey: "key", PendingPolls: o.pendingPolls}
	if o.callbackFormat != "" {
		sc.CallbackURL, sc.CallbackFormat = ours.URL+"/v1/callbacks/allspark/"+token, o.callbackFormat
	}
	simulator := allsparksim.New(sc)
	t.Cleanup(simulator.Close)
	sim := httptest.NewServer(simulator)
	t.Cleanup(sim.Close)
	client, err := allspark.New(allspark.Config{BaseURL: sim.URL + allsparksim.Prefix, APIKey: "key", FetchOCR: true})
	if err != nil {
		t.Fatal(err)
	}
	vs := map[string]vendors.Vendor{"allspark": client, "cradl": fakeCradl{}}
	router, _ := dispatch.NewRouter([]dispatch.Rule{{Name: "d", Vendors: []string{"allspark"}}}, []string{"allspark", "cradl"})
	in, _ := intake.New(intake.Config{Bus: bus, Route: router.Route})
	refs, err := dispatch.OpenRefIndex(ctx, bus)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dispatch.NewDispatcher(ctx, dispatch.Config{Bus: bus, Vendors: vs, Router: router, Refs: refs, RetryInitial: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, d.Run)
	grace := o.grace
	if grace == 0 {
		grace = time.Hour // only a callback can complete the document
	}
	poller, err := dispatch.NewPoller(ctx, dispatch.PollConfig{Bus: bus, Vendors: vs, Settings: map[string]vendors.PollSettings{
		"allspark": {Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, CallbackGrace: grace},
	}})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, poller.Run)
	recv, err := callbacks.New(ctx, callbacks.Config{
		Bus: bus, Poller: poller, Refs: refs, MaxBody: 64 << 10, ParkWindow: o.parkWindow,
		Endpoints: []callbacks.Endpoint{
			{Vendor: "allspark", Token: token, AllowCIDRs: o.cidrs, Parser: client},
			{Vendor: "cradl", Token: token, Verifier: cradl.WebhookVerifier{Secret: secret, RequireSigned: !o.unsignedCradl}, Parser: fakeCradl{}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, recv.Run)
	srv, _ := httpapi.New(httpapi.Config{})
	recv.Register(srv.Echo())
	var h http.Handler = srv.Echo()
	handler.Store(&h)
	return &rig{t: t, bus: bus, in: in, url: ours.URL, sim: simulator}
}

// fakeCradl reads {"executionId": …}: enough to exercise signed callbacks.
type fakeCradl struct{ vendors.Vendor }

func (fakeCradl) Name() string { return "cradl" }
func (fakeCradl) CallbackIDs(body []byte) ([]string, error) {
	var v struct{ ExecutionID string }
	if err := json.Unmarshal(body, &v); err != nil || v.ExecutionID == "" {
		return nil, fmt.Errorf("no execution id")
	}
	return []string{v.ExecutionID}, nil
}
func (fakeCradl) RefOf(_ context.Context, id string) (string, error) { return id, nil }
func (fakeCradl) CallbackVerifier() vendors.CallbackVerifier         { return nil }

func (r *rig) post(path string, body []byte, hdr http.Header) (int, string) {
	r.t.Helper()
	req, _ := http.NewRequest("POST", r.url+path, bytes.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (r *rig) receive(name string) intake.Staged {
	r.t.Helper()
	st, err := r.in.Stage(context.Background(), intake.NewDocumentID(), name, strings.NewReader("%PDF-1.7\n"+name), 1<<20)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.in.Commit(context.Background(), st, intake.Origin{Source: events.SourceRef{Kind: "http", Name: "api"}}); err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *rig) waitVendor(id string, want events.Status) events.Document {
	r.t.Helper()
	var doc events.Document
	eventstest.WaitFor(r.t, 15*time.Second, "allspark "+string(want), func() bool {
		d, err := r.bus.States().Get(context.Background(), id)
		doc = d
		return err == nil && d.Vendors["allspark"] != nil && d.Vendors["allspark"].Status == want
	})
	return doc
}

// count returns how many messages the stream holds on subject.
func (r *rig) count(subject string) int {
	ctx := context.Background()
	s, _ := r.bus.JetStream().Stream(ctx, r.bus.Names().Stream())
	info, _ := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

func caseBody(id any) []byte {
	b, _ := json.Marshal(map[string]any{"case_id": id, "status": "completed", "files": []any{}})
	return b
}

func TestCallbackCompletesOnceDespiteRepeats(t *testing.T) {
	r := newRig(t, opts{})
	st := r.receive("a.pdf")
	doc := r.waitVendor(st.DocumentID, events.StatusSubmitted)
	ref := doc.Vendors["allspark"].Ref
	for i := 0; i < 3; i++ { // the vendor repeats itself, as string and as number
		body := caseBody(ref)
		if i == 1 {
			n, _ := strconv.Atoi(ref)
			body = caseBody(n)
		}
		if status, b := r.post("/v1/callbacks/allspark/"+token, body, nil); status != http.StatusAccepted {
			t.Fatalf("callback: %d %s", status, b)
		}
	}
	r.waitVendor(st.DocumentID, events.StatusCompleted)
	eventstest.WaitFor(t, 5*time.Second, "callbacks resolved", func() bool { return r.count(r.bus.Names().Root()+".callback.>") >= 2 })
	if n := r.count(fmt.Sprintf("%s.document.completed.allspark", r.bus.Names().Root())); n != 1 {
		t.Fatalf("%d completed events", n)
	}
}

func TestCallbackBeforeSubmittedIsNotLost(t *testing.T) {
	r := newRig(t, opts{})
	// The simulator numbers cases from 1: the callback for case 1 arrives before the document.
	if status, b := r.post("/v1/callbacks/allspark/"+token, caseBody(1), nil); status != http.StatusAccepted {
		t.Fatalf("%d %s", status, b)
	}
	st := r.receive("early.pdf")
	r.waitVendor(st.DocumentID, events.StatusCompleted)
}

func TestLostCallbackPollingCompletes(t *testing.T) {
	r := newRig(t, opts{grace: 200 * time.Millisecond})
	st := r.receive("quiet.pdf")
	r.waitVendor(st.DocumentID, events.StatusCompleted)
}

// Callbacks that do not prove themselves are refused; those that do but carry nothing readable
// are taken and make us ask the vendor — whose API, not the callback, decides: a case it still
// works on is not completed by any of them.
func TestForgedCallbacks(t *testing.T) {
	r := newRig(t, opts{parkWindow: 300 * time.Millisecond, pendingPolls: 1 << 20})
	st := r.receive("victim.pdf")
	r.waitVendor(st.DocumentID, events.StatusSubmitted)
	cases := []struct {
		name   string
		path   string
		body   []byte
		status int
	}{
		{"wrong token", "/v1/callbacks/allspark/" + strings.Repeat("x", len(token)), caseBody(1), 404},
		{"token prefix", "/v1/callbacks/allspark/" + token[:10], caseBody(1), 404},
		{"unknown vendor", "/v1/callbacks/gini/" + token, caseBody(1), 404},
		{"oversized", "/v1/callbacks/allspark/" + token, append([]byte(`{"case_id":1,"pad":"`), append(bytes.Repeat([]byte("x"), 70<<10), '"', '}')...), 413},
		{"invalid JSON", "/v1/callbacks/allspark/" + token, []byte(`{"case_id":`), 202},
		{"no case id", "/v1/callbacks/allspark/" + token, []byte(`{"status":"completed"}`), 202},
		{"hostile case id", "/v1/callbacks/allspark/" + token, caseBody("1/../../admin"), 202},
	}
	for _, c := range cases {
		if status, b := r.post(c.path, c.body, nil); status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, b, c.status)
		}
	}
	// A well-formed callback for a case that is not ours (another tenant's): accepted, never
	// completes anything, recorded as unmatched.
	if status, _ := r.post("/v1/callbacks/allspark/"+token, caseBody(999999), nil); status != 202 {
		t.Fatalf("unknown case: %d", status)
	}
	eventstest.WaitFor(t, 10*time.Second, "the unmatched record", func() bool { return r.count(r.bus.Names().Root()+".callback.unmatched.>") == 1 })
	if d, _ := r.bus.States().Get(context.Background(), st.DocumentID); d.Status == events.StatusCompleted {
		t.Fatal("a forged callback completed a document")
	}
}

func TestAllowList(t *testing.T) {
	r := newRig(t, opts{cidrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if status, _ := r.post("/v1/callbacks/allspark/"+token, caseBody(1), nil); status != 404 {
		t.Fatalf("from outside the allow-list: %d", status)
	}
}

// sign computes Cradl's signature the way its receiver does, written out independently of the
// receiver's code: method, URL, then "name:value" for each signed header in sorted order, then
// the body.
func sign(method, url string, h http.Header, body []byte) string {
	var names []string
	for _, n := range strings.Split(h.Get("X-Cradl-SignedHeaders"), ",") {
		if n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	s := strings.ToUpper(method) + url
	for _, n := range names {
		s += strings.ToLower(n) + ":" + h.Get(n)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(s + string(body)))
	return hex.EncodeToString(m.Sum(nil))
}

// Cradl signs what its X-Cradl-SignedHeaders lists, with or without timestamp and nonce; what is
// sent is checked (the signature, a timestamp's window, a nonce's novelty). Unsigned requests
// pass only with require_signed_webhooks off, and never with a bad signature.
func TestCradlSignatures(t *testing.T) {
	for _, requireSigned := range []bool{true, false} {
		t.Run(fmt.Sprintf("require_signed=%v", requireSigned), func(t *testing.T) { cradlSignatures(t, requireSigned) })
	}
}

func cradlSignatures(t *testing.T, requireSigned bool) {
	r := newRig(t, opts{unsignedCradl: !requireSigned})
	path := "/v1/callbacks/cradl/" + token
	body := []byte(`{"executionId":"las:workflow-execution:abc"}`)
	signed := func(ts time.Time, nonce, list string, mutate func(http.Header)) http.Header {
		h := http.Header{}
		if !ts.IsZero() {
			h.Set("X-Cradl-Timestamp", strconv.FormatInt(ts.Unix(), 10))
		}
		if nonce != "" {
			h.Set("X-Cradl-Nonce", nonce)
		}
		if list != "" {
			h.Set("X-Cradl-SignedHeaders", list)
		}
		h.Set("X-Cradl-Signature", sign("POST", r.url+path, h, body))
		if mutate != nil {
			mutate(h)
		}
		return h
	}
	now, both := time.Now(), "x-cradl-timestamp,x-cradl-nonce"
	unsigned := 401
	if !requireSigned {
		unsigned = 202
	}
	cases := []struct {
		name   string
		hdr    http.Header
		status int
	}{
		{"good", signed(now, "n1", both, nil), 202},
		{"replayed nonce", signed(now, "n1", both, nil), 409},
		{"bad signature", signed(now, "n2", both, func(h http.Header) { h.Set("X-Cradl-Signature", strings.Repeat("ab", 32)) }), 401},
		{"stale timestamp", signed(now.Add(-6*time.Minute), "n3", both, nil), 401},
		{"future timestamp", signed(now.Add(6*time.Minute), "n4", both, nil), 401},
		{"nonce only signed", signed(now, "n5", "x-cradl-nonce", nil), 202},
		{"nothing but the body signed", signed(time.Time{}, "", "", nil), 202},
		{"a signed header missing", signed(now, "n6", both, func(h http.Header) { h.Del("X-Cradl-Nonce") }), 401},
		{"timestamp changed after signing", signed(now, "n7", both, func(h http.Header) { h.Set("X-Cradl-Timestamp", strconv.FormatInt(now.Unix()-1, 10)) }), 401},
		{"unsigned", http.Header{}, unsigned},
	}
	for _, c := range cases {
		if status, b := r.post(path, body, c.hdr); status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, b, c.status)
		}
	}
	// The body is signed: the same headers over another body fail.
	h := signed(now, "n8", both, nil)
	if status, _ := r.post(path, []byte(`{"executionId":"las:workflow-execution:other"}`), h); status != 401 {
		t.Errorf("tampered body: %d", status)
	}
}

// What the headers decide is decided before the body is read: an unsigned or stale Cradl
// webhook, a wrong token, a body announced larger than the limit — each announcing 10 MiB that
// never comes — is answered at once, and the connection closed rather than drained.
func TestRefusedBeforeTheBody(t *testing.T) {
	r := newRig(t, opts{})
	stale := "X-Cradl-Timestamp: " + strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10) +
		"\r\nX-Cradl-Nonce: n\r\nX-Cradl-SignedHeaders: x-cradl-timestamp,x-cradl-nonce\r\nX-Cradl-Signature: " + strings.Repeat("ab", 32) + "\r\n"
	for _, c := range []struct {
		name, path, header string
		status             int
	}{
		{"unsigned", "/v1/callbacks/cradl/" + token, "", 401},
		{"stale", "/v1/callbacks/cradl/" + token, stale, 401},
		{"wrong token", "/v1/callbacks/cradl/" + strings.Repeat("y", len(token)), "", 404},
		{"too large", "/v1/callbacks/allspark/" + token, "", 413},
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		// Only guards the test: without the early answer, it would wait for a body never sent.
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n", c.path, 10<<20, c.header)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("%s: no answer without the body: %v", c.name, err)
		}
		if res.StatusCode != c.status || !res.Close {
			t.Errorf("%s: %d close=%v, want %d and the connection closed", c.name, res.StatusCode, res.Close, c.status)
		}
	}
}

// Allspark documents its callback only as "an API call … with the data": whatever reading the
// simulator plays — the case as JSON, a short {"id"}, an envelope with the case nested, a form
// post, a GET with a query, or a body nobody can read — the document completes without polling
// (held off for an hour), each once.
func TestAllsparkCallbackFormats(t *testing.T) {
	for _, f := range []allsparksim.CallbackFormat{allsparksim.CallbackJSON, allsparksim.CallbackJSONID, allsparksim.CallbackJSONNested,
		allsparksim.CallbackJSONData, allsparksim.CallbackForm, allsparksim.CallbackQuery, allsparksim.CallbackGarbage} {
		t.Run(string(f), func(t *testing.T) {
			r := newRig(t, opts{callbackFormat: f, pendingPolls: 1 << 20})
			a, b := r.receive("a.pdf"), r.receive("b.pdf")
			r.waitVendor(a.DocumentID, events.StatusCompleted)
			r.waitVendor(b.DocumentID, events.StatusCompleted)
			for _, call := range r.sim.Calls() {
				if call.Status != http.StatusAccepted {
					t.Errorf("callback %+v: want 202", call)
				}
			}
			if n := r.count(r.bus.Names().Root() + ".document.completed.allspark"); n != 2 {
				t.Fatalf("%d completed events, want 2", n)
			}
		})
	}
}
