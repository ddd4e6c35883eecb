package allspark_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/allspark"
	"github.com/ingest-dev/ingest/vendors/allspark/allsparksim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

// restartable starts "processes" on one state file: each start is a new simulator and a new
// client, as after ingest restarts.
func restartable(t *testing.T) func(allsparksim.Config) *env {
	path := filepath.Join(t.TempDir(), "allspark", "cases.jsonl")
	return func(cfg allsparksim.Config) *env {
		t.Helper()
		cfg.APIKey = key
		sim := allsparksim.New(cfg)
		if err := sim.KeepState(path); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(sim)
		t.Cleanup(srv.Close)
		t.Cleanup(func() { sim.Close(); _ = sim.CloseState() })
		c, err := allspark.New(allspark.Config{BaseURL: srv.URL + allsparksim.Prefix, APIKey: key, FetchOCR: true})
		if err != nil {
			t.Fatal(err)
		}
		return &env{sim: sim, srv: srv, client: c}
	}
}

// stop ends a "process" as the sandbox's OnStop does: callbacks first, then the journal.
func (e *env) stop(t *testing.T) {
	t.Helper()
	e.sim.Close()
	if err := e.sim.CloseState(); err != nil {
		t.Fatal(err)
	}
}

// A sandbox keeps its cases across a restart: a case in flight is known to the simulator started
// on the same state with its progress, and completes there with its own result; a case still
// being assembled keeps its files and times; new cases get new ids.
func TestSimulatorStateSurvivesRestart(t *testing.T) {
	start := restartable(t)
	ctx := t.Context()
	e := start(allsparksim.Config{PendingPolls: 2})
	content := pdf("restart")
	ref, err := e.client.Submit(ctx, doc("inv.pdf", content))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := e.client.Check(ctx, ref); err != nil || p.Done {
		t.Fatalf("first check: %+v %v", p, err)
	}
	multi, err := e.client.CreateCase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := pdf("first"), pdf("second")
	for _, d := range []vendors.Document{doc("a.pdf", a), doc("b.pdf", b)} {
		if err := e.client.AddFile(ctx, multi, d); err != nil {
			t.Fatal(err)
		}
	}
	assembling := rawCase(t, e, multi)
	e.stop(t)

	e = start(allsparksim.Config{PendingPolls: 2}) // a new process: new simulator, new client, same state
	if st, ok := e.sim.Status(ref); !ok || st != allsparksim.StatusPending {
		t.Fatalf("after the restart case %s is %q (known %v), want pending", ref, st, ok)
	}
	if raw := rawCase(t, e, multi); string(raw) != string(assembling) {
		t.Errorf("the case being assembled is now %s, was %s", raw, assembling)
	}
	if p, err := e.client.Check(ctx, ref); err != nil || p.Done {
		t.Fatalf("check after restart: %+v %v; want still pending (one poll left)", p, err)
	}
	if p, err := e.client.Check(ctx, ref); err != nil || !p.Done || p.Failed {
		t.Fatalf("check: %+v %v; want done", p, err)
	}
	res, err := e.client.Result(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Fields, wantFields("inv.pdf", content)) || res.Text != simkit.RecogniseContent("inv.pdf", content).Text {
		t.Errorf("result after restart: %+v", res)
	}
	if err := e.client.MarkComplete(ctx, multi); err != nil {
		t.Fatal(err)
	}
	if _, pending := pollUntilDone(t, e.client, multi); pending != 2 {
		t.Errorf("%d pending answers for the assembled case, want 2", pending)
	}
	res, err = e.client.Result(ctx, multi)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(wantFields("a.pdf", a), wantFields("b.pdf", b)...); !reflect.DeepEqual(res.Fields, want) {
		t.Errorf("fields %+v, want %+v", res.Fields, want)
	}
	fresh, err := e.client.Submit(ctx, doc("new.pdf", pdf("new")))
	if err != nil {
		t.Fatal(err)
	}
	if fresh == ref || fresh == multi {
		t.Fatalf("a new case got id %s, which a kept case has", fresh)
	}
	e.stop(t)

	// Completed by polling is kept too: once more, and the case is done at the first check.
	e = start(allsparksim.Config{PendingPolls: 5})
	if p, err := e.client.Check(ctx, ref); err != nil || !p.Done {
		t.Fatalf("check after the second restart: %+v %v; want done", p, err)
	}
}

