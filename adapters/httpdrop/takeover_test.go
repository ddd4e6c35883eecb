package httpdrop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/intake"
)

// fakeLiveness: this instance is "me"; others are alive as alive says, or cannot be asked.
type fakeLiveness struct {
	mu    sync.Mutex
	alive map[string]bool
	err   error
}

func (f *fakeLiveness) Self() string { return "me" }

func (f *fakeLiveness) Alive(_ context.Context, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.alive[id], f.err
}

func (f *fakeLiveness) set(id string, alive bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alive[id], f.err = alive, err
}

type takeoverRig struct {
	t    *testing.T
	d    *Drop
	bus  *events.Bus
	live *fakeLiveness
	url  string
}

const rigKey = "test-key-0123456789abcdef"

func newTakeoverRig(t *testing.T) *takeoverRig {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	in, err := intake.New(intake.Config{Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	live := &fakeLiveness{alive: map[string]bool{}}
	d, err := New(context.Background(), Config{Bus: bus, Intake: in, APIKeys: []string{rigKey}, Liveness: live})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{ReadHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d.Register(srv.Echo())
	ts := httptest.NewServer(srv.Echo())
	t.Cleanup(ts.Close)
	return &takeoverRig{t: t, d: d, bus: bus, live: live, url: ts.URL}
}

// kvKey is the record's key for key, as the request's claim makes it.
func (r *takeoverRig) kvKey(key string) string {
	client := sha256.Sum256([]byte(rigKey)) // as httpapi.RequireAPIKey names the client
	sum := sha256.Sum256([]byte(key))
	return "k" + hex.EncodeToString(client[:6]) + "_" + hex.EncodeToString(sum[:16])
}

// crashed leaves the key as an attempt of owner would have left it when killed: claimed, and
// the first announced files stored and announced.
func (r *takeoverRig) crashed(key, owner string, state string, announced ...[]byte) *claim {
	r.t.Helper()
	ctx := context.Background()
	cl := &claim{kvKey: r.kvKey(key), rec: idemRecord{State: state, Started: time.Now().UTC().Add(-time.Second), Owner: owner, Attempt: "dead-attempt"}}
	body, _ := json.Marshal(cl.rec)
	if _, err := r.d.idem.Create(ctx, cl.kvKey, body); err != nil {
		r.t.Fatal(err)
	}
	for i, b := range announced {
		st, err := r.d.in.Stage(ctx, cl.docID(i), "scan.pdf", bytes.NewReader(b), 1<<20)
		if err != nil {
			r.t.Fatal(err)
		}
		if _, err := r.d.in.Commit(ctx, st, intake.Origin{Source: events.SourceRef{Kind: events.SourceHTTP, Name: "api"}}); err != nil {
			r.t.Fatal(err)
		}
	}
	return cl
}

type answer struct {
	status   int
	replayed string
	retry    string
	ids      []string
	detail   string
}

func (r *takeoverRig) upload(key string, files ...[]byte) answer {
	r.t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range files {
		pw, _ := w.CreateFormFile("file", "scan.pdf")
		pw.Write(f)
	}
	w.Close()
	req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/documents", &buf)
	req.Header.Set("Content-Type", w.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+rigKey)
	req.Header.Set("Idempotency-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	a := answer{status: res.StatusCode, replayed: res.Header.Get("Idempotent-Replayed"), retry: res.Header.Get("Retry-After")}
	var resp Response
	if json.Unmarshal(b, &resp) == nil {
		for _, d := range resp.Documents {
			a.ids = append(a.ids, d.ID)
		}
	}
	var p httpapi.Problem
	if json.Unmarshal(b, &p) == nil {
		a.detail = p.Detail
	}
	return a
}

func (r *takeoverRig) receivedEvents() int {
	r.t.Helper()
	ctx := context.Background()
	s, err := r.bus.JetStream().Stream(ctx, r.bus.Names().Stream())
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return int(info.State.Msgs)
}

func pdfBytes(s string) []byte { return []byte("%PDF-1.7\n" + s + "\n%%EOF\n") }

// A request whose instance died part-way is continued by its retry: same ids, nothing twice.
func TestRetryContinuesARequestWhoseInstanceDied(t *testing.T) {
	a, b := pdfBytes("first file"), pdfBytes("second file")
	t.Run("nothing announced yet", func(t *testing.T) {
		r := newTakeoverRig(t)
		cl := r.crashed("k1", "dead-instance", statePending)
		got := r.upload("k1", a, b)
		if got.status != http.StatusAccepted || len(got.ids) != 2 || got.ids[0] != cl.docID(0) || got.ids[1] != cl.docID(1) {
			t.Fatalf("got %+v; want 202 with the ids of the first claim", got)
		}
		if got.replayed != "" || r.receivedEvents() != 2 {
			t.Fatalf("replayed %q, %d events", got.replayed, r.receivedEvents())
		}
	})
	t.Run("first file announced", func(t *testing.T) {
		r := newTakeoverRig(t)
		cl := r.crashed("k2", "dead-instance", statePending, a)
		got := r.upload("k2", a, b)
		if got.status != http.StatusAccepted || got.ids[0] != cl.docID(0) || got.ids[1] != cl.docID(1) || got.replayed != "true" {
			t.Fatalf("got %+v; want 202, the first claim's ids, Idempotent-Replayed", got)
		}
		if n := r.receivedEvents(); n != 2 {
			t.Fatalf("%d received events, want 2: nothing announced twice", n)
		}
		// And the request is answered from now on.
		if again := r.upload("k2", a, b); again.status != http.StatusAccepted || again.ids[0] != cl.docID(0) || again.replayed != "true" {
			t.Fatalf("repeat: %+v", again)
		}
	})
	t.Run("left open by a failure after announcing", func(t *testing.T) {
		r := newTakeoverRig(t)
		cl := r.crashed("k3", "", stateOpen, a)
		got := r.upload("k3", a, b)
		if got.status != http.StatusAccepted || got.ids[0] != cl.docID(0) || r.receivedEvents() != 2 {
			t.Fatalf("got %+v, %d events", got, r.receivedEvents())
		}
	})
	t.Run("written late by this instance", func(t *testing.T) {
		// A claim this instance sent while NATS was away, answered 503, and which landed
		// afterwards: no request of ours runs it, so the retry takes it at once.
		r := newTakeoverRig(t)
		r.crashed("k4", "me", statePending)
		if got := r.upload("k4", a); got.status != http.StatusAccepted {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("different bytes under the key", func(t *testing.T) {
		r := newTakeoverRig(t)
		r.crashed("k5", "dead-instance", statePending, a)
		if got := r.upload("k5", b); got.status != http.StatusUnprocessableEntity {
			t.Fatalf("got %+v; want 422", got)
		}
	})
}

// While the claiming instance lives, a repeat is told to come back; when it is gone the repeat
// runs at once; when liveness cannot be asked, the answer is 503, never a guess.
func TestClaimOfALiveInstance(t *testing.T) {
	r := newTakeoverRig(t)
	a := pdfBytes("doc")
	r.live.set("other", true, nil)
	cl := r.crashed("k", "other", statePending)
	if got := r.upload("k", a); got.status != http.StatusConflict || got.retry == "" {
		t.Fatalf("live owner: %+v; want 409 with Retry-After", got)
	}
	r.live.set("other", false, errors.New("nats: timeout"))
	if got := r.upload("k", a); got.status != http.StatusServiceUnavailable || got.retry == "" {
		t.Fatalf("could not tell: %+v; want 503 with Retry-After", got)
	}
	r.live.set("other", false, nil)
	if got := r.upload("k", a); got.status != http.StatusAccepted || got.ids[0] != cl.docID(0) {
		t.Fatalf("dead owner: %+v", got)
	}
}
