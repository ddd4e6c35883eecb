package allspark_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/allspark"
	"github.com/ingest-dev/ingest/vendors/allspark/allsparksim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

const key = "test-key"

type env struct {
	sim    *allsparksim.Server
	srv    *httptest.Server
	client *allspark.Client
}

// newEnv starts a simulator over real HTTP and a client for it; adjust changes the client's
// config.
func newEnv(t *testing.T, simCfg allsparksim.Config, adjust func(*allspark.Config)) *env {
	t.Helper()
	if simCfg.APIKey == "" {
		simCfg.APIKey = key
	}
	sim := allsparksim.New(simCfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	cfg := allspark.Config{BaseURL: srv.URL + allsparksim.Prefix, APIKey: key, FetchOCR: true}
	if adjust != nil {
		adjust(&cfg)
	}
	c, err := allspark.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{sim: sim, srv: srv, client: c}
}

func doc(name string, content []byte) vendors.Document {
	sha, size := simkit.Digest(content)
	return vendors.Document{
		ID: "doc-" + name, Filename: name, ContentType: "application/pdf", Size: size, SHA256: sha,
		Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil },
	}
}

func pdf(s string) []byte { return []byte("%PDF-1.7\n" + s + "\n%%EOF\n") }

func wantFields(name string, content []byte) []events.Field {
	rec := simkit.RecogniseContent(name, content)
	return []events.Field{
		{Name: "invoice_number", Value: rec.InvoiceNumber},
		{Name: "total_amount", Value: rec.Total},
		{Name: "currency", Value: rec.Currency},
		{Name: "invoice_date", Value: rec.Date},
	}
}

// vendorError asserts that err is a *vendors.Error with the given permanence whose text says want.
func vendorError(t *testing.T, err error, permanent bool, want string) *vendors.Error {
	t.Helper()
	var e *vendors.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *vendors.Error", err, err)
	}
	if e.Permanent != permanent {
		t.Errorf("%v: permanent %v, want %v", err, e.Permanent, permanent)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("%q does not say %q", err.Error(), want)
	}
	return e
}

// pollUntilDone checks ref until it is done and returns how many pending answers came first.
func pollUntilDone(t *testing.T, c *allspark.Client, ref string) (vendors.Progress, int) {
	t.Helper()
	for pending := 0; pending < 100; pending++ {
		p, err := c.Check(t.Context(), ref)
		if err != nil {
			t.Fatalf("check %s: %v", ref, err)
		}
		if p.Done {
			return p, pending
		}
	}
	t.Fatalf("case %s never finished", ref)
	return vendors.Progress{}, 0
}

// rawCase fetches a case's JSON as the API serves it, to compare with Result.Raw.
func rawCase(t *testing.T, e *env, ref string) []byte {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+allsparksim.Prefix+"/cases/"+ref, nil)
	req.Header.Set("API-KEY", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return b
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  allspark.Config
		says string
	}{
		{"no key", allspark.Config{}, "API key is required"},
		{"blank key", allspark.Config{APIKey: "  "}, "API key is required"},
		{"not a URL", allspark.Config{APIKey: "k", BaseURL: "api-prod.ikarus.ai/api/v1"}, "base URL"},
		{"query in URL", allspark.Config{APIKey: "k", BaseURL: "https://x/api/v1?a=b"}, "base URL"},
		{"done is failed", allspark.Config{APIKey: "k", DoneStatuses: []string{"done"}, FailedStatuses: []string{"DONE"}}, "both done and failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := allspark.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("got %v, want an error saying %q", err, tc.says)
			}
		})
	}
	c, err := allspark.New(allspark.Config{APIKey: "k"})
	if err != nil || c.Name() != "allspark" {
		t.Errorf("defaults: %v %v", c, err)
	}
}

