package service_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest"
	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/service"
)

const key = "service-test-key-0123456789"

func testConfig(t *testing.T) config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.HTTP.APIKeys = []string{key}
	cfg.NATS.Embedded.MaxStore = 2 << 30
	cfg.Routes = []config.Route{} // documents stay received: these tests are about the backbone
	return cfg
}

// vendorsYAML sets the vendor sections of cfg from YAML written under vendors:, as a user's
// file would.
func vendorsYAML(t *testing.T, cfg *config.Config, yml string) {
	t.Helper()
	parsed, err := config.Parse([]byte("vendors:\n"+yml), "test vendors", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Vendors = parsed.Vendors
}

func start(t *testing.T, cfg config.Config) *service.Service {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := service.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, s) })
	return s
}

func stop(t *testing.T, s *service.Service) {
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func writePDF(t *testing.T, size int) (string, []byte) {
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	copy(data, "%PDF-1.7\n")
	path := filepath.Join(t.TempDir(), "invoice.pdf")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// endToEnd: upload → PubAck'd received event with the CloudEvents fields → content byte-identical →
// status shows it. Returns the document id.
func endToEnd(t *testing.T, s *service.Service) string {
	t.Helper()
	got := make(chan events.Event, 4)
	fctx, stopFollow := context.WithCancel(ctxT(t))
	defer stopFollow()
	followErr := make(chan error, 1)
	go func() {
		followErr <- s.Bus().Follow(fctx, s.Bus().Names().KindSubjects(events.Received), true, func(m jetstream.Msg) {
			if ev, err := events.Decode(m.Data()); err == nil {
				got <- ev
			}
		})
	}()

	path, data := writePDF(t, 100<<10)
	c := &httpdrop.Client{BaseURL: "http://" + s.HTTPAddr(), APIKey: key}
	resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{Metadata: map[string]string{"po": "4711"}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Documents[0].ID
	var ev events.Event
	select {
	case ev = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no received event on the bus")
	}
	var rd events.ReceivedData
	if err := ev.DecodeData(&rd); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if ev.SpecVersion != "1.0" || ev.Type != "ingest.document.received" || ev.Subject != id || ev.Source != "/sources/http/api" ||
		ev.DataContentType != "application/json" || rd.SHA256 != hex.EncodeToString(sum[:]) || rd.Metadata["po"] != "4711" || rd.Filename != "invoice.pdf" {
		t.Fatalf("event %+v data %+v", ev, rd)
	}
	checkStored(t, s.HTTPAddr(), id, data)
	stopFollow()
	if err := <-followErr; err != nil {
		t.Fatalf("follow: %v", err)
	}
	return id
}

func get(t *testing.T, addr, path string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func checkStored(t *testing.T, addr, id string, data []byte) {
	t.Helper()
	res, body := get(t, addr, "/v1/documents/"+id+"/content")
	if res.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("content: %d, %d bytes (want %d)", res.StatusCode, len(body), len(data))
	}
	res, body = get(t, addr, "/v1/documents/"+id)
	var doc events.Document
	err := json.Unmarshal(body, &doc)
	// The sandbox vendor may have taken it further by now; it must not have gone wrong.
	progressed := doc.Status == events.StatusReceived || doc.Status == events.StatusSubmitted || doc.Status == events.StatusCompleted
	if err != nil || res.StatusCode != 200 || !progressed || doc.Size != int64(len(data)) ||
		len(doc.History) == 0 || doc.History[0].EventID != id+".received" {
		t.Fatalf("status: %d %s", res.StatusCode, body)
	}
}

func TestEndToEndEmbedded(t *testing.T) {
	s := start(t, testConfig(t))
	endToEnd(t, s)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		if res, body := get(t, s.HTTPAddr(), path); res.StatusCode != want {
			t.Errorf("%s: %d %s", path, res.StatusCode, body)
		}
	}
	res, body := get(t, s.HTTPAddr(), "/metrics")
	for _, m := range []string{"ingest_documents_received_total", "ingest_http_requests_total", "ingest_events_published_total", "go_goroutines"} {
		if res.StatusCode != 200 || !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

func TestEndToEndExternalNATS(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATS.URL = eventstest.ExternalURL(t)
	nc := eventstest.External(t)
	cfg.NATS.Namespace = eventstest.Namespace(t, nc) // other tests share this server
	s := start(t, cfg)
	if s.NATSURL() != cfg.NATS.URL {
		t.Fatalf("NATS URL %q", s.NATSURL())
	}
	endToEnd(t, s)
}

func TestRestartKeepsDocuments(t *testing.T) {
	cfg := testConfig(t)
	s := start(t, cfg)
	path, data := writePDF(t, 300<<10)
	c := &httpdrop.Client{BaseURL: "http://" + s.HTTPAddr(), APIKey: key}
	resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stop(t, s)

	s2 := start(t, cfg)
	checkStored(t, s2.HTTPAddr(), resp.Documents[0].ID, data)
}

// SIGTERM with an upload under way: the upload finishes and is accepted, then the service stops.
func TestShutdownFinishesInFlightUpload(t *testing.T) {
	cfg := testConfig(t)
	s, err := service.Start(ctxT(t), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://"+s.HTTPAddr()+"/v1/documents?filename=slow.pdf", pr)
	req.Header.Set("Authorization", "Bearer "+key)
	answered := make(chan *http.Response, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("upload: %v", err)
			answered <- nil
			return
		}
		res.Body.Close()
		answered <- res
	}()
	_, data := writePDF(t, 2<<20)
	if _, err := pw.Write(data[:1<<20]); err != nil { // the server has begun reading
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	begun := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.Std())
		defer cancel()
		stopped <- s.Shutdown(ctx)
	}()
	// New connections are refused once shutdown has begun.
	eventstest.WaitFor(t, 5*time.Second, "the listener to close", func() bool {
		_, err := http.Get("http://" + s.HTTPAddr() + "/healthz")
		return err != nil
	})
	if _, err := pw.Write(data[1<<20:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	res := <-answered
	if res == nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("in-flight upload was not accepted: %v", res)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d := time.Since(begun); d > 10*time.Second {
		t.Fatalf("shutdown took %s", d)
	}
	// And the upload is really there after a restart.
	s2 := start(t, cfg)
	res2, body := get(t, s2.HTTPAddr(), res.Header.Get("Location"))
	if res2.StatusCode != 200 {
		t.Fatalf("after restart: %d %s", res2.StatusCode, body)
	}
}

func TestDiscoverFindsTheRunningService(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.APIKeys = nil // the generated key is found too
	if _, err := service.Discover(cfg); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("before start: %v", err)
	}
	s := start(t, cfg)
	ep, err := service.Discover(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ep.NATSURL != s.NATSURL() || ep.HTTPURL != "http://"+s.HTTPAddr() || len(ep.APIKey) < 16 {
		t.Fatalf("endpoints %+v", ep)
	}
	res, _ := get(t, s.HTTPAddr(), "/v1/documents/x") // with the test key: refused
	if res.StatusCode != 401 {
		t.Fatalf("test key accepted where only the generated key is valid: %d", res.StatusCode)
	}
	c := &httpdrop.Client{BaseURL: ep.HTTPURL, APIKey: ep.APIKey}
	_, err = c.Status(ctxT(t), "0192aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee")
	var p *httpapi.Problem
	if !errors.As(err, &p) || p.Status != 404 {
		t.Fatalf("status with the generated key: %v", err)
	}
	stop(t, s)
	if _, err := service.Discover(cfg); err == nil {
		t.Fatal("found a stopped service")
	}
}

func TestHTTPPortInUse(t *testing.T) {
	s := start(t, testConfig(t))
	cfg := testConfig(t)
	cfg.HTTP.Listen = s.HTTPAddr()
	_, err := service.Start(ctxT(t), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("err = %v", err)
	}
}

func TestWaitsForExternalNATS(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATS.URL = "nats://127.0.0.1:1" // nothing there
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := service.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "gave up waiting for NATS") {
		t.Fatalf("err = %v", err)
	}
}

// The README walkthrough, automated: the shipped configuration (sandbox vendors) takes an upload
// to completed events, one per vendor it goes to.
func TestSandboxWalkthroughEndsCompleted(t *testing.T) {
	cfg, err := config.Parse(ingest.DefaultConfigYAML(), "config.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	test := testConfig(t)
	cfg.DataDir, cfg.HTTP.Listen, cfg.NATS.Embedded.Listen, cfg.HTTP.APIKeys = test.DataDir, test.HTTP.Listen, test.NATS.Embedded.Listen, test.HTTP.APIKeys
	// The documented 1/s of Laigo would only make the test slow.
	vendorsYAML(t, &cfg, `
  laigo: {rate_limit: 0, poll: {initial: 50ms}}
  gini: {poll: {initial: 50ms}}
  allspark: {poll: {initial: 50ms}}
  documine: {poll: {initial: 50ms}}
`)
	s := start(t, cfg)
	path, _ := writePDF(t, 20<<10)
	c := &httpdrop.Client{BaseURL: "http://" + s.HTTPAddr(), APIKey: key}

	// The default route: gini.
	resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	doc := waitCompleted(t, s, resp.Documents[0].ID)
	if len(doc.Vendors) != 1 || doc.Vendors["gini"] == nil || doc.Vendors["gini"].Ref == "" {
		t.Fatalf("vendors %+v", doc.Vendors)
	}

	// All four at once.
	all := []string{"laigo", "gini", "allspark", "documine"}
	resp, err = c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{Vendors: all})
	if err != nil {
		t.Fatal(err)
	}
	doc = waitCompleted(t, s, resp.Documents[0].ID)
	for _, v := range all {
		if vs := doc.Vendors[v]; vs == nil || vs.Status != events.StatusCompleted || vs.Attempts != 1 {
			t.Errorf("%s: %+v", v, vs)
		}
	}
	var mu sync.Mutex
	completed := map[string]events.CompletedData{}
	ctx, cancel := context.WithCancel(ctxT(t))
	go s.Bus().Follow(ctx, s.Bus().Names().KindSubjects(events.Completed), true, func(m jetstream.Msg) {
		ev, _ := events.Decode(m.Data())
		var cd events.CompletedData
		if ev.Subject == resp.Documents[0].ID && ev.DecodeData(&cd) == nil {
			mu.Lock()
			completed[cd.Vendor] = cd
			mu.Unlock()
		}
	})
	eventstest.WaitFor(t, 10*time.Second, "four completed events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(completed) == 4
	})
	cancel()
	mu.Lock()
	defer mu.Unlock()
	if len(completed["laigo"].Artifacts) != 1 || completed["laigo"].Text == "" {
		t.Errorf("laigo result %+v", completed["laigo"])
	}
	// Where the vendor offers the document's text, the shipped configuration takes it.
	for _, v := range []string{"gini", "allspark"} {
		if completed[v].Text == "" {
			t.Errorf("%s completed without the text it offers", v)
		}
	}
	for _, v := range all {
		if len(completed[v].Raw) == 0 || len(completed[v].Fields) == 0 && v != "laigo" {
			t.Errorf("%s: completed without raw or fields: %+v", v, completed[v])
		}
	}

	// Naming a vendor that is not there is refused at the door.
	_, err = c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{Vendors: []string{"abbyy"}})
	var p *httpapi.Problem
	if !errors.As(err, &p) || p.Status != 400 || !strings.Contains(p.Detail, "not enabled") {
		t.Fatalf("unknown vendor: %v", err)
	}
}

func waitCompleted(t *testing.T, s *service.Service, id string) events.Document {
	t.Helper()
	var doc events.Document
	eventstest.WaitFor(t, 30*time.Second, "document "+id+" to complete", func() bool {
		res, body := get(t, s.HTTPAddr(), "/v1/documents/"+id)
		doc = events.Document{}
		return res.StatusCode == 200 && json.Unmarshal(body, &doc) == nil && doc.Status == events.StatusCompleted
	})
	return doc
}

// An Allspark callback, wired as configured: in sandbox the simulator calls back as Allspark does
// once a callback URL is set in its console, and the document completes by that callback, not by
// polling (held off for an hour).
func TestAllsparkCallbackWiring(t *testing.T) {
	cfg, err := config.Parse(ingest.DefaultConfigYAML(), "config.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	test := testConfig(t)
	cfg.DataDir, cfg.HTTP.Listen, cfg.NATS.Embedded.Listen, cfg.HTTP.APIKeys = test.DataDir, test.HTTP.Listen, test.NATS.Embedded.Listen, test.HTTP.APIKeys
	vendorsYAML(t, &cfg, "  allspark: {callback_token: callback-token-0123456789, callback_poll_after: 1h, sandbox_pending_polls: 1000000}\n")
	s := start(t, cfg)
	path, _ := writePDF(t, 1000)
	c := &httpdrop.Client{BaseURL: "http://" + s.HTTPAddr(), APIKey: key}
	resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{Vendors: []string{"allspark"}})
	if err != nil {
		t.Fatal(err)
	}
	waitCompleted(t, s, resp.Documents[0].ID)
}

// Cradl's e-mail mode in sandbox: the document is mailed to the simulated workflow's SMTP
// receiver, which starts an execution; polling finds it and completes the document.
func TestCradlEmailSandbox(t *testing.T) {
	cfg, err := config.Parse(ingest.DefaultConfigYAML(), "config.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	test := testConfig(t)
	cfg.DataDir, cfg.HTTP.Listen, cfg.NATS.Embedded.Listen, cfg.HTTP.APIKeys = test.DataDir, test.HTTP.Listen, test.NATS.Embedded.Listen, test.HTTP.APIKeys
	vendorsYAML(t, &cfg, "  cradl: {mode: email, poll: {initial: 50ms}}\n")
	s := start(t, cfg)
	path, _ := writePDF(t, 3000)
	c := &httpdrop.Client{BaseURL: "http://" + s.HTTPAddr(), APIKey: key}
	resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{Vendors: []string{"cradl"}})
	if err != nil {
		t.Fatal(err)
	}
	doc := waitCompleted(t, s, resp.Documents[0].ID)
	if ref := doc.Vendors["cradl"].Ref; !strings.HasPrefix(ref, "mail:") {
		t.Fatalf("ref %q", ref)
	}
}

// The document read API does not depend on the HTTP drop: with uploads switched off, documents
// (from mailboxes, folders) are still read through it.
func TestDocumentAPIWithoutTheDrop(t *testing.T) {
	cfg := testConfig(t)
	cfg.Sources.HTTPDrop.Enabled = false
	s := start(t, cfg)
	res, err := http.Get("http://" + s.HTTPAddr() + "/v1/documents/0192aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without a key: %d, want 401 from the read API", res.StatusCode)
	}
	res2, body := get(t, s.HTTPAddr(), "/v1/documents/0192aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee")
	if res2.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "there is no document") {
		t.Fatalf("GET an unknown document: %d %s", res2.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.HTTPAddr()+"/v1/documents?filename=a.pdf", strings.NewReader("%PDF-1.7\n"))
	req.Header.Set("Authorization", "Bearer "+key)
	res3, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res3.Body.Close()
	if res3.StatusCode == http.StatusAccepted {
		t.Fatal("an upload was accepted with the drop switched off")
	}
}

// The list index is wired: a document uploaded is listed (as GET by id has it), and the index kept
// in data_dir lists it again after a restart.
func TestListDocuments(t *testing.T) {
	cfg := testConfig(t)
	s := start(t, cfg)
	id := endToEnd(t, s)
	var page struct {
		Documents []json.RawMessage `json:"documents"`
		Index     struct {
			CaughtUp bool   `json:"caught_up"`
			Sequence uint64 `json:"sequence"`
		} `json:"index"`
	}
	listed := func(addr string) bool {
		res, body := get(t, addr, "/v1/documents?source=http/api&q=invoice")
		if res.StatusCode != 200 {
			t.Fatalf("list: %d %s", res.StatusCode, body)
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		return len(page.Documents) == 1 && strings.Contains(string(page.Documents[0]), id) && page.Index.CaughtUp
	}
	eventstest.WaitFor(t, 10*time.Second, "the document in the list", func() bool { return listed(s.HTTPAddr()) })
	_, one := get(t, s.HTTPAddr(), "/v1/documents/"+id)
	var a, b any
	_ = json.Unmarshal(page.Documents[0], &a)
	_ = json.Unmarshal(one, &b)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("listed\n%s\nGET by id\n%s", page.Documents[0], one)
	}
	if _, body := get(t, s.HTTPAddr(), "/metrics"); !strings.Contains(string(body), "ingest_index_behind_events 0") {
		t.Errorf("/metrics lacks the index's lag")
	}
	if res, body := get(t, s.HTTPAddr(), "/v1/documents?status=lost"); res.StatusCode != 400 || !strings.Contains(string(body), "status") {
		t.Errorf("bad status: %d %s", res.StatusCode, body)
	}
	stop(t, s)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "index", "documents.db")); err != nil {
		t.Fatalf("the index is not in data_dir: %v", err)
	}
	s2 := start(t, cfg)
	eventstest.WaitFor(t, 10*time.Second, "the document in the list after a restart", func() bool { return listed(s2.HTTPAddr()) })
}
