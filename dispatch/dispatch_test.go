package dispatch_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/dispatch"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/intake"
	"github.com/ingest-dev/ingest/liveness"
	"github.com/ingest-dev/ingest/vendors"
)

// fakeVendor is a vendor in memory, with knobs for every way a real one behaves.
type fakeVendor struct {
	name string

	mu       sync.Mutex
	uploads  map[string]int    // sha256 → accepted uploads
	byRef    map[string]string // ref → filename
	names    map[string]string // ref → the name as uploaded (with the tag)
	created  map[string]time.Time
	calls    int
	checks   map[string]int
	pending  int                    // checks answered "not yet" per ref
	submitFn func(n int) error      // called per Submit attempt (1-based) before accepting; nil accepts
	resultFn func(ref string) error // called per Result before answering; an error is the answer
	hang     chan struct{}          // when set, Submit accepts the upload and then hangs until ctx ends
	failRef  bool                   // Check reports a vendor-side error
	bigText  int
	finds    int // Find calls (reconcilingVendor)
}

func newFake(name string) *fakeVendor {
	return &fakeVendor{name: name, uploads: map[string]int{}, byRef: map[string]string{}, names: map[string]string{},
		created: map[string]time.Time{}, checks: map[string]int{}}
}

func (f *fakeVendor) Name() string { return f.name }

func (f *fakeVendor) Submit(ctx context.Context, doc vendors.Document) (string, error) {
	f.mu.Lock()
	f.calls++
	n, fn, hang := f.calls, f.submitFn, f.hang
	f.mu.Unlock()
	if fn != nil {
		if err := fn(n); err != nil {
			return "", err
		}
	}
	r, err := doc.Open(ctx)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return "", err
	}
	if int64(len(b)) != doc.Size {
		return "", fmt.Errorf("got %d bytes, want %d", len(b), doc.Size)
	}
	ref := fmt.Sprintf("%s-%d", f.name, n)
	f.mu.Lock()
	f.uploads[doc.SHA256]++
	f.byRef[ref] = doc.Filename
	f.names[ref] = vendors.UploadName(doc)
	f.created[ref] = time.Now()
	f.mu.Unlock()
	if hang != nil {
		<-ctx.Done() // the vendor has it; we never hear so
		return "", ctx.Err()
	}
	return ref, nil
}

func (f *fakeVendor) Check(_ context.Context, ref string) (vendors.Progress, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.byRef[ref]; !ok {
		return vendors.Progress{}, &vendors.Error{Vendor: f.name, Op: "status", Status: 404, Permanent: true, Message: "unknown ref " + ref}
	}
	f.checks[ref]++
	if f.checks[ref] <= f.pending {
		return vendors.Progress{RetryAfter: 50 * time.Millisecond}, nil
	}
	if f.failRef {
		return vendors.Progress{Done: true, Failed: true, Error: "ERROR: document unreadable"}, nil
	}
	return vendors.Progress{Done: true}, nil
}

func (f *fakeVendor) Result(_ context.Context, ref string) (vendors.Result, error) {
	f.mu.Lock()
	name := f.byRef[ref]
	big, fn := f.bigText, f.resultFn
	f.mu.Unlock()
	if fn != nil {
		if err := fn(ref); err != nil {
			return vendors.Result{}, err
		}
	}
	text := "text of " + name
	if big > 0 {
		text = strings.Repeat("x", big)
	}
	return vendors.Result{
		Text:   text,
		Fields: []events.Field{{Name: "invoiceId", Value: "INV-" + ref}, {Name: "amountToPay", Value: "24.99", Currency: "EUR"}},
		Raw:    []byte(`{"ref":"` + ref + `"}`),
		Artifacts: []vendors.Artifact{{Name: "../result.zip", ContentType: "application/zip", Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("PK fake zip of " + ref)), nil
		}}},
	}, nil
}

// submitCalls is how many times Submit was called.
func (f *fakeVendor) submitCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeVendor) uploadsOf(sha string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.uploads[sha]
}

// reconcilingVendor can also be asked whether it has a document. find, when set and ok, answers
// instead (an Unknown, an error).
type reconcilingVendor struct {
	*fakeVendor
	find func() (l vendors.Lookup, err error, ok bool)
}