func TestHappyPath(t *testing.T) {
	e := newEnv(t, allsparksim.Config{PendingPolls: 3}, nil)
	content := pdf("invoice one")
	ref, err := e.client.Submit(t.Context(), doc("inv one.pdf", content))
	if err != nil {
		t.Fatal(err)
	}
	p, pending := pollUntilDone(t, e.client, ref)
	if pending != 3 || p.Failed {
		t.Fatalf("done after %d pending answers (failed %v), want 3 and not failed", pending, p.Failed)
	}
	res, err := e.client.Result(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Fields, wantFields("inv one.pdf", content)) {
		t.Errorf("fields %+v", res.Fields)
	}
	if want := simkit.RecogniseContent("inv one.pdf", content).Text; res.Text != want {
		t.Errorf("text %q, want %q", res.Text, want)
	}
	if raw := rawCase(t, e, ref); !bytes.Equal(res.Raw, raw) {
		t.Errorf("raw %s\nis not the case JSON verbatim %s", res.Raw, raw)
	}
	sha, _ := simkit.Digest(content)
	if n := e.sim.Ledger.Count(sha); n != 1 {
		t.Errorf("Allspark got the document %d times, want 1", n)
	}
}

func TestResultWithoutOCR(t *testing.T) {
	e := newEnv(t, allsparksim.Config{}, func(c *allspark.Config) { c.FetchOCR = false })
	e.sim.Faults.Add("ocr", simkit.Fault{Status: 500, Body: `{"detail":"must not be asked"}`})
	ref, err := e.client.Submit(t.Context(), doc("a.pdf", pdf("a")))
	if err != nil {
		t.Fatal(err)
	}
	pollUntilDone(t, e.client, ref)
	res, err := e.client.Result(t.Context(), ref)
	if err != nil || res.Text != "" || len(res.Fields) != 4 {
		t.Errorf("result %+v, %v", res, err)
	}
}

func TestDocumentType(t *testing.T) {
	for _, tc := range []struct {
		docType string
		says    string // "" for success
	}{
		{"invoice", ""},
		{"receipt", `document_type: "receipt" is not a valid choice.`},
	} {
		t.Run(tc.docType, func(t *testing.T) {
			e := newEnv(t, allsparksim.Config{DocumentTypes: []string{"invoice"}}, func(c *allspark.Config) { c.DocumentType = tc.docType })
			_, err := e.client.Submit(t.Context(), doc("a.pdf", pdf("a")))
			if tc.says == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			vendorError(t, err, true, tc.says)
		})
	}
}

func TestMultiFileCase(t *testing.T) {
	e := newEnv(t, allsparksim.Config{PendingPolls: 2}, nil)
	ctx := t.Context()
	id, err := e.client.CreateCase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := pdf("first"), pdf("second")
	for _, d := range []vendors.Document{doc("a.pdf", a), doc("b.pdf", b)} {
		if err := e.client.AddFile(ctx, id, d); err != nil {
			t.Fatalf("add %s: %v", d.Filename, err)
		}
	}
	// Not processed before MarkComplete, however often it is checked.
	for range 4 {
		if p, err := e.client.Check(ctx, id); err != nil || p.Done {
			t.Fatalf("unmarked case: %+v %v", p, err)
		}
	}
	if err := e.client.MarkComplete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, pending := pollUntilDone(t, e.client, id); pending != 2 {
		t.Errorf("%d pending answers after marking, want 2", pending)
	}
	res, err := e.client.Result(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := append(wantFields("a.pdf", a), wantFields("b.pdf", b)...)
	if !reflect.DeepEqual(res.Fields, want) {
		t.Errorf("fields %+v, want %+v", res.Fields, want)
	}
	wantText := simkit.RecogniseContent("a.pdf", a).Text + "\n\n" + simkit.RecogniseContent("b.pdf", b).Text
	if res.Text != wantText {
		t.Errorf("text %q, want %q", res.Text, wantText)
	}
	// Allspark refuses more files once processing started: the refusal is permanent and says so.
	err = e.client.AddFile(ctx, id, doc("c.pdf", pdf("c")))
	vendorError(t, err, true, "already marked complete")
}

func TestCredentialsRefused(t *testing.T) {
	t.Run("wrong key", func(t *testing.T) {
		e := newEnv(t, allsparksim.Config{}, func(c *allspark.Config) { c.APIKey = "wrong" })
		_, err := e.client.Submit(t.Context(), doc("a.pdf", pdf("a")))
		ve := vendorError(t, err, true, "credentials refused: Invalid API key.")
		if ve.Status != http.StatusForbidden {
			t.Errorf("status %d", ve.Status)
		}
		if len(e.sim.Ledger.All()) != 0 {
			t.Error("the upload was accepted with a wrong key")
		}
	})
	t.Run("key revoked mid-flow", func(t *testing.T) {
		e := newEnv(t, allsparksim.Config{PendingPolls: 5}, nil)
		ref, err := e.client.Submit(t.Context(), doc("a.pdf", pdf("a")))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.Check(t.Context(), ref); err != nil {
			t.Fatal(err)
		}
		e.sim.SetAPIKey("rotated-in-the-ui")
		_, err = e.client.Check(t.Context(), ref)
		vendorError(t, err, true, "credentials refused")
		if !strings.Contains(err.Error(), "API key") {
			t.Errorf("%q does not point at the API key", err)
		}
	})
}

func TestVendorRejectsFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content []byte
		status  int
		says    string
	}{
		{"type", []byte("just some text, not a document"), http.StatusUnsupportedMediaType, "Unsupported file type. Upload a PDF, PNG, JPEG or TIFF file."},
		{"size", pdf(strings.Repeat("x", 4096)), http.StatusRequestEntityTooLarge, "File too large."},
		{"empty", []byte{}, http.StatusBadRequest, "file: The submitted file is empty."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, allsparksim.Config{MaxBytes: 1024}, nil)
			_, err := e.client.Submit(t.Context(), doc("a.pdf", tc.content))
			ve := vendorError(t, err, true, tc.says)
			if ve.Status != tc.status || ve.Op != "submit" {
				t.Errorf("got %s HTTP %d, want submit HTTP %d", ve.Op, ve.Status, tc.status)
			}
		})
	}
}

