package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/webhooks"
)

const (
	secretA = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // the Standard Webhooks example secret
	secretB = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="
	secretC = "whsec_dGhpcmQtc2VjcmV0LW5vYm9keS1jb25maWd1cmVk"
)

// receiver is a webhook receiver that verifies every delivery with the Standard Webhooks
// reference library and records what it accepted.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	wh     *standardwebhooks.Webhook
	mu     sync.Mutex
	got    []delivery     // accepted, in arrival order
	byID   map[string]int // webhook-id → times accepted
	bad    int            // deliveries whose signature did not verify
	answer func(n int, r *http.Request) (int, http.Header, string)
	calls  atomic.Int64
}

type delivery struct {
	id, timestamp, contentType string
	event                      events.Event
	at                         time.Time
}

func newReceiver(t *testing.T, secret string) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	rv := &receiver{t: t, wh: wh, byID: map[string]int{}}
	rv.srv = httptest.NewServer(http.HandlerFunc(rv.serve))
	t.Cleanup(rv.srv.Close)
	return rv
}

func (rv *receiver) serve(w http.ResponseWriter, r *http.Request) {
	n := int(rv.calls.Add(1))
	body, _ := io.ReadAll(r.Body)
	if rv.answer != nil {
		status, h, text := rv.answer(n, r)
		if status != 0 {
			for k, v := range h {
				w.Header()[k] = v
			}
			w.WriteHeader(status)
			io.WriteString(w, text)
			return
		}
	}
	if err := rv.wh.Verify(body, r.Header); err != nil {
		rv.mu.Lock()
		rv.bad++
		rv.mu.Unlock()
		http.Error(w, "bad signature: "+err.Error(), http.StatusUnauthorized)
		return
	}
	ev, err := events.Decode(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ev.ID != r.Header.Get("webhook-id") {
		http.Error(w, "webhook-id is not the event id", http.StatusBadRequest)
		return
	}
	rv.mu.Lock()
	rv.got = append(rv.got, delivery{id: ev.ID, timestamp: r.Header.Get("webhook-timestamp"), contentType: r.Header.Get("Content-Type"), event: ev, at: time.Now()})
	rv.byID[ev.ID]++
	rv.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rv *receiver) accepted() []delivery {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]delivery(nil), rv.got...)
}

func (rv *receiver) distinct() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return len(rv.byID)
}

func (rv *receiver) badCount() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.bad
}

var fast = []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 200 * time.Millisecond}

func sub(name, url string) webhooks.Subscription {
	return webhooks.Subscription{Name: name, URL: url, Secrets: []string{secretA}, AllowPrivateTargets: true, Timeout: 2 * time.Second}
}

func start(t *testing.T, bus *events.Bus, cfg webhooks.Config) *webhooks.Deliverer {
	t.Helper()
	cfg.Bus = bus
	if cfg.Schedule == nil {
		cfg.Schedule = fast
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := webhooks.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, d.Run)
	return d
}

