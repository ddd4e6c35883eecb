package webdav

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/intake"
)

// testClock is the watcher's clock: real time plus an offset the test moves forward, so that
// MinAge is passed without waiting.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

type harness struct {
	t     testing.TB
	url   string // the watched folder
	user  string
	pass  string
	nc    *nats.Conn
	bus   *events.Bus
	in    *intake.Intake
	clock *testClock
	w     *Watcher
	cfg   Config
}

// newHarness builds a watcher of url on a fresh embedded NATS.
func newHarness(t testing.TB, url string, mutate ...func(*Config)) *harness {
	t.Helper()
	nc := eventstest.Embedded(t)
	bus := eventstest.Bus(t, nc)
	h := &harness{t: t, url: url, user: davUser, pass: davPass, nc: nc, bus: bus, clock: &testClock{}}
	in, err := intake.New(intake.Config{Bus: bus, Now: h.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	h.in = in
	h.cfg = Config{
		Name: "scans", URL: url, Username: davUser, Password: davPass,
		MinAge: 10 * time.Second, PollInterval: time.Second, RequestTimeout: 5 * time.Second,
		Bus: bus, Intake: in, Now: h.clock.now, Logger: testLogger(t),
	}
	for _, m := range mutate {
		m(&h.cfg)
	}
	h.w = h.newWatcher()
	return h
}

// newWatcher is a further watcher with the harness's configuration (a restart).
func (h *harness) newWatcher() *Watcher {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := New(ctx, h.cfg)
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	return w
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("INGEST_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (h *harness) poll() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return h.w.pollOnce(ctx)
}

func (h *harness) mustPoll() {
	h.t.Helper()
	if err := h.poll(); err != nil {
		h.t.Fatalf("poll: %v", err)
	}
}

// settle polls until whatever is in the folder now is taken: one listing, past MinAge, a second.
func (h *harness) settle() {
	h.t.Helper()
	h.mustPoll()
	h.clock.advance(time.Minute)
	h.mustPoll()
}

func (h *harness) stream() jetstream.Stream {
	h.t.Helper()
	js, err := jetstream.New(h.nc)
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), h.bus.Names().Stream())
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// eventsOf returns the data of every event of kind k from webdav, in stream order.
func eventsOf[T any](h *harness, k events.Kind) []T {
	h.t.Helper()
	subject, _ := h.bus.Names().Subject(k, events.SourceWebDAV)
	s := h.stream()
	ctx := context.Background()
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []T
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if m.Subject != subject {
			continue
		}
		var ev events.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			h.t.Fatal(err)
		}
		var d T
		if err := ev.DecodeData(&d); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func (h *harness) received() []events.ReceivedData {
	return eventsOf[events.ReceivedData](h, events.Received)
}
func (h *harness) rejected() []events.RejectedData {
	return eventsOf[events.RejectedData](h, events.Rejected)
}

// receivedPaths returns the metadata paths of the received events, sorted.
func (h *harness) receivedPaths() []string {
	var out []string
	for _, d := range h.received() {
		out = append(out, d.Metadata["path"])
	}
	sort.Strings(out)
	return out
}

// stored returns the bytes stored under an object key.
func (h *harness) stored(key string) []byte {
	h.t.Helper()
	r, _, err := h.bus.Blobs().Open(context.Background(), key)
	if err != nil {
		h.t.Fatalf("open %s: %v", key, err)
	}
	defer r.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(r); err != nil {
		h.t.Fatalf("read %s: %v", key, err)
	}
	return b.Bytes()
}

// pdf is a small document intake takes as a PDF; seed makes the bytes distinct.
func pdf(seed string, n int) []byte {
	head := "%PDF-1.7\n% " + seed + "\n"
	if n < len(head) {
		n = len(head)
	}
	b := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
	copy(b, head)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func equalStrings(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got  %q\n want %q", what, got, want)
	}
}

func mustContain(t testing.TB, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}