func TestTransientThenSuccess(t *testing.T) {
	e := newEnv(t, allsparksim.Config{}, nil)
	e.sim.Faults.Add("upload", simkit.Fault{Status: 503, Body: `{"detail":"Service temporarily unavailable."}`, RetryAfter: "7"})
	content := pdf("retry")
	d := doc("r.pdf", content)
	_, err := e.client.Submit(t.Context(), d)
	ve := vendorError(t, err, false, "Service temporarily unavailable.")
	if ve.RetryAfter != 7*time.Second || vendors.RetryAfterOf(err) != 7*time.Second {
		t.Errorf("Retry-After %v, want 7s", ve.RetryAfter)
	}
	ref, err := e.client.Submit(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	e.sim.Faults.Add("case", simkit.Fault{Status: 429, Body: `{"detail":"Request was throttled. Expected available in 2 seconds."}`, RetryAfter: "2"})
	_, err = e.client.Check(t.Context(), ref)
	if ve := vendorError(t, err, false, "throttled"); ve.RetryAfter != 2*time.Second {
		t.Errorf("Retry-After %v, want 2s", ve.RetryAfter)
	}
	if p, err := e.client.Check(t.Context(), ref); err != nil || !p.Done {
		t.Errorf("after the 429: %+v %v", p, err)
	}
	sha, _ := simkit.Digest(content)
	if n := e.sim.Ledger.Count(sha); n != 1 {
		t.Errorf("Allspark got the document %d times, want 1", n)
	}
}

func TestStatuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status string
		done   []string // client DoneStatuses, nil for the default
		want   vendors.Progress
	}{
		{"custom step stays pending", "in_review", nil, vendors.Progress{}},
		{"pending", "pending", nil, vendors.Progress{}},
		{"completed", "completed", nil, vendors.Progress{Done: true}},
		{"failed", "failed", nil, vendors.Progress{Done: true, Failed: true}},
		{"error, any case", "Error", nil, vendors.Progress{Done: true, Failed: true}},
		{"configured done status", "approved", []string{"approved"}, vendors.Progress{Done: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, allsparksim.Config{}, func(c *allspark.Config) { c.DoneStatuses = tc.done })
			ref, err := e.client.Submit(t.Context(), doc("a.pdf", pdf("a")))
			if err != nil {
				t.Fatal(err)
			}
			if err := e.sim.SetStatus(ref, tc.status); err != nil {
				t.Fatal(err)
			}
			for range 3 { // the answer holds on every look
				p, err := e.client.Check(t.Context(), ref)
				if err != nil {
					t.Fatal(err)
				}
				if p.Done != tc.want.Done || p.Failed != tc.want.Failed || (p.Failed && !strings.Contains(p.Error, tc.status)) {
					t.Fatalf("progress %+v, want %+v", p, tc.want)
				}
			}
		})
	}
}