// A case whose callback had not fired when the simulator stopped completes and is called back by
// the simulator started on the same state; a case already done, one pinned by SetStatus and one
// not yet processing get no callback.
func TestSimulatorCallbackSurvivesRestart(t *testing.T) {
	bodies := make(chan []byte, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- b
	}))
	t.Cleanup(receiver.Close)
	start := restartable(t)
	ctx := t.Context()
	later := allsparksim.Config{CallbackURL: receiver.URL, CallbackAfter: time.Hour} // never fires here
	soon := allsparksim.Config{CallbackURL: receiver.URL, CallbackAfter: 20 * time.Millisecond}

	e := start(later)
	ref, err := e.client.Submit(ctx, doc("cb.pdf", pdf("callback")))
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := e.client.Submit(ctx, doc("pinned.pdf", pdf("pinned")))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetStatus(pinned, "in_review"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CreateCase(ctx); err != nil { // never marked: not processing
		t.Fatal(err)
	}
	e.stop(t)
	if len(bodies) != 0 {
		t.Fatalf("a callback before the restart: %s", <-bodies)
	}

	e = start(soon)
	var body []byte
	select {
	case body = <-bodies:
	case <-time.After(10 * time.Second):
		t.Fatal("no callback after the restart")
	}
	if ids, err := e.client.CallbackIDs(body); err != nil || len(ids) != 1 || ids[0] != ref {
		t.Fatalf("callback %s names %v (%v), want case %s", body, ids, err, ref)
	}
	if p, err := e.client.Check(ctx, ref); err != nil || !p.Done || p.Failed {
		t.Fatalf("check after the callback: %+v %v; want done", p, err)
	}
	if st, _ := e.sim.Status(pinned); st != "in_review" {
		t.Errorf("the pinned case is %q after the restart, want in_review", st)
	}
	time.Sleep(10 * soon.CallbackAfter) // time for a wrongly scheduled callback to arrive
	if len(bodies) != 0 {
		t.Fatalf("a second callback: %s", <-bodies)
	}
	e.stop(t)

	// The completion by callback was kept: no second callback, and the case is done.
	e = start(soon)
	if p, err := e.client.Check(ctx, ref); err != nil || !p.Done {
		t.Fatalf("check after the second restart: %+v %v; want done", p, err)
	}
	time.Sleep(10 * soon.CallbackAfter)
	if len(bodies) != 0 {
		t.Fatalf("a callback for a case already called back: %s", <-bodies)
	}
}

// The sandbox ingest runs keeps its cases in the vendor's state directory: a case in flight when
// the service stops (its OnStop functions run) is still pending, with its progress, after the
// vendor is built again on the same directory.
func TestSandboxKeepsCasesInStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sandbox", allspark.Name)
	build := func() (vendors.Vendor, func()) {
		t.Helper()
		var stops []func()
		env := vendors.Env{
			Serve: func(h http.Handler) (string, error) {
				srv := httptest.NewServer(h)
				stops = append(stops, srv.Close) // the service stops serving first
				return srv.URL, nil
			},
			OnStop:   func(f func()) { stops = append(stops, f) },
			StateDir: dir,
		}
		cfg := allspark.Spec().NewConfig().(*allspark.Settings)
		cfg.SandboxPendingPolls = 2
		v, err := allspark.Spec().New(t.Context(), cfg, env)
		if err != nil {
			t.Fatal(err)
		}
		return v, func() {
			for _, stop := range stops {
				stop()
			}
		}
	}
	v, stop := build()
	ref, err := v.Submit(t.Context(), doc("a.pdf", pdf("a")))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Check(t.Context(), ref); err != nil || p.Done {
		t.Fatalf("first check: %+v %v", p, err)
	}
	stop()
	if _, err := os.Stat(filepath.Join(dir, "cases.jsonl")); err != nil {
		t.Fatalf("no journal in the state directory: %v", err)
	}

	v, stop = build()
	defer stop()
	if p, err := v.Check(t.Context(), ref); err != nil || p.Done {
		t.Fatalf("check after restart: %+v %v; want still pending (one poll left)", p, err)
	}
	if p, err := v.Check(t.Context(), ref); err != nil || !p.Done {
		t.Fatalf("check: %+v %v; want done", p, err)
	}
}