// publish puts n received events for n documents (or, with doc set, n events of one document) on
// the bus and returns their ids in order.
func publish(t *testing.T, bus *events.Bus, n int, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ids []string
	subject, _ := bus.Names().Subject(events.Received, events.SourceHTTP)
	for i := range n {
		doc := fmt.Sprintf("%s-doc-%04d", prefix, i)
		ev, err := events.NewEvent(events.Received, doc+".received", events.SourceURI("http", "api"), doc, time.Now(), events.ReceivedData{
			DocumentID: doc, Source: events.SourceRef{Kind: "http", Name: "api"}, Filename: "a.pdf", ContentType: "application/pdf",
			Size: 10, SHA256: strings.Repeat("0", 64), ObjectKey: "documents/" + doc, ReceivedAt: time.Now().UTC(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.Publish(ctx, subject, ev); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	return ids
}

func TestDeliversSignedEventsEveryOneVerified(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	// The receiver knows only the new secret; we sign with the old and the new (rotation).
	rv := newReceiver(t, secretB)
	s := sub("erp", rv.srv.URL)
	s.Secrets = []string{secretA, secretB}
	s.Format = webhooks.FormatCloudEvents
	start(t, bus, webhooks.Config{Subscriptions: []webhooks.Subscription{s}})
	ids := publish(t, bus, 20, "sig")
	eventstest.WaitFor(t, 10*time.Second, "20 deliveries", func() bool { return rv.distinct() == 20 })
	if rv.badCount() != 0 {
		t.Fatalf("%d deliveries failed verification", rv.badCount())
	}
	seen := map[string]bool{}
	for _, g := range rv.accepted() {
		seen[g.id] = true
		if g.contentType != events.ContentType {
			t.Fatalf("content type %q in cloudevents format", g.contentType)
		}
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("event %s not delivered", id)
		}
	}
}

func TestWrongSecretIsRejectedByTheReceiver(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	rv := newReceiver(t, secretC) // a secret we do not sign with
	s := sub("wrong", rv.srv.URL)
	s.MaxAttempts = 2
	start(t, bus, webhooks.Config{Subscriptions: []webhooks.Subscription{s}})
	dead := follow(t, bus, bus.Names().DeliveryFailedSubject("wrong"))
	publish(t, bus, 1, "wrong")
	dl := <-dead
	if dl.LastStatus != http.StatusUnauthorized || rv.badCount() != 2 || rv.distinct() != 0 || dl.Attempts != 2 ||
		!strings.Contains(dl.LastError, "401") {
		t.Fatalf("dead letter %+v; receiver: bad %d accepted %d", dl, rv.badCount(), rv.distinct())
	}
}

// follow collects the dead letters published on subject.
func follow(t *testing.T, bus *events.Bus, subject string) <-chan events.DeliveryFailedData {
	t.Helper()
	out := make(chan events.DeliveryFailedData, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		_ = bus.Follow(ctx, subject, true, func(m jetstream.Msg) {
			var ev events.Event
			var d events.DeliveryFailedData
			if json.Unmarshal(m.Data(), &ev) == nil && ev.Type == events.DeliveryFailedType && json.Unmarshal(ev.Data, &d) == nil {
				out <- d
			}
		})
	}()
	return out
}

func TestReceiverDownThenBackGetsEverythingInOrder(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	rv := newReceiver(t, secretA)
	var down atomic.Bool
	down.Store(true)
	rv.answer = func(n int, r *http.Request) (int, http.Header, string) {
		if down.Load() {
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {"0"}}, "maintenance"
		}
		return 0, nil, ""
	}
	ordered := sub("ordered", rv.srv.URL)
	ordered.Ordered, ordered.MaxAttempts = true, 1000
	start(t, bus, webhooks.Config{Subscriptions: []webhooks.Subscription{ordered}})
	ids := publish(t, bus, 30, "order")
	eventstest.WaitFor(t, 10*time.Second, "the receiver to be tried while down", func() bool { return rv.calls.Load() >= 5 })
	down.Store(false)
	eventstest.WaitFor(t, 20*time.Second, "every event once the receiver is back", func() bool { return rv.distinct() == 30 })
	got := rv.accepted()
	for i, g := range got {
		if g.id != ids[i] {
			t.Fatalf("delivery %d is %s, want %s (ordered)", i, g.id, ids[i])
		}
	}
	if len(got) != 30 {
		t.Fatalf("%d deliveries for 30 events", len(got))
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	rv := newReceiver(t, secretA)
	var first atomic.Int64
	rv.answer = func(n int, r *http.Request) (int, http.Header, string) {
		if n == 1 {
			first.Store(time.Now().UnixNano())
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}, "slow down"
		}
		return 0, nil, ""
	}
	// The schedule alone would wait an hour.
	start(t, bus, webhooks.Config{Subscriptions: []webhooks.Subscription{sub("ra", rv.srv.URL)},
		Schedule: []time.Duration{0, time.Hour}})
	publish(t, bus, 1, "ra")
	eventstest.WaitFor(t, 10*time.Second, "the retry after Retry-After", func() bool { return rv.distinct() == 1 })
	waited := rv.accepted()[0].at.Sub(time.Unix(0, first.Load()))
	if waited < 900*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("retried after %s, want about 1s", waited)
	}
}

func TestGoneDisablesUntilEnabled(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	rv := newReceiver(t, secretA)
	var gone atomic.Bool
	gone.Store(true)
	rv.answer = func(n int, r *http.Request) (int, http.Header, string) {
		if gone.Load() {
			return http.StatusGone, nil, "this endpoint was removed"
		}
		return 0, nil, ""
	}
	other := newReceiver(t, secretA)
	cfg := webhooks.Config{Subscriptions: []webhooks.Subscription{sub("gone", rv.srv.URL), sub("other", other.srv.URL)}}
	d := start(t, bus, cfg)
	publish(t, bus, 5, "gone")
	eventstest.WaitFor(t, 10*time.Second, "the subscription to be disabled", func() bool {
		st := d.Statuses(context.Background())
		return st[0].State == "disabled" && strings.Contains(st[0].Reason, "410")
	})
	eventstest.WaitFor(t, 10*time.Second, "the other subscription to get everything", func() bool { return other.distinct() == 5 })
	calls := rv.calls.Load()
	publish(t, bus, 3, "gone-more")
	eventstest.WaitFor(t, 5*time.Second, "the other subscription to get the later events", func() bool { return other.distinct() == 8 })
	if rv.calls.Load() > calls+int64(16) || rv.distinct() != 0 {
		t.Fatalf("a disabled subscription was still called: %d calls, %d accepted", rv.calls.Load()-calls, rv.distinct())
	}

	// A restarted deliverer with the same settings stays disabled.
	d2, err := webhooks.New(context.Background(), webhooks.Config{Bus: bus, Subscriptions: cfg.Subscriptions, Schedule: fast})
	if err != nil {
		t.Fatal(err)
	}
	if st := d2.Statuses(context.Background()); st[0].State != "disabled" {
		t.Fatalf("after a restart: %+v", st[0])
	}

	// Enabled again, it gets everything that waited.
	gone.Store(false)
	if err := d.Enable(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	// Most come back at once; one the server handed to the pull request the stopped consumer
	// had open (published right after the disable) comes back when its AckWait (timeout + 10 s)
	// runs out.
	eventstest.WaitFor(t, 30*time.Second, "the waiting events after enable", func() bool { return rv.distinct() == 8 })
	if st := d.Statuses(context.Background()); st[0].State != "active" {
		t.Fatalf("after enable: %+v", st[0])
	}
}

func TestChangedURLClearsTheDisabledMark(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	rv := newReceiver(t, secretA)
	rv.answer = func(int, *http.Request) (int, http.Header, string) { return http.StatusGone, nil, "" }
	d := start(t, bus, webhooks.Config{Subscriptions: []webhooks.Subscription{sub("moved", rv.srv.URL)}})
	publish(t, bus, 1, "moved")
	eventstest.WaitFor(t, 10*time.Second, "disabled", func() bool { return d.Statuses(context.Background())[0].State == "disabled" })
	d2, err := webhooks.New(context.Background(), webhooks.Config{Bus: bus, Subscriptions: []webhooks.Subscription{sub("moved", rv.srv.URL+"/v2")}, Schedule: fast})
	if err != nil {
		t.Fatal(err)
	}
	if st := d2.Statuses(context.Background()); st[0].State != "active" {
		t.Fatalf("a new URL should enable the subscription: %+v", st[0])
	}
}

func TestDeadLetterAfterTheLastAttemptWithWhatHappened(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	rv := newReceiver(t, secretA)
	rv.answer = func(int, *http.Request) (int, http.Header, string) {
		return http.StatusInternalServerError, nil, `{"error":"database is down"}`
	}
	s := sub("dlq", rv.srv.URL)
	s.MaxAttempts = 3
	d := start(t, bus, webhooks.Config{Subscriptions: []webhooks.Subscription{s}})
	dead := follow(t, bus, bus.Names().DeliveryFailedSubject("dlq"))
	ids := publish(t, bus, 1, "dlq")
	var dl events.DeliveryFailedData
	select {
	case dl = <-dead:
	case <-time.After(10 * time.Second):
		t.Fatal("no dead letter")
	}
	if dl.Subscription != "dlq" || dl.EventID != ids[0] || dl.Attempts != 3 || dl.LastStatus != 500 || dl.StreamSequence == 0 ||
		dl.EventType != "ingest.document.received" || dl.FirstAttemptAt.IsZero() || dl.LastAttemptAt.Before(dl.FirstAttemptAt) {
		t.Fatalf("dead letter %+v", dl)
	}
	rec, err := d.Attempts(context.Background(), "dlq", ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if rec.Attempts != 3 || len(rec.Last) != 3 || !strings.Contains(rec.Last[2].Response, "database is down") || rec.Delivered {
		t.Fatalf("record %+v", rec)
	}
	if rv.calls.Load() != 3 {
		t.Fatalf("%d calls for 3 attempts", rv.calls.Load())
	}
}

func TestMaxAgeEndsRetries(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	rv := newReceiver(t, secretA)
	rv.answer = func(int, *http.Request) (int, http.Header, string) { return http.StatusBadGateway, nil, "" }
	s := sub("aged", rv.srv.URL)
	s.MaxAge, s.MaxAttempts = 300*time.Millisecond, 100
	start(t, bus, webhooks.Config{Subscriptions: []webhooks.Subscription{s}, Schedule: []time.Duration{0, 100 * time.Millisecond}})
	dead := follow(t, bus, bus.Names().DeliveryFailedSubject("aged"))
	publish(t, bus, 1, "aged")
	select {
	case dl := <-dead:
		if dl.Attempts < 1 || dl.Attempts > 5 {
			t.Fatalf("dead letter after %d attempts", dl.Attempts)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no dead letter")
	}
}

func TestSlowReceiverDoesNotHoldUpOthers(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	release := make(chan struct{})
	slow := newReceiver(t, secretA)
	slow.answer = func(int, *http.Request) (int, http.Header, string) {
		<-release
		return 0, nil, ""
	}
	t.Cleanup(func() { close(release) })
	fastRv := newReceiver(t, secretA)
	s := sub("slow", slow.srv.URL)
	s.Timeout = 300 * time.Millisecond
	s.Ordered = true
	start(t, bus, webhooks.Config{Subscriptions: []webhooks.Subscription{s, sub("fast", fastRv.srv.URL)}})
	publish(t, bus, 50, "slow")
	eventstest.WaitFor(t, 5*time.Second, "the fast receiver to get everything while the slow one times out", func() bool {
		return fastRv.distinct() == 50
	})
	if slow.distinct() != 0 {
		t.Fatal("the slow receiver answered")
	}
}

func TestHostileReceivers(t *testing.T) {
	big := strings.Repeat("x", 10<<20)
	cases := []struct {
		name   string
		h      http.HandlerFunc
		allow  bool // allow_private_targets
		status int  // want as the last status (0: no answer)
		err    string
	}{
		{"redirect is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data", http.StatusFound)
		}, true, 302, "redirects are not followed"},
		{"huge error body is cut", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			io.WriteString(w, big)
		}, true, 500, "500"},
		{"hangs past the timeout", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // then the server notices the client leaving
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}, true, 0, "no answer within the timeout"},
		{"loopback refused without allow_private_targets", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(204)
		}, false, 0, "loopback, private, link-local"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bus := eventstest.Bus(t, eventstest.Embedded(t))
			srv := httptest.NewServer(c.h)
			t.Cleanup(srv.Close)
			s := sub("hostile", srv.URL)
			s.AllowPrivateTargets, s.MaxAttempts, s.Timeout = c.allow, 2, 300*time.Millisecond
			d := start(t, bus, webhooks.Config{Subscriptions: []webhooks.Subscription{s}})
			dead := follow(t, bus, bus.Names().DeliveryFailedSubject("hostile"))
			ids := publish(t, bus, 1, "hostile")
			select {
			case dl := <-dead:
				if dl.LastStatus != c.status || !strings.Contains(dl.LastError, c.err) {
					t.Fatalf("dead letter %+v", dl)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("no dead letter")
			}
			rec, err := d.Attempts(context.Background(), "hostile", ids[0])
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range rec.Last {
				if len(a.Response) > 600 {
					t.Fatalf("kept %d bytes of a response", len(a.Response))
				}
			}
		})
	}
}