func TestFailedCaseCarriesVendorMessage(t *testing.T) {
	e := newEnv(t, allsparksim.Config{}, nil)
	e.sim.Faults.Add("case", simkit.Fault{Status: 200, Body: `{"case_id": 7, "status": "failed", "message": "Document is unreadable."}`})
	p, err := e.client.Check(t.Context(), "7")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Done || !p.Failed || p.Error != "Document is unreadable." {
		t.Errorf("progress %+v", p)
	}
}

func TestUnknownCase(t *testing.T) {
	e := newEnv(t, allsparksim.Config{}, nil)
	_, err := e.client.Check(t.Context(), "999")
	if ve := vendorError(t, err, true, "Not found."); ve.Status != http.StatusNotFound {
		t.Errorf("status %d", ve.Status)
	}
	_, err = e.client.Result(t.Context(), "999")
	vendorError(t, err, true, "Not found.")
	// A reference that is not a case id never reaches a URL.
	for _, ref := range []string{"", "../cases", "1/ocr-output", "-3", "0"} {
		_, err := e.client.Check(t.Context(), ref)
		vendorError(t, err, true, "is not an Allspark case id")
	}
}

func TestMalformedAnswers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		op    string // simulator fault
		body  string
		call  func(ctx context.Context, c *allspark.Client) error
		says  string
		perma bool
	}{
		{"case_id missing", "upload", `{"id": 4}`, submit, "case_id is missing", true},
		{"case_id not a number", "upload", `{"case_id": "four"}`, submit, "not a positive whole number", true},
		{"case_id fractional", "create", `{"case_id": 4.5}`, create, "not a positive whole number", true},
		{"not JSON", "upload", `<html>Bad Gateway</html>`, submit, "unexpected answer", true},
		{"status missing", "case", `{"case_id": 1}`, check, "case has no status", true},
		{"status not text", "case", `{"case_id": 1, "status": 3}`, check, "not a JSON object with a text status", true},
		{"files not a list", "case", `{"case_id": 1, "status": "completed", "files": {"a": 1}}`, result, "files is not a list", true},
		{"fields not a list", "case", `{"case_id": 1, "status": "completed", "files": [{"file_name": "a", "fields": "x"}]}`, result, "fields is not a list", true},
		{"another case", "case", `{"case_id": 2, "status": "completed", "files": []}`, result, "asked for case 1, got case 2", true},
		{"text not a string", "ocr", `{"text": 5}`, result, "unexpected answer", true},
		{"text missing", "ocr", `{"words": []}`, result, "has no text", true},
		{"add-file not success", "add-file", `{"status": "error", "message": "case is locked"}`, addFile, "case is locked", true},
		{"add-file empty answer", "add-file", `{}`, addFile, `no "status"`, true},
		{"mark-complete not JSON", "mark-complete", `ok`, markComplete, "unexpected answer", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, allsparksim.Config{}, nil)
			// Case 1 exists and is completed, so that Result reaches the faulty answer.
			ref, err := e.client.CreateCase(t.Context())
			if err != nil || ref != "1" {
				t.Fatalf("setup: %q %v", ref, err)
			}
			if err := e.sim.SetStatus(ref, "completed"); err != nil {
				t.Fatal(err)
			}
			if tc.op == "ocr" { // OCR is asked per file: give the case one
				e.sim.Faults.Add("case", simkit.Fault{Status: 200, Body: `{"case_id":1,"status":"completed","files":[{"file_name":"a.pdf","fields":[]}]}`})
			}
			e.sim.Faults.Add(tc.op, simkit.Fault{Status: 200, Body: tc.body})
			vendorError(t, tc.call(t.Context(), e.client), tc.perma, tc.says)
		})
	}
}

func submit(ctx context.Context, c *allspark.Client) error {
	_, err := c.Submit(ctx, doc("a.pdf", pdf("a")))
	return err
}

func create(ctx context.Context, c *allspark.Client) error {
	_, err := c.CreateCase(ctx)
	return err
}

func check(ctx context.Context, c *allspark.Client) error {
	_, err := c.Check(ctx, "1")
	return err
}

func result(ctx context.Context, c *allspark.Client) error {
	_, err := c.Result(ctx, "1")
	return err
}

func addFile(ctx context.Context, c *allspark.Client) error {
	return c.AddFile(ctx, "1", doc("a.pdf", pdf("a")))
}

func markComplete(ctx context.Context, c *allspark.Client) error {
	return c.MarkComplete(ctx, "1")
}