func (r reconcilingVendor) Find(_ context.Context, doc vendors.Document, since time.Time) (vendors.Lookup, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finds++
	if r.find != nil {
		if l, err, ok := r.find(); ok {
			return l, err
		}
	}
	m := vendors.Matcher{DocID: doc.ID}
	for ref, name := range r.names {
		if !r.created[ref].Before(since) {
			m.Offer(ref, name)
		}
	}
	return m.Lookup(true, ""), nil
}

type rig struct {
	t   *testing.T
	bus *events.Bus
	in  *intake.Intake
	vs  map[string]vendors.Vendor
	m   *dispatch.Metrics
	reg *prometheus.Registry // m's
}

func newRig(t *testing.T, vs ...vendors.Vendor) *rig {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	p, err := bus.NewProjector(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, p.Run)
	reg := prometheus.NewRegistry()
	m, err := dispatch.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, bus: bus, vs: map[string]vendors.Vendor{}, m: m, reg: reg}
	for _, v := range vs {
		r.vs[v.Name()] = v
	}
	return r
}

// route makes received events name their vendors, as the service does.
func (r *rig) route(rules []dispatch.Rule) {
	router, err := dispatch.NewRouter(rules, r.names())
	if err != nil {
		r.t.Fatal(err)
	}
	if r.in, err = intake.New(intake.Config{Bus: r.bus, Route: router.Route}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) names() []string {
	var out []string
	for n := range r.vs {
		out = append(out, n)
	}
	return out
}

// instance is a running ingest instance's heartbeat; stop ends it as a kill -9 would end its
// beating (the heartbeat is gone at once, as after its TTL).
func (r *rig) instance() (reg *liveness.Registry, stop func()) {
	r.t.Helper()
	reg, err := liveness.New(context.Background(), liveness.Config{Bus: r.bus, TTL: time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := reg.Beat(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = reg.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	r.t.Cleanup(stop)
	return reg, stop
}

// dispatcher is a running Dispatcher of its own instance.
type dispatcher struct {
	*dispatch.Dispatcher
	stop          func() // ends Run: calls in hand get Config.Drain (50 ms here)
	stopHeartbeat func()
}

// kill stops the dispatcher as a crash would: calls in hand are cut off, and its instance's
// heartbeat is gone.
func (d dispatcher) kill() {
	d.stop()
	d.stopHeartbeat()
}

// runUntil runs run in the background; the returned stop ends it and waits (also at cleanup).
func runUntil(t testing.TB, run func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func (r *rig) dispatcher(rules []dispatch.Rule, tweak func(*dispatch.Config)) dispatcher {
	r.t.Helper()
	router, err := dispatch.NewRouter(rules, r.names())
	if err != nil {
		r.t.Fatal(err)
	}
	reg, stop := r.instance()
	cfg := dispatch.Config{Bus: r.bus, Vendors: r.vs, Router: router, Workers: 4,
		RetryInitial: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, Metrics: r.m, Liveness: reg,
		Drain: 50 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	r.route(rules)
	d, err := dispatch.NewDispatcher(context.Background(), cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	return dispatcher{Dispatcher: d, stop: runUntil(r.t, d.Run), stopHeartbeat: stop}
}

func (r *rig) poller(deadline time.Duration) *dispatch.Poller {
	r.t.Helper()
	settings := map[string]vendors.PollSettings{}
	for n := range r.vs {
		settings[n] = vendors.PollSettings{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond, Deadline: deadline}
	}
	p, err := dispatch.NewPoller(context.Background(), dispatch.PollConfig{Bus: r.bus, Vendors: r.vs, Settings: settings, Metrics: r.m,
		Drain: 50 * time.Millisecond})
	if err != nil {
		r.t.Fatal(err)
	}
	runUntil(r.t, p.Run)
	return p
}

// receive stores a document and announces it, as any source does.
func (r *rig) receive(name string, body []byte, vendorNames ...string) intake.Staged {
	r.t.Helper()
	ctx := context.Background()
	st, err := r.in.Stage(ctx, intake.NewDocumentID(), name, bytes.NewReader(body), 1<<20)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.in.Commit(ctx, st, intake.Origin{Source: events.SourceRef{Kind: "http", Name: "api"}, Vendors: vendorNames}); err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *rig) waitStatus(id string, want events.Status) events.Document {
	r.t.Helper()
	var doc events.Document
	eventstest.WaitFor(r.t, 20*time.Second, fmt.Sprintf("document %s to be %s", id, want), func() bool {
		var err error
		doc, err = r.bus.States().Get(context.Background(), id)
		return err == nil && doc.Status == want
	})
	return doc
}

func (r *rig) eventsOf(id string) []events.Event {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, _ := r.bus.JetStream().Stream(ctx, r.bus.Names().Stream())
	info, _ := s.Info(ctx)
	var out []events.Event
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if ev, err := events.Decode(m.Data); err == nil && ev.Subject == id {
			out = append(out, ev)
		}
	}
	return out
}

func pdf(s string) []byte { return []byte("%PDF-1.7\n" + s) }

var all = []dispatch.Rule{{Name: "default", Vendors: []string{"gini"}}}

func TestDispatchAndPollToCompletion(t *testing.T) {
	gini := newFake("gini")
	gini.pending = 3
	r := newRig(t, gini)
	r.dispatcher(all, nil)
	r.poller(time.Hour)
	st := r.receive("invoice.pdf", pdf("one"))
	doc := r.waitStatus(st.DocumentID, events.StatusCompleted)
	vs := doc.Vendors["gini"]
	if vs == nil || vs.Ref != "gini-1" || vs.SubmittedAt.IsZero() {
		t.Fatalf("vendor slot %+v", vs)
	}
	var completed events.CompletedData
	kinds := map[events.Kind]int{}
	for _, ev := range r.eventsOf(st.DocumentID) {
		kinds[ev.Kind()]++
		if ev.Kind() == events.Completed {
			if err := ev.DecodeData(&completed); err != nil {
				t.Fatal(err)
			}
			if ev.Source != "/vendors/gini" || ev.ID != st.DocumentID+".completed.gini" {
				t.Fatalf("completed envelope %+v", ev)
			}
		}
	}
	if kinds[events.Received] != 1 || kinds[events.Submitted] != 1 || kinds[events.Completed] != 1 || len(kinds) != 3 {
		t.Fatalf("events %v", kinds)
	}
	if completed.Text != "text of invoice.pdf" || len(completed.Fields) != 2 || completed.Fields[1].Currency != "EUR" ||
		string(completed.Raw) != `{"ref":"gini-1"}` || len(completed.Artifacts) != 1 {
		t.Fatalf("completed %+v", completed)
	}
	a := completed.Artifacts[0]
	if a.Name != "result.zip" || a.ObjectKey != "results/"+st.DocumentID+"/gini/result.zip" {
		t.Fatalf("artifact %+v", a)
	}
	rc, _, err := r.bus.Blobs().Open(context.Background(), a.ObjectKey)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "PK fake zip of gini-1" {
		t.Fatalf("artifact bytes %q", b)
	}
	if gini.checks["gini-1"] != 4 {
		t.Fatalf("%d checks, want 3 pending + 1 done", gini.checks["gini-1"])
	}
}

func TestFanOutToTwoVendors(t *testing.T) {
	gini, laigo := newFake("gini"), newFake("laigo")
	laigo.pending = 2
	r := newRig(t, gini, laigo)
	r.dispatcher([]dispatch.Rule{{Name: "both", Vendors: []string{"gini", "laigo"}}}, nil)
	r.poller(time.Hour)
	st := r.receive("a.pdf", pdf("fan-out"))
	doc := r.waitStatus(st.DocumentID, events.StatusCompleted)
	if len(doc.Vendors) != 2 || doc.Vendors["gini"].Status != events.StatusCompleted || doc.Vendors["laigo"].Status != events.StatusCompleted {
		t.Fatalf("vendors %+v", doc.Vendors)
	}
	completions := 0
	for _, ev := range r.eventsOf(st.DocumentID) {
		if ev.Kind() == events.Completed {
			completions++
		}
	}
	if completions != 2 || gini.uploadsOf(st.SHA256) != 1 || laigo.uploadsOf(st.SHA256) != 1 {
		t.Fatalf("%d completions, uploads gini %d laigo %d", completions, gini.uploadsOf(st.SHA256), laigo.uploadsOf(st.SHA256))
	}
}

func TestPermanentRefusalFails(t *testing.T) {
	gini := newFake("gini")
	gini.submitFn = func(int) error {
		return &vendors.Error{Vendor: "gini", Op: "submit", Status: 415, Permanent: true, Message: "Unsupported Media Type: the file is encrypted"}
	}
	r := newRig(t, gini)
	r.dispatcher(all, nil)
	st := r.receive("locked.pdf", pdf("locked"))
	doc := r.waitStatus(st.DocumentID, events.StatusFailed)
	if !strings.Contains(doc.Vendors["gini"].Error, "the file is encrypted") {
		t.Fatalf("error %q does not carry the vendor's words", doc.Vendors["gini"].Error)
	}
	calls := gini.submitCalls()
	if calls != 1 {
		t.Fatalf("a refused document was tried %d times", calls)
	}
}

func TestTransientErrorsAreRetriedWithRetryAfter(t *testing.T) {
	gini := newFake("gini")
	gini.submitFn = func(n int) error {
		if n <= 2 {
			return &vendors.Error{Vendor: "gini", Op: "submit", Status: 503, Message: "try later", RetryAfter: 30 * time.Millisecond}
		}
		return nil
	}
	r := newRig(t, gini)
	d := r.dispatcher(all, nil)
	r.poller(time.Hour)
	st := r.receive("a.pdf", pdf("retry"))
	doc := r.waitStatus(st.DocumentID, events.StatusCompleted)
	if gini.uploadsOf(st.SHA256) != 1 {
		t.Fatalf("%d uploads", gini.uploadsOf(st.SHA256))
	}
	d.Enrich(context.Background(), &doc)
	if doc.Vendors["gini"].Attempts != 3 {
		t.Fatalf("attempts %d, want 3", doc.Vendors["gini"].Attempts)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	gini := newFake("gini")
	gini.submitFn = func(int) error {
		return &vendors.Error{Vendor: "gini", Op: "submit", Status: 502, Message: "bad gateway"}
	}
	r := newRig(t, gini)
	r.dispatcher(all, func(c *dispatch.Config) { c.MaxAttempts = 3 })
	st := r.receive("a.pdf", pdf("doomed"))
	doc := r.waitStatus(st.DocumentID, events.StatusFailed)
	if e := doc.Vendors["gini"].Error; !strings.Contains(e, "gave up after 3 attempts") || !strings.Contains(e, "bad gateway") {
		t.Fatalf("error %q", e)
	}
}

func TestUnknownVendorFails(t *testing.T) {
	r := newRig(t, newFake("gini"))
	r.dispatcher(all, nil)
	st := r.receive("a.pdf", pdf("x"), "cradl")
	doc := r.waitStatus(st.DocumentID, events.StatusFailed)
	if !strings.Contains(doc.Vendors["cradl"].Error, "not enabled") {
		t.Fatalf("%+v", doc.Vendors)
	}
}

func TestVendorSideErrorAndDeadline(t *testing.T) {
	gini := newFake("gini")
	gini.failRef = true
	r := newRig(t, gini)
	r.dispatcher(all, nil)
	r.poller(time.Hour)
	st := r.receive("a.pdf", pdf("unreadable"))
	doc := r.waitStatus(st.DocumentID, events.StatusFailed)
	if !strings.Contains(doc.Vendors["gini"].Error, "document unreadable") {
		t.Fatalf("%+v", doc.Vendors["gini"])
	}

	slow := newFake("laigo")
	slow.pending = 1 << 30
	r2 := newRig(t, slow)
	r2.dispatcher([]dispatch.Rule{{Name: "d", Vendors: []string{"laigo"}}}, nil)
	r2.poller(300 * time.Millisecond)
	st2 := r2.receive("b.pdf", pdf("never done"))
	doc2 := r2.waitStatus(st2.DocumentID, events.StatusFailed)
	if !strings.Contains(doc2.Vendors["laigo"].Error, "poll deadline") {
		t.Fatalf("%+v", doc2.Vendors["laigo"])
	}
}

// Two dispatchers on one stream, many documents: each reaches the vendor once.
func TestTwoDispatchersSubmitOnce(t *testing.T) {
	gini := newFake("gini")
	r := newRig(t, gini)
	r.dispatcher(all, nil)
	r.dispatcher(all, nil)
	r.poller(time.Hour)
	var docs []intake.Staged
	for i := range 40 {
		docs = append(docs, r.receive(fmt.Sprintf("d%d.pdf", i), pdf(fmt.Sprintf("document %d", i))))
	}
	for _, st := range docs {
		r.waitStatus(st.DocumentID, events.StatusCompleted)
		if n := gini.uploadsOf(st.SHA256); n != 1 {
			t.Fatalf("document uploaded %d times", n)
		}
	}
}

// The dispatcher dies during the upload (the vendor got the document, we never heard): the next
// one finds the submission at the vendor instead of uploading again.
func TestInterruptedSubmissionIsReconciled(t *testing.T) {
	fake := newFake("allspark")
	fake.hang = make(chan struct{})
	v := reconcilingVendor{fakeVendor: fake}
	r := newRig(t, v)
	rules := []dispatch.Rule{{Name: "d", Vendors: []string{"allspark"}}}
	d1 := r.dispatcher(rules, nil)
	st := r.receive("case.pdf", pdf("in doubt"))
	eventstest.WaitFor(t, 10*time.Second, "the upload to reach the vendor", func() bool { return fake.uploadsOf(st.SHA256) == 1 })
	d1.kill() // mid-call
	fake.mu.Lock()
	fake.hang = nil
	fake.mu.Unlock()

	r.dispatcher(rules, nil)
	r.poller(time.Hour)
	doc := r.waitStatus(st.DocumentID, events.StatusCompleted)
	if n := fake.uploadsOf(st.SHA256); n != 1 {
		t.Fatalf("uploaded %d times after reconciliation", n)
	}
	var sd events.SubmittedData
	for _, ev := range r.eventsOf(st.DocumentID) {
		if ev.Kind() == events.Submitted {
			_ = ev.DecodeData(&sd)
		}
	}
	if !sd.Reconciled || doc.Vendors["allspark"].Ref != "allspark-1" {
		t.Fatalf("submitted %+v, slot %+v", sd, doc.Vendors["allspark"])
	}
}

// A worker whose instance lives but which is stuck on a submission: once the lease runs out the
// attempt is reconciled; a vendor that cannot be asked gets the document again, and that is
// counted.
func TestExpiredLeaseWithoutReconciler(t *testing.T) {
	fake := newFake("laigo")
	fake.hang = make(chan struct{})
	r := newRig(t, fake)
	rules := []dispatch.Rule{{Name: "d", Vendors: []string{"laigo"}}}
	d1 := r.dispatcher(rules, func(c *dispatch.Config) { c.Lease = 300 * time.Millisecond })
	st := r.receive("x.pdf", pdf("lease"))
	eventstest.WaitFor(t, 10*time.Second, "the upload", func() bool { return fake.uploadsOf(st.SHA256) == 1 })
	d1.stop() // its heartbeat goes on
	fake.mu.Lock()
	fake.hang = nil
	fake.mu.Unlock()
	r.dispatcher(rules, func(c *dispatch.Config) { c.Lease = 300 * time.Millisecond })
	r.poller(time.Hour)
	r.waitStatus(st.DocumentID, events.StatusCompleted)
	if n := fake.uploadsOf(st.SHA256); n != 2 {
		t.Fatalf("uploads %d: an unreconcilable vendor gets the document again", n)
	}
}

func TestOversizedResultGoesToTheObjectStore(t *testing.T) {
	gini := newFake("gini")
	gini.bigText = 2 << 20
	r := newRig(t, gini)
	r.dispatcher(all, nil)
	r.poller(time.Hour)
	st := r.receive("huge.pdf", pdf("huge"))
	r.waitStatus(st.DocumentID, events.StatusCompleted)
	var cd events.CompletedData
	for _, ev := range r.eventsOf(st.DocumentID) {
		if ev.Kind() == events.Completed {
			_ = ev.DecodeData(&cd)
		}
	}
	if cd.ResultObjectKey == "" || cd.Text != "" {
		t.Fatalf("completed %+v", cd.ResultObjectKey)
	}
	rc, info, err := r.bus.Blobs().Open(context.Background(), cd.ResultObjectKey)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if info.Size < 2<<20 {
		t.Fatalf("stored result is %d bytes", info.Size)
	}
}

// A vendor that cannot say whether it has an interrupted submission (a listing cut short): the
// document is not submitted again on a guess. The slot says it is in doubt, and after
// InDoubtTimeout the pair fails naming the vendor's candidates, for an operator to decide.
func TestUnknownIsNeverResubmitted(t *testing.T) {
	fake := newFake("allspark")
	fake.hang = make(chan struct{})
	v := reconcilingVendor{fakeVendor: fake, find: func() (vendors.Lookup, error, bool) {
		return vendors.Lookup{Outcome: vendors.Unknown, Candidates: []string{"case-77"}, Reason: "the case list was cut short"}, nil, true
	}}
	r := newRig(t, v)
	rules := []dispatch.Rule{{Name: "d", Vendors: []string{"allspark"}}}
	d1 := r.dispatcher(rules, nil)
	st := r.receive("case.pdf", pdf("unknown"))
	eventstest.WaitFor(t, 10*time.Second, "the upload to reach the vendor", func() bool { return fake.uploadsOf(st.SHA256) == 1 })
	d1.kill()
	fake.mu.Lock()
	fake.hang = nil
	fake.mu.Unlock()

	d2 := r.dispatcher(rules, func(c *dispatch.Config) { c.InDoubtTimeout = 2 * time.Second })
	eventstest.WaitFor(t, 10*time.Second, "the vendor to be asked twice", func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return fake.finds >= 2
	})
	doc, err := r.bus.States().Get(context.Background(), st.DocumentID)
	if err != nil {
		t.Fatal(err)
	}
	d2.Enrich(context.Background(), &doc)
	vs := doc.Vendors["allspark"]
	if vs == nil || !vs.InDoubt || len(vs.Candidates) != 1 || !strings.Contains(vs.LastError, "cut short") {
		t.Fatalf("vendor slot while in doubt: %+v", vs)
	}
	doc = r.waitStatus(st.DocumentID, events.StatusFailed)
	if e := doc.Vendors["allspark"].Error; !strings.Contains(e, "case-77") || !strings.Contains(e, "cut short") {
		t.Fatalf("failure %q does not name the candidates and the reason", e)
	}
	if n := fake.uploadsOf(st.SHA256); n != 1 {
		t.Fatalf("uploaded %d times; an Unknown must never be submitted again", n)
	}
}

// Asking the vendor fails (it is down): that is not an answer either.
func TestFindErrorIsNotAbsent(t *testing.T) {
	fake := newFake("allspark")
	fake.hang = make(chan struct{})
	var mu sync.Mutex
	down := true
	v := reconcilingVendor{fakeVendor: fake}
	v.find = func() (vendors.Lookup, error, bool) {
		mu.Lock()
		defer mu.Unlock()
		return vendors.Lookup{}, &vendors.Error{Vendor: "allspark", Op: "find", Status: 503, Message: "maintenance"}, down
	}
	r := newRig(t, v)
	rules := []dispatch.Rule{{Name: "d", Vendors: []string{"allspark"}}}
	d1 := r.dispatcher(rules, nil)
	st := r.receive("case.pdf", pdf("vendor down"))
	eventstest.WaitFor(t, 10*time.Second, "the upload", func() bool { return fake.uploadsOf(st.SHA256) == 1 })
	d1.kill()
	fake.mu.Lock()
	fake.hang = nil
	fake.mu.Unlock()
	r.dispatcher(rules, nil)
	r.poller(time.Hour)
	eventstest.WaitFor(t, 10*time.Second, "the vendor to be asked thrice", func() bool {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return fake.finds >= 3
	})
	if n := fake.uploadsOf(st.SHA256); n != 1 {
		t.Fatalf("uploaded %d times while the vendor could not be asked", n)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	doc := r.waitStatus(st.DocumentID, events.StatusCompleted)
	if n := fake.uploadsOf(st.SHA256); n != 1 || doc.Vendors["allspark"].Ref != "allspark-1" {
		t.Fatalf("uploads %d, slot %+v", n, doc.Vendors["allspark"])
	}
}

// A dispatcher whose instance is alive keeps its submission however long the vendor takes; the
// moment the instance is gone, another takes over without waiting for the lease.
func TestDeadOwnerIsTakenOverAtOnce(t *testing.T) {
	fake := newFake("allspark")
	fake.hang = make(chan struct{})
	v := reconcilingVendor{fakeVendor: fake}
	r := newRig(t, v)
	rules := []dispatch.Rule{{Name: "d", Vendors: []string{"allspark"}}}
	d1 := r.dispatcher(rules, nil) // lease: the default 10 minutes
	st := r.receive("case.pdf", pdf("owner dies"))
	eventstest.WaitFor(t, 10*time.Second, "the upload", func() bool { return fake.uploadsOf(st.SHA256) == 1 })
	r.dispatcher(rules, nil)
	r.poller(time.Hour)
	fake.mu.Lock()
	fake.hang = nil
	fake.mu.Unlock()
	d1.kill()
	doc := r.waitStatus(st.DocumentID, events.StatusCompleted)
	if n := fake.uploadsOf(st.SHA256); n != 1 || doc.Vendors["allspark"].Ref != "allspark-1" {
		t.Fatalf("uploads %d, slot %+v", n, doc.Vendors["allspark"])
	}
}

// panicky panics on the documents named boom.pdf, in Submit or in Result.
type panicky struct {
	*fakeVendor
	inSubmit bool
}

func (p panicky) Submit(ctx context.Context, doc vendors.Document) (string, error) {
	if p.inSubmit && doc.Filename == "boom.pdf" {
		panic("a vendor answer met a bug")
	}
	return p.fakeVendor.Submit(ctx, doc)
}

func (p panicky) Result(ctx context.Context, ref string) (vendors.Result, error) {
	p.mu.Lock()
	name := p.byRef[ref]
	p.mu.Unlock()
	if !p.inSubmit && name == "boom.pdf" {
		var m map[string]int
		m["x"]++ // a nil map: the kind of bug a malformed answer finds
	}
	return p.fakeVendor.Result(ctx, ref)
}

// A handler that panics fails that one document, with a failed event; the process and the next
// document go on.
func TestPanicFailsOneDocument(t *testing.T) {
	for _, where := range []string{"dispatch", "poll"} {
		t.Run(where, func(t *testing.T) {
			v := panicky{fakeVendor: newFake("gini"), inSubmit: where == "dispatch"}
			r := newRig(t, v)
			r.dispatcher(all, nil)
			r.poller(time.Hour)
			boom := r.receive("boom.pdf", pdf("boom "+where))
			fine := r.receive("fine.pdf", pdf("fine "+where))
			doc := r.waitStatus(boom.DocumentID, events.StatusFailed)
			if e := doc.Vendors["gini"].Error; !strings.Contains(e, "internal error") {
				t.Fatalf("failure %q does not say what happened", e)
			}
			r.waitStatus(fine.DocumentID, events.StatusCompleted)
		})
	}
}

// A vendor taken out of the configuration while documents wait at it: they fail, naming it, at
// once — no redelivery every minute until the stream forgets them.
func TestRemovedVendorFailsItsDocuments(t *testing.T) {
	gini := newFake("gini")
	gini.pending = 1 << 30 // never done
	r := newRig(t, gini)
	d1 := r.dispatcher(all, nil)
	stopPoll := runUntil(t, func(ctx context.Context) error {
		p, err := dispatch.NewPoller(ctx, dispatch.PollConfig{Bus: r.bus, Vendors: r.vs, Metrics: r.m, Drain: 50 * time.Millisecond,
			Settings: map[string]vendors.PollSettings{"gini": {Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}}})
		if err != nil {
			return err
		}
		return p.Run(ctx)
	})
	st := r.receive("a.pdf", pdf("waiting"))
	r.waitStatus(st.DocumentID, events.StatusSubmitted)
	eventstest.WaitFor(t, 10*time.Second, "a poll", func() bool {
		gini.mu.Lock()
		defer gini.mu.Unlock()
		return gini.checks["gini-1"] > 0
	})
	stopPoll()
	// Restarted without gini.
	p, err := dispatch.NewPoller(context.Background(), dispatch.PollConfig{Bus: r.bus, Vendors: map[string]vendors.Vendor{}, Metrics: r.m})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, p.Run)
	doc := r.waitStatus(st.DocumentID, events.StatusFailed)
	if e := doc.Vendors["gini"].Error; !strings.Contains(e, `vendor "gini" is not enabled`) {
		t.Fatalf("failure %q does not name the vendor", e)
	}
	// And a document routed to it before it went is failed by the dispatcher the same way.
	d1.stop()
	router, _ := dispatch.NewRouter(all, []string{"gini"})
	in, _ := intake.New(intake.Config{Bus: r.bus, Route: router.Route})
	d, err := dispatch.NewDispatcher(context.Background(), dispatch.Config{Bus: r.bus, Vendors: map[string]vendors.Vendor{}, Router: router, Metrics: r.m})
	if err != nil {
		t.Fatal(err)
	}
	r.in = in
	st2 := r.receive("b.pdf", pdf("routed before"))
	runUntil(t, d.Run)
	doc2 := r.waitStatus(st2.DocumentID, events.StatusFailed)
	if e := doc2.Vendors["gini"].Error; !strings.Contains(e, `vendor "gini" is not enabled`) {
		t.Fatalf("dispatcher's failure %q", e)
	}
}

// Submission records and vendor references are kept as long as the stream keeps the events they
// go with, not for ever.
func TestRecordsExpireWithTheEvents(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	ctx := context.Background()
	router, err := dispatch.NewRouter(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dispatch.NewDispatcher(ctx, dispatch.Config{Bus: bus, Vendors: map[string]vendors.Vendor{}, Router: router}); err != nil {
		t.Fatal(err)
	}
	if _, err := dispatch.OpenRefIndex(ctx, bus); err != nil {
		t.Fatal(err)
	}
	for _, purpose := range []string{"submissions", "refs"} {
		st, err := bus.JetStream().Stream(ctx, "KV_"+bus.Names().Bucket(purpose))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.MaxAge; got != bus.Retention() || got == 0 {
			t.Errorf("bucket %s keeps keys for %s, want the stream's %s", purpose, got, bus.Retention())
		}
	}
}

// A first delivery does not read the submission record before claiming it (the claim's create
// fails if one exists). One that exists all the same — the event delivered anew to a recreated
// consumer — is read and followed: the document is not submitted again.
func TestFirstDeliveryWithARecordIsNotSubmittedAgain(t *testing.T) {
	gini := newFake("gini")
	r := newRig(t, gini)
	r.route(all)
	st := r.receive("again.pdf", pdf("recorded before"))
	ctx := context.Background()
	router, err := dispatch.NewRouter(all, r.names())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dispatch.NewDispatcher(ctx, dispatch.Config{Bus: r.bus, Vendors: r.vs, Router: router}); err != nil {
		t.Fatal(err) // provisions the buckets; not run
	}
	kv, err := r.bus.JetStream().KeyValue(ctx, r.bus.Names().Bucket("submissions"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	rec := fmt.Sprintf(`{"state":"submitted","ref":"gini-earlier","attempts":1,"started":%q,"first_started":%q,"submitted_at":%q}`,
		at.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
	if _, err := kv.Create(ctx, st.DocumentID+".gini", []byte(rec)); err != nil {
		t.Fatal(err)
	}

	r.dispatcher(all, nil)
	eventstest.WaitFor(t, 20*time.Second, "the earlier submission to be announced", func() bool {
		doc, err := r.bus.States().Get(ctx, st.DocumentID)
		return err == nil && doc.Vendors["gini"] != nil && doc.Vendors["gini"].Ref == "gini-earlier"
	})
	calls := gini.submitCalls()
	if calls != 0 {
		t.Fatalf("the vendor was called %d times for a document already submitted", calls)
	}
}

// Another instance completes the document (a callback) while this poller asks for the result,
// which the vendor no longer has: the document stays completed, and no failed event follows
// the completed one on the bus.
func TestNoFailureAfterACompletionElsewhere(t *testing.T) {
	gini := newFake("gini")
	r := newRig(t, gini)
	r.dispatcher(all, nil)
	st := r.receive("elsewhere.pdf", pdf("settled by a callback"))
	var elsewhere atomic.Bool
	gini.mu.Lock()
	gini.resultFn = func(ref string) error {
		ctx := context.Background()
		subject, _ := r.bus.Names().Subject(events.Completed, "gini")
		ev, err := events.NewEvent(events.Completed, events.VendorStepID(st.DocumentID, events.Completed, "gini", 0), "/vendors/gini",
			st.DocumentID, time.Now(), events.CompletedData{DocumentID: st.DocumentID, Vendor: "gini", VendorRef: ref, CompletedAt: time.Now()})
		if err != nil {
			return err
		}
		if _, _, err := r.bus.Record(ctx, subject, ev); err != nil {
			return err
		}
		elsewhere.Store(true)
		return &vendors.Error{Vendor: "gini", Op: "result", Status: 404, Permanent: true, Message: "the job was taken and deleted"}
	}
	gini.mu.Unlock()
	r.poller(time.Hour)
	r.waitStatus(st.DocumentID, events.StatusCompleted)
	eventstest.WaitFor(t, 20*time.Second, "the poller to be done with the submission", func() bool {
		cons, err := r.bus.JetStream().Consumer(context.Background(), r.bus.Names().Stream(), r.bus.Names().Durable("poll"))
		if err != nil {
			return false
		}
		info, err := cons.Info(context.Background())
		return err == nil && elsewhere.Load() && info.NumAckPending == 0 && info.NumPending == 0
	})
	for _, ev := range r.eventsOf(st.DocumentID) {
		if ev.Kind() == events.Failed {
			t.Fatalf("a failed event after the completion: %s", ev.ID)
		}
	}
	if doc := r.waitStatus(st.DocumentID, events.StatusCompleted); doc.Vendors["gini"].Error != "" {
		t.Fatalf("slot %+v", doc.Vendors["gini"])
	}
}