// The deliverer stopped mid-way and started again (as after a crash or a restart) loses
// nothing, and what it sends again carries the same webhook-id.
func TestRestartLosesNothingAndResendsWithTheSameID(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	rv := newReceiver(t, secretA)
	// Every third delivery fails once, so retries are pending when the deliverer stops.
	var failed sync.Map
	rv.answer = func(n int, r *http.Request) (int, http.Header, string) {
		id := r.Header.Get("webhook-id")
		if n%3 == 0 {
			if _, again := failed.LoadOrStore(id, true); !again {
				return http.StatusServiceUnavailable, nil, ""
			}
		}
		return 0, nil, ""
	}
	subs := []webhooks.Subscription{sub("restart", rv.srv.URL)}
	ctx, cancel := context.WithCancel(context.Background())
	d1, err := webhooks.New(ctx, webhooks.Config{Bus: bus, Subscriptions: subs, Schedule: fast})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d1.Run(ctx) }()
	ids := publish(t, bus, 100, "restart")
	eventstest.WaitFor(t, 10*time.Second, "some deliveries", func() bool { return rv.distinct() >= 20 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	more := publish(t, bus, 50, "after")
	start(t, bus, webhooks.Config{Subscriptions: subs})
	eventstest.WaitFor(t, 20*time.Second, "every event after the restart", func() bool { return rv.distinct() == 150 })
	for _, id := range append(ids, more...) {
		rv.mu.Lock()
		n := rv.byID[id]
		rv.mu.Unlock()
		if n == 0 {
			t.Fatalf("event %s lost", id)
		}
	}
	// Every id the receiver saw (accepted or refused) is one of the events: a re-send is
	// recognisable by its webhook-id.
	failed.Range(func(k, _ any) bool {
		rv.mu.Lock()
		defer rv.mu.Unlock()
		if rv.byID[k.(string)] == 0 {
			t.Errorf("refused delivery %v was never sent again with the same id", k)
		}
		return true
	})
}

// The same on the external NATS (Debian's 2.9 on the development machines and CI): one filter
// subject per consumer, NakWithDelay holding an ordered subscription, the disabled marks watched.
func TestOnExternalNATS(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.External(t))
	rv := newReceiver(t, secretA)
	var down atomic.Bool
	down.Store(true)
	rv.answer = func(int, *http.Request) (int, http.Header, string) {
		if down.Load() {
			return http.StatusServiceUnavailable, nil, ""
		}
		return 0, nil, ""
	}
	gone := newReceiver(t, secretA)
	gone.answer = func(int, *http.Request) (int, http.Header, string) { return http.StatusGone, nil, "" }
	ordered := sub("ordered", rv.srv.URL)
	ordered.Ordered, ordered.MaxAttempts = true, 1000
	d := start(t, bus, webhooks.Config{Subscriptions: []webhooks.Subscription{ordered, sub("gone", gone.srv.URL)}})
	ids := publish(t, bus, 20, "ext")
	eventstest.WaitFor(t, 10*time.Second, "tries while down", func() bool { return rv.calls.Load() >= 3 })
	down.Store(false)
	eventstest.WaitFor(t, 20*time.Second, "every event in order", func() bool { return rv.distinct() == 20 })
	for i, g := range rv.accepted() {
		if g.id != ids[i] {
			t.Fatalf("delivery %d is %s, want %s", i, g.id, ids[i])
		}
	}
	eventstest.WaitFor(t, 10*time.Second, "410 to disable", func() bool { return d.Statuses(context.Background())[1].State == "disabled" })
	res, err := d.Replay(context.Background(), "ordered", time.Now().Add(-time.Hour))
	if err != nil || res.Delivered != 20 {
		t.Fatalf("replay %+v, %v", res, err)
	}
}