func TestFieldValuesAreText(t *testing.T) {
	e := newEnv(t, allsparksim.Config{}, func(c *allspark.Config) { c.FetchOCR = false })
	body := `{"case_id": "12", "status": "completed", "files": [{"file_name": "a.pdf", "fields": [
		{"display_name": "Total", "name": "total", "field_id": 1, "value": 24.990},
		{"display_name": "Paid", "name": "", "field_id": 2, "value": true},
		{"display_name": null, "field_id": 3, "value": null},
		{"name": "lines", "value": [1, {"a": "b"}]},
		{"name": "note", "value": "  kept as is "}
	]}, {"file_name": "b.pdf", "fields": null}]}`
	e.sim.Faults.Add("case", simkit.Fault{Status: 200, Body: body})
	res, err := e.client.Result(t.Context(), "12")
	if err != nil {
		t.Fatal(err)
	}
	want := []events.Field{
		{Name: "total", Value: "24.990"},
		{Name: "Paid", Value: "true"},
		{Name: "field_3", Value: ""},
		{Name: "lines", Value: `[1,{"a":"b"}]`},
		{Name: "note", Value: "  kept as is "},
	}
	if !reflect.DeepEqual(res.Fields, want) {
		t.Errorf("fields %+v\nwant %+v", res.Fields, want)
	}
	if string(res.Raw) != body {
		t.Error("raw is not the answer verbatim")
	}
}

// Find recognises a case by the document's tag in its file name, never by the name alone: the
// 55 newer cases all hold a scan.pdf too.
func TestFind(t *testing.T) {
	e := newEnv(t, allsparksim.Config{}, nil)
	ctx := t.Context()
	since := time.Now()
	tagged := func(id string, attempt int) vendors.Document {
		d := doc("scan.pdf", pdf(id))
		d.ID, d.Tag = id, vendors.NewTag(id, attempt)
		return d
	}
	ref, err := e.client.Submit(ctx, tagged("mine", 1))
	if err != nil {
		t.Fatal(err)
	}
	// Enough newer cases that the target is on the second page of 50.
	for i := range 55 {
		if _, err := e.client.Submit(ctx, tagged(fmt.Sprintf("other-%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	short, err := allspark.New(allspark.Config{BaseURL: e.srv.URL + allsparksim.Prefix, APIKey: key, ListPages: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		client  *allspark.Client
		doc     vendors.Document
		since   time.Time
		outcome vendors.Outcome
		ref     string
	}{
		{"made after since, on page 2", e.client, tagged("mine", 2), since, vendors.Found, ref},
		{"same file name, another document", e.client, tagged("never-sent", 1), since, vendors.Absent, ""},
		{"everything made before since", e.client, tagged("mine", 2), time.Now().Add(time.Hour), vendors.Absent, ""},
		{"the bound ends the look before since", short, tagged("never-sent", 1), since, vendors.Unknown, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.client.Find(ctx, tc.doc, tc.since)
			if err != nil || got.Outcome != tc.outcome || got.Ref != tc.ref {
				t.Errorf("Find = %+v, %v; want %v %q", got, err, tc.outcome, tc.ref)
			}
		})
	}
	e.sim.Faults.Add("list", simkit.Fault{Status: 502, Body: `{"detail":"Bad gateway"}`})
	_, err = e.client.Find(ctx, tagged("mine", 1), since)
	vendorError(t, err, false, "Bad gateway")
}

func TestKeyIsNotSentToOtherHosts(t *testing.T) {
	var mu sync.Mutex
	var leaked []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		leaked = append(leaked, r.Header.Get("API-KEY"))
		mu.Unlock()
		http.Error(w, `{"detail":"Not found."}`, http.StatusNotFound)
	}))
	t.Cleanup(other.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	c, err := allspark.New(allspark.Config{BaseURL: redirector.URL + "/api/v1/", APIKey: key})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Check(t.Context(), "1")
	vendorError(t, err, true, "Not found.")
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) != 1 || leaked[0] != "" {
		t.Errorf("the other host saw API-KEY %q", leaked)
	}
}

func TestConcurrentSubmits(t *testing.T) {
	e := newEnv(t, allsparksim.Config{}, func(c *allspark.Config) { c.Concurrency = 3 })
	var wg sync.WaitGroup
	refs := make([]string, 12)
	for i := range refs {
		wg.Go(func() {
			ref, err := e.client.Submit(t.Context(), doc(fmt.Sprintf("%d.pdf", i), pdf(fmt.Sprint(i))))
			if err != nil {
				t.Error(err)
			}
			refs[i] = ref
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range refs {
		if r == "" || seen[r] {
			t.Errorf("reference %q empty or repeated", r)
		}
		seen[r] = true
	}
}

func TestParseCaseID(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string // "" for an error
	}{
		{`1`, "1"},
		{`"42"`, "42"},
		{` " 7 " `, "7"},
		{`007`, ""}, // not JSON
		{`"007"`, "7"},
		{`18446744073709551615`, "18446744073709551615"},
		{`18446744073709551616`, ""},
		{`0`, ""},
		{`-1`, ""},
		{`1.5`, ""},
		{`1e3`, ""},
		{`"abc"`, ""},
		{`"../1"`, ""},
		{`null`, ""},
		{``, ""},
		{`true`, ""},
		{`{"id":1}`, ""},
	} {
		got, err := allspark.ParseCaseID(json.RawMessage(tc.raw))
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("ParseCaseID(%s) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
}

func FuzzParseCaseID(f *testing.F) {
	for _, s := range []string{`1`, `"42"`, `0`, `-1`, `1.5`, `"x"`, `null`, `"\u0031"`, `18446744073709551616`, ` 9 `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		id, err := allspark.ParseCaseID(raw)
		if err != nil {
			if id != "" {
				t.Fatalf("error %v with id %q", err, id)
			}
			return
		}
		// Safe in a URL path: plain decimal, no sign, no leading zero.
		if id == "" || id[0] == '0' || strings.Trim(id, "0123456789") != "" {
			t.Fatalf("ParseCaseID(%q) = %q", raw, id)
		}
		for _, again := range []string{id, `"` + id + `"`} {
			if got, err := allspark.ParseCaseID(json.RawMessage(again)); err != nil || got != id {
				t.Fatalf("round trip of %q: %q, %v", again, got, err)
			}
		}
	})
}

func FuzzParseCase(f *testing.F) {
	for _, s := range []string{
		`{"case_id":40,"files":[{"file_name":"hp1.pdf","fields":[{"display_name":"Invoice ID","name":"invoice_id","field_id":1,"value":"8CN9150412"}]}],"status":"completed","created_at":"2020-09-26T11:02:39.601000Z","updated_at":"2020-09-28T17:26:08.029000Z"}`,
		`{"case_id":"2","status":"failed","message":"unreadable","files":null}`,
		`{"case_id":3,"files":[{"fields":[{"field_id":9,"value":12.5},{"display_name":"X","value":null}]}]}`,
		`{"case_id":1,"files":{}}`,
		`{"case_id":1,"files":[{"fields":[1]}]}`,
		`[]`, `null`, `{}`, `{"case_id":1,"status":5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := allspark.ParseCase(raw)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		if id, err := allspark.ParseCaseID(json.RawMessage(c.ID)); err != nil || id != c.ID {
			t.Fatalf("case id %q does not parse again: %v", c.ID, err)
		}
		again, err := allspark.ParseCase(raw)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("not deterministic: %+v vs %+v (%v)", c, again, err)
		}
		// Whatever the vendor's value types, every field survives the trip into an event.
		for _, f := range c.Files {
			for _, fld := range f.Fields {
				if _, err := json.Marshal(fld); err != nil {
					t.Fatalf("field %+v does not marshal: %v", fld, err)
				}
			}
		}
	})
}

// Allspark's document names the direct upload twice, differently: a simulator that serves the
// prose's /direct-upload/ refuses a client on the samples' path, and takes one configured for it.
func TestUploadPathIsConfigurable(t *testing.T) {
	prose := allsparksim.Config{UploadPath: "/direct-upload/"}
	if _, err := newEnv(t, prose, nil).client.Submit(t.Context(), doc("a.pdf", pdf("a"))); err == nil || !vendors.IsPermanent(err) {
		t.Fatalf("default path against a server on the other one: %v; want a permanent error", err)
	}
	e := newEnv(t, prose, func(c *allspark.Config) { c.UploadPath = "/direct-upload/" })
	ref, err := e.client.Submit(t.Context(), doc("a.pdf", pdf("a")))
	if err != nil || ref == "" {
		t.Fatalf("configured path: %q, %v", ref, err)
	}
}
