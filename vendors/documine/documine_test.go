package documine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/documine"
	"github.com/ingest-dev/ingest/vendors/documine/documinesim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

func simConfig() documinesim.Config {
	return documinesim.Config{
		ClientID: "ingest", ClientSecret: "s3cret", Tenant: "acme",
		DossierTemplateID: "tpl", DossierID: "dos",
		Users:    map[string]string{"svc": "pw"},
		MaxBytes: 1024,
	}
}

func clientConfig(base string) documine.Config {
	return documine.Config{
		BaseURL: base, ClientID: "ingest", ClientSecret: "s3cret",
		Username: "svc", Password: "pw", Tenant: "acme",
		DossierTemplateID: "tpl", DossierID: "dos",
	}
}

// setup starts a simulator and a client against it; the mod funcs adjust either config.
func setup(t *testing.T, simMod func(*documinesim.Config), clientMod func(*documine.Config)) (*documinesim.Server, *documine.Client) {
	t.Helper()
	sc := simConfig()
	if simMod != nil {
		simMod(&sc)
	}
	sim, err := documinesim.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	cc := clientConfig(srv.URL)
	if clientMod != nil {
		clientMod(&cc)
	}
	c, err := documine.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	return sim, c
}

var pdf = []byte("%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n")

func pdfWith(s string) []byte { return append(append([]byte{}, pdf...), s...) }

// document counts how often its bytes are opened.
func document(name string, content []byte, opens *atomic.Int32) vendors.Document {
	sha, size := simkit.Digest(content)
	return vendors.Document{
		ID: "doc-" + name, Filename: name, ContentType: "application/pdf", Size: size, SHA256: sha,
		Open: func(context.Context) (io.ReadCloser, error) {
			if opens != nil {
				opens.Add(1)
			}
			return io.NopCloser(bytes.NewReader(content)), nil
		},
	}
}

func asVendorError(t *testing.T, err error) *vendors.Error {
	t.Helper()
	var e *vendors.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *vendors.Error", err, err)
	}
	return e
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*documine.Config)
		wantErr string
	}{
		{"valid", func(*documine.Config) {}, ""},
		{"no base URL", func(c *documine.Config) { c.BaseURL = "" }, "BaseURL is required"},
		{"base URL not http", func(c *documine.Config) { c.BaseURL = "ftp://x" }, "not an absolute http(s) URL"},
		{"no tenant", func(c *documine.Config) { c.Tenant = "" }, "Tenant is required"},
		{"no template", func(c *documine.Config) { c.DossierTemplateID = "" }, "DossierTemplateID is required"},
		{"no dossier", func(c *documine.Config) { c.DossierID = " " }, "DossierID is required"},
		{"no client", func(c *documine.Config) { c.ClientID = "" }, "ClientID is required"},
		{"no user", func(c *documine.Config) { c.Username = "" }, "Username is required"},
		{"no password", func(c *documine.Config) { c.Password = "" }, "Password is required"},
		{"bad token URL", func(c *documine.Config) { c.TokenURL = "/token" }, "TokenURL"},
		{"status path without file", api(func(a *documine.API) { a.Status.Path = "/api/files" }), `api.status.path: "/api/files" must contain {fileId}`},
		{"upload path with file", api(func(a *documine.API) { a.Upload.Path = "/api/files/{fileId}" }), "api.upload.path"},
		{"misspelt placeholder", api(func(a *documine.API) { a.Components.Path = "/api/{fileID}/components" }), "placeholder {fileID} is not known"},
		{"relative path", api(func(a *documine.API) { a.List.Path = "api/files" }), "must start with /"},
		{"query in path", api(func(a *documine.API) { a.List.Path = "/api/files?dossier={dossierId}" }), "path only"},
		{"upload method", api(func(a *documine.API) { a.Upload.Method = "GET" }), `api.upload.method: "GET" is not one of POST, PUT`},
		{"no file field", api(func(a *documine.API) { a.Upload.FileField = "" }), "api.upload.file_field"},
		{"no id keys", api(func(a *documine.API) { a.Upload.IDKeys = nil }), "api.upload.id_keys: needs at least one key"},
		{"bad id key", api(func(a *documine.API) { a.Upload.IDKeys = []string{"data..id"} }), "not a dotted JSON path"},
		{"no status field", api(func(a *documine.API) { a.Status.Field = "" }), "api.status.field"},
		{"no done value", api(func(a *documine.API) { a.Status.DoneValues = nil }), "api.status.done_values: needs at least one value"},
		{"done and failed overlap", api(func(a *documine.API) { a.Status.FailedValues = []string{"processed"} }), "also in done_values"},
		{"pending and done overlap", api(func(a *documine.API) { a.Status.PendingValues = []string{"PROCESSED"} }), "cannot mean both"},
		{"result mode", api(func(a *documine.API) { a.ResultMode = "zip" }), `api.result_mode: "zip" is not one of components, package`},
		{"package status without id", api(func(a *documine.API) {
			a.ResultMode = documine.ResultPackage
			a.Package.Status.Path = "/api/downloads"
		}), "api.package.status.path: \"/api/downloads\" must contain {downloadId}"},
		{"package body not JSON", api(func(a *documine.API) {
			a.ResultMode = documine.ResultPackage
			a.Package.Create.Body = `{"fileIds":[{fileId}]}`
		}), "api.package.create.body: is not JSON"},
		{"package text pattern", api(func(a *documine.API) {
			a.ResultMode = documine.ResultPackage
			a.Package.Download.TextFiles = "["
		}), "api.package.download.text_files"},
		{"package max bytes", api(func(a *documine.API) {
			a.ResultMode = documine.ResultPackage
			a.Package.Download.MaxBytes = 0
		}), "api.package.download.max_bytes"},
		{"package shapes unchecked in components mode", api(func(a *documine.API) { a.Package.Status.Path = "x" }), ""},
		{"negative rate", func(c *documine.Config) { c.RateLimit = -1 }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := clientConfig("https://acme.documine.example")
			tt.mod(&cfg)
			c, err := documine.New(cfg)
			if tt.wantErr == "" {
				if err != nil || c.Name() != "documine" {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tt.wantErr)
			}
		})
	}
}

// api changes the default API.
func api(mod func(*documine.API)) func(*documine.Config) {
	return func(c *documine.Config) {
		c.API = documine.DefaultAPI()
		mod(&c.API)
	}
}

func TestHappyPath(t *testing.T) {
	sim, c := setup(t, func(sc *documinesim.Config) { sc.PendingPolls = 3 }, nil)
	ctx := context.Background()
	content := pdfWith("invoice")
	ref, err := c.Submit(ctx, document("invoice.pdf", content, nil))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p, err := c.Check(ctx, ref)
		if err != nil || p.Done || p.Failed {
			t.Fatalf("look %d: %+v %v, want pending", i+1, p, err)
		}
	}
	p, err := c.Check(ctx, ref)
	if err != nil || !p.Done || p.Failed {
		t.Fatalf("look 4: %+v %v, want done", p, err)
	}
	res, err := c.Result(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	rec := simkit.RecogniseContent("invoice.pdf", content)
	want := []events.Field{
		{Name: "Invoice_Number", Value: rec.InvoiceNumber},
		{Name: "Invoice_Date", Value: rec.Date},
		{Name: "Total", Value: rec.Total},
		{Name: "Currency", Value: rec.Currency},
	}
	if !reflect.DeepEqual(res.Fields, want) {
		t.Fatalf("fields %+v, want %+v", res.Fields, want)
	}
	if !json.Valid(res.Raw) || !bytes.Contains(res.Raw, []byte(ref)) {
		t.Fatalf("raw %s is not the components answer of %s", res.Raw, ref)
	}
	sha, _ := simkit.Digest(content)
	if n := sim.Ledger.Count(sha); n != 1 {
		t.Fatalf("document uploaded %d times, want 1", n)
	}
}

func TestResultRawVerbatim(t *testing.T) {
	sim, c := setup(t, nil, nil)
	body := "{ \"components\" : [ {\"name\":\"Total\", \"value\": 24.990},\n {\"name\":\"Author\",\"values\":[\"A\",\"B\"]} ] }"
	sim.Faults.Add("components", simkit.Fault{Status: 200, Body: body})
	res, err := c.Result(context.Background(), "any")
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Raw) != body {
		t.Fatalf("raw %q, want %q", res.Raw, body)
	}
	want := []events.Field{{Name: "Total", Value: "24.990"}, {Name: "Author", Value: "A"}, {Name: "Author", Value: "B"}}
	if !reflect.DeepEqual(res.Fields, want) {
		t.Fatalf("fields %+v, want %+v", res.Fields, want)
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	t.Run("expired access token is refreshed", func(t *testing.T) {
		sim, c := setup(t, nil, nil)
		ref, err := c.Submit(ctx, document("a.pdf", pdf, nil))
		if err != nil {
			t.Fatal(err)
		}
		sim.Tokens.ExpireAll()
		if _, err := c.Check(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if sim.Logins() != 1 || sim.Refreshes() != 1 {
			t.Fatalf("logins %d refreshes %d, want 1 and 1", sim.Logins(), sim.Refreshes())
		}
	})
	t.Run("refused refresh means a new login", func(t *testing.T) {
		sim, c := setup(t, nil, nil)
		ref, err := c.Submit(ctx, document("a.pdf", pdf, nil))
		if err != nil {
			t.Fatal(err)
		}
		sim.Tokens.ExpireAll()
		sim.ExpireRefreshTokens()
		if _, err := c.Check(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if sim.Logins() != 2 || sim.Refreshes() != 0 {
			t.Fatalf("logins %d refreshes %d, want 2 and 0", sim.Logins(), sim.Refreshes())
		}
	})
	t.Run("upload after a 401 re-opens the document", func(t *testing.T) {
		sim, c := setup(t, nil, nil)
		if _, err := c.Submit(ctx, document("a.pdf", pdf, nil)); err != nil {
			t.Fatal(err)
		}
		sim.Tokens.ExpireAll()
		var opens atomic.Int32
		content := pdfWith("second")
		if _, err := c.Submit(ctx, document("b.pdf", content, &opens)); err != nil {
			t.Fatal(err)
		}
		sha, _ := simkit.Digest(content)
		if opens.Load() != 2 || sim.Ledger.Count(sha) != 1 {
			t.Fatalf("opened %d times, uploaded %d times; want 2 and 1", opens.Load(), sim.Ledger.Count(sha))
		}
	})
	for _, tt := range []struct {
		name string
		mod  func(*documine.Config)
	}{
		{"wrong password", func(c *documine.Config) { c.Password = "nope" }},
		{"wrong client secret", func(c *documine.Config) { c.ClientSecret = "nope" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t, nil, tt.mod)
			_, err := c.Submit(ctx, document("a.pdf", pdf, nil))
			e := asVendorError(t, err)
			if !e.Permanent || e.Op != "token" || !strings.Contains(e.Message, "credentials") {
				t.Fatalf("got %+v, want a permanent token error about credentials", e)
			}
			if len(sim.Ledger.All()) != 0 {
				t.Fatal("a document went up without a login")
			}
		})
	}
}

func TestRejections(t *testing.T) {
	tests := []struct {
		name       string
		clientMod  func(*documine.Config)
		content    []byte
		wantStatus int
		wantMsg    string
	}{
		{"not a PDF", nil, []byte("PK\x03\x04 word document"), 415, "only PDF files"},
		{"too large", nil, pdfWith(strings.Repeat("x", 4096)), 413, "Maximum upload size exceeded"},
		{"wrong tenant header", func(c *documine.Config) {
			c.TokenURL = c.BaseURL + "/auth/realms/acme/protocol/openid-connect/token"
			c.Tenant = "globex"
		}, pdf, 403, `tenant "globex" is denied`},
		{"wrong tenant realm", func(c *documine.Config) { c.Tenant = "globex" }, pdf, 404, "check TokenURL and Tenant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t, nil, tt.clientMod)
			_, err := c.Submit(context.Background(), document("a.pdf", tt.content, nil))
			e := asVendorError(t, err)
			if !e.Permanent || e.Status != tt.wantStatus || !strings.Contains(e.Message, tt.wantMsg) {
				t.Fatalf("got %+v, want permanent %d with %q", e, tt.wantStatus, tt.wantMsg)
			}
			if len(sim.Ledger.All()) != 0 {
				t.Fatal("the simulator kept a rejected upload")
			}
		})
	}
}

func TestTransientThenSuccess(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		op     string
		status int
		call   func(c *documine.Client, ref string) error
	}{
		{"upload", 429, func(c *documine.Client, _ string) error {
			_, err := c.Submit(ctx, document("b.pdf", pdfWith("b"), nil))
			return err
		}},
		{"status", 503, func(c *documine.Client, ref string) error { _, err := c.Check(ctx, ref); return err }},
		{"components", 502, func(c *documine.Client, ref string) error { _, err := c.Result(ctx, ref); return err }},
		{"list", 500, func(c *documine.Client, _ string) error {
			_, err := c.Find(ctx, document("a.pdf", pdf, nil), time.Time{})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			sim, c := setup(t, nil, nil)
			ref, err := c.Submit(ctx, document("a.pdf", pdf, nil))
			if err != nil {
				t.Fatal(err)
			}
			sim.Faults.Add(tt.op, simkit.Fault{Status: tt.status, RetryAfter: "7",
				Body: `{"timestamp":"2026-11-27T10:00:00Z","message":"DocuMine is busy"}`})
			e := asVendorError(t, tt.call(c, ref))
			if e.Permanent || e.Status != tt.status || vendors.RetryAfterOf(e) != 7*time.Second || e.Message != "DocuMine is busy" {
				t.Fatalf("got %+v, want transient %d, 7 s, DocuMine's message", e, tt.status)
			}
			if err := tt.call(c, ref); err != nil {
				t.Fatalf("second try: %v", err)
			}
			if n := len(sim.Ledger.All()); tt.op == "upload" && n != 2 {
				t.Fatalf("ledger has %d uploads, want 2 (the refused one is not among them)", n)
			}
		})
	}
}

func TestStatusMapping(t *testing.T) {
	tests := []struct {
		status string
		want   vendors.Progress
	}{
		{"ERROR", vendors.Progress{Done: true, Failed: true, Error: "Simulated analysis failure"}},
		{"FAILED", vendors.Progress{Done: true, Failed: true, Error: "Simulated analysis failure"}},
		{"processed", vendors.Progress{Done: true}},
		{"OCR_PROCESSING", vendors.Progress{}},
		{"SOMETHING_NEW", vendors.Progress{}},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			sim, c := setup(t, nil, nil)
			ref, err := c.Submit(context.Background(), document("a.pdf", pdf, nil))
			if err != nil {
				t.Fatal(err)
			}
			sim.SetStatus(ref, tt.status)
			p, err := c.Check(context.Background(), ref)
			if err != nil || p != tt.want {
				t.Fatalf("got %+v %v, want %+v", p, err, tt.want)
			}
		})
	}
}

func TestFailureMessageWithoutDetails(t *testing.T) {
	sim, c := setup(t, nil, nil)
	sim.Faults.Add("status", simkit.Fault{Status: 200, Body: `{"fileId":"f","processingStatus":"ERROR"}`})
	p, err := c.Check(context.Background(), "f")
	if err != nil || !p.Failed || !strings.Contains(p.Error, "processingStatus ERROR") {
		t.Fatalf("got %+v %v", p, err)
	}
}

func TestUnknownFile(t *testing.T) {
	_, c := setup(t, nil, nil)
	ctx := context.Background()
	// The slash proves the id is escaped: unescaped it would address another resource.
	_, errCheck := c.Check(ctx, "no-such/file")
	_, errResult := c.Result(ctx, "no-such/file")
	for _, err := range []error{errCheck, errResult} {
		e := asVendorError(t, err)
		if !e.Permanent || e.Status != 404 || !strings.Contains(e.Message, "no-such/file not found") {
			t.Fatalf("got %+v, want permanent 404 with DocuMine's message", e)
		}
	}
}

func TestMalformedAnswers(t *testing.T) {
	ctx := context.Background()
	submit := func(c *documine.Client) (string, error) { return c.Submit(ctx, document("a.pdf", pdf, nil)) }
	check := func(c *documine.Client) (string, error) {
		p, err := c.Check(ctx, "f")
		return fmt.Sprint(p.Done), err
	}
	result := func(c *documine.Client) (string, error) {
		r, err := c.Result(ctx, "f")
		return fmt.Sprint(r.Fields), err
	}
	find := func(c *documine.Client) (string, error) {
		l, err := c.Find(ctx, document("a.pdf", pdf, nil), time.Time{})
		return l.Ref, err
	}
	tests := []struct {
		name    string
		op      string
		body    string
		call    func(*documine.Client) (string, error)
		want    string // the answer when it is tolerated
		wantErr string // else, in the error
	}{
		{"upload: fileId", "upload", `{"fileId":"abc"}`, submit, "abc", ""},
		{"upload: id", "upload", `{"id":"abc"}`, submit, "abc", ""},
		{"upload: one of fileIds", "upload", `{"fileIds":["abc"]}`, submit, "abc", ""},
		{"upload: numeric id", "upload", `{"fileId":42}`, submit, "42", ""},
		{"upload: no id", "upload", `{"filename":"a.pdf"}`, submit, "", "no file id in the upload answer (api.upload.id_keys): the answer has none of the configured id keys (fileId, id, fileIds)"},
		{"upload: two fileIds", "upload", `{"fileIds":["a","b"]}`, submit, "", "fileIds holds 2 ids where one was expected"},
		{"upload: not JSON", "upload", `<html>OK</html>`, submit, "", "unexpected answer"},
		{"upload: a list", "upload", `[{"fileId":"abc"}]`, submit, "", "unexpected answer"},
		{"status: number", "status", `{"processingStatus":5}`, check, "", "processingStatus is not a string"},
		{"status: missing", "status", `{"fileId":"f"}`, check, "", "no processingStatus"},
		{"status: null body", "status", `null`, check, "", "no processingStatus"},
		{"status: not JSON", "status", `PROCESSED`, check, "", "unexpected answer"},
		{"components: not JSON", "components", `{"components": [`, result, "", "not JSON"},
		{"components: unknown shape", "components", `"done"`, result, "[]", ""},
		{"list: a string", "list", `"files"`, find, "", "neither a list nor an object"},
		{"list: no list inside", "list", `{"total":0}`, find, "", "no list of files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t, nil, nil)
			sim.Faults.Add(tt.op, simkit.Fault{Status: 200, Body: tt.body})
			got, err := tt.call(c)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("got %q %v, want %q", got, err, tt.want)
				}
				return
			}
			e := asVendorError(t, err)
			if !e.Permanent || !strings.Contains(e.Message, tt.wantErr) {
				t.Fatalf("got %+v, want a permanent error with %q", e, tt.wantErr)
			}
		})
	}
}

// tagged is doc as the dispatcher hands it over for one attempt: its own id and tag.
func tagged(doc vendors.Document, id string, attempt int) vendors.Document {
	doc.ID, doc.Tag = id, vendors.NewTag(id, attempt)
	return doc
}

// Find recognises an upload by the document's tag only: other documents named scan.pdf are
// never taken for it, and a list that says it has more pages makes the answer Unknown.
func TestFind(t *testing.T) {
	ctx := context.Background()
	sim, c := setup(t, nil, nil)
	first, err := c.Submit(ctx, tagged(document("scan.pdf", pdf, nil), "mine", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(ctx, tagged(document("scan.pdf", pdfWith("b"), nil), "other", 1)); err != nil {
		t.Fatal(err)
	}
	again, err := c.Submit(ctx, tagged(document("scan.pdf", pdf, nil), "mine", 2))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		docID string
		want  vendors.Lookup
	}{
		{"two attempts: the first is kept", "mine", vendors.Lookup{Outcome: vendors.Found, Ref: first, Attempt: 1, Duplicates: []string{again}}},
		{"same name, other document", "absent", vendors.Lookup{Outcome: vendors.Absent}},
	}
	for _, tt := range cases {
		got, err := c.Find(ctx, tagged(document("scan.pdf", pdf, nil), tt.docID, 1), time.Now())
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Fatalf("%s: %+v %v, want %+v", tt.name, got, err, tt.want)
		}
	}

	// Shapes the simulator does not use, served as faults.
	tag := vendors.NewTag("mine", 3)
	shapes := []struct {
		name    string
		body    string
		outcome vendors.Outcome
		ref     string
	}{
		{"wrapped, id, fileName", `{"content":[{"id":"f1","fileName":"` + tag + `_scan.pdf"}]}`, vendors.Found, "f1"},
		{"sanitised name keeps the tag", `{"files":[{"fileId":"f7","filename":"` + tag + `_a_b.pdf"}]}`, vendors.Found, "f7"},
		{"same name without the tag", `[{"fileId":"f2","filename":"scan.pdf"}]`, vendors.Absent, ""},
		{"another document's tag", `[{"fileId":"f3","filename":"` + vendors.NewTag("other", 3) + `_scan.pdf"}]`, vendors.Absent, ""},
		{"a page, the last", `{"content":[{"fileId":"f4","filename":"scan.pdf"}],"last":true,"totalElements":1}`, vendors.Absent, ""},
		{"a page, not the last", `{"content":[{"fileId":"f4","filename":"scan.pdf"}],"last":false}`, vendors.Unknown, ""},
		{"more elements than given", `{"content":[{"fileId":"f4","filename":"scan.pdf"}],"totalElements":40}`, vendors.Unknown, ""},
		{"more pages", `{"items":[],"totalPages":3}`, vendors.Unknown, ""},
		{"a next link", `{"data":[],"next":"/files?page=2"}`, vendors.Unknown, ""},
		{"hasMore", `{"files":[],"hasMore":true}`, vendors.Unknown, ""},
		{"found on a partial page", `{"content":[{"fileId":"f5","filename":"` + tag + `_scan.pdf"}],"last":false}`, vendors.Found, "f5"},
	}
	for _, tt := range shapes {
		t.Run(tt.name, func(t *testing.T) {
			sim.Faults.Add("list", simkit.Fault{Status: 200, Body: tt.body})
			got, err := c.Find(ctx, tagged(document("scan.pdf", pdf, nil), "mine", 4), time.Now())
			if err != nil || got.Outcome != tt.outcome || got.Ref != tt.ref {
				t.Fatalf("got %+v %v, want %v %q", got, err, tt.outcome, tt.ref)
			}
			if got.Outcome == vendors.Unknown && got.Reason == "" {
				t.Fatal("Unknown without a reason")
			}
		})
	}
}

func TestConcurrentSubmits(t *testing.T) {
	sim, c := setup(t, nil, func(cfg *documine.Config) { cfg.Concurrency = 2 })
	var wg sync.WaitGroup
	refs := make([]string, 8)
	for i := range refs {
		wg.Go(func() {
			ref, err := c.Submit(context.Background(), document(fmt.Sprintf("f%d.pdf", i), pdfWith(fmt.Sprint(i)), nil))
			if err != nil {
				t.Error(err)
			}
			refs[i] = ref
		})
	}
	wg.Wait()
	if len(sim.Ledger.All()) != 8 || sim.Logins() != 1 {
		t.Fatalf("%d uploads and %d logins, want 8 and 1", len(sim.Ledger.All()), sim.Logins())
	}
}

func TestComponentFields(t *testing.T) {
	f := func(name, value string) events.Field { return events.Field{Name: name, Value: value} }
	tests := []struct {
		name    string
		body    string
		want    []events.Field
		wantErr bool
	}{
		{"list with value", `[{"name":"Title","value":"A study"}]`, []events.Field{f("Title", "A study")}, false},
		{"list with values", `[{"name":"Author","values":["X","Y"]}]`, []events.Field{f("Author", "X"), f("Author", "Y")}, false},
		{"componentName", `[{"componentName":"Title","value":"T"}]`, []events.Field{f("Title", "T")}, false},
		{"value objects", `[{"name":"Dose","values":[{"value":"5 mg","page":2},{"other":1}]}]`, []events.Field{f("Dose", "5 mg"), f("Dose", `{"other":1}`)}, false},
		{"scalars", `[{"name":"N","value":1.50},{"name":"B","value":true},{"name":"Z","value":null}]`, []events.Field{f("N", "1.50"), f("B", "true"), f("Z", "")}, false},
		{"unnamed and valueless skipped", `[{"value":"x"},{"name":"Def","type":"text"},3,"s"]`, nil, false},
		{"map", `{"b":"2","a":["1","1b"],"c":{"value":"3"},"d":{"x":1}}`, []events.Field{f("a", "1"), f("a", "1b"), f("b", "2"), f("c", "3"), f("d", `{"x":1}`)}, false},
		{"wrapped list", `{"fileId":"f","components":[{"name":"T","value":"v"}]}`, []events.Field{f("T", "v")}, false},
		{"wrapped map", `{"fileId":"f","components":{"T":"v"}}`, []events.Field{f("T", "v")}, false},
		{"bare string", `"nothing"`, nil, false},
		{"empty list", `[]`, nil, false},
		{"not JSON", `{"name":`, nil, true},
		{"empty body", ``, nil, true},
		{"two documents", `{} {}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := documine.ComponentFields([]byte(tt.body))
			if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v %v, want %+v (error: %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzComponentFields(f *testing.F) {
	for _, seed := range []string{
		`[{"name":"Title","value":"A"}]`,
		`[{"name":"Author","values":["X",{"value":"Y"},null,1e3]}]`,
		`{"components":{"a":["1"],"b":{"value":{"deep":true}}}}`,
		`{"components":[{"componentName":"x","values":[[1,2]]}]}`,
		`{"":"empty name","k":null}`,
		`"s"`, `12`, `null`, `[`, ``, "\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := documine.ComponentFields(body)
		if valid := json.Valid(body); valid == (err != nil) {
			t.Fatalf("valid JSON %v but error %v", valid, err)
		}
		for _, fl := range got {
			if fl.Name == "" {
				t.Fatalf("field without a name in %+v", got)
			}
		}
		again, _ := documine.ComponentFields(body)
		if !reflect.DeepEqual(got, again) {
			t.Fatalf("not deterministic: %+v then %+v", got, again)
		}
	})
}

// A sandbox keeps its dossier across a restart: a file in flight when the simulator stops is
// known to the one started on the same state, with its progress and its place in the file list
// (which reconciliation reads), and completes there with its own result.
func TestSimulatorStateSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "documine", "dossier.jsonl")
	start := func() (*documinesim.Server, *documine.Client) {
		sim, c := setup(t, func(sc *documinesim.Config) { sc.PendingPolls = 2 }, nil)
		if err := sim.KeepState(path); err != nil {
			t.Fatal(err)
		}
		return sim, c
	}
	sim, c := start()
	content := pdfWith("invoice")
	doc := tagged(document("invoice.pdf", content, nil), "doc-1", 1)
	ref, err := c.Submit(ctx, doc)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.Check(ctx, ref); err != nil || p.Done {
		t.Fatalf("first check: %+v %v", p, err)
	}
	if err := sim.CloseState(); err != nil {
		t.Fatal(err)
	}

	sim, c = start() // a new process: new simulator, new client, same state
	defer sim.CloseState()
	if got, err := c.Find(ctx, doc, time.Now()); err != nil || got.Outcome != vendors.Found || got.Ref != ref {
		t.Fatalf("after the restart Find says %+v %v, want %s found", got, err, ref)
	}
	if p, err := c.Check(ctx, ref); err != nil || p.Done {
		t.Fatalf("check after restart: %+v %v; want still pending (one look left)", p, err)
	}
	if p, err := c.Check(ctx, ref); err != nil || !p.Done || p.Failed {
		t.Fatalf("check: %+v %v; want done", p, err)
	}
	r, err := c.Result(ctx, ref)
	if want := wantFields(simkit.RecogniseContent("invoice.pdf", content)); err != nil || !reflect.DeepEqual(r.Fields, want) {
		t.Fatalf("result after restart: %+v %v, want fields %+v", r.Fields, err, want)
	}
	sha, _ := simkit.Digest(content)
	if n := sim.Ledger.Count(sha); n != 1 {
		t.Fatalf("the restarted sandbox counts %d uploads of the document, want 1", n)
	}
}

// A client that outlives the simulator's restart (the sandbox reached over the network, as a
// real instance is) holds tokens the new one never issued: it is refused, its refresh token too,
// and it logs in again. The result package it made before the restart is still there to poll,
// download and delete, in the configured shapes.
func TestSimulatorRestartKeepsPackages(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dossier.jsonl")
	var current atomic.Pointer[documinesim.Server]
	start := func() *documinesim.Server {
		sc := simConfig()
		sc.API, sc.PendingPolls, sc.MaxBytes = documine.SandboxAPI(customPackageAPI()), 1, 1<<20
		sim, err := documinesim.New(sc)
		if err != nil {
			t.Fatal(err)
		}
		if err := sim.KeepState(path); err != nil {
			t.Fatal(err)
		}
		current.Store(sim)
		return sim
	}
	sim := start()
	// One address for every simulator, so that one client talks to each in turn.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current.Load().ServeHTTP(w, r)
	}))
	defer srv.Close()
	cfg := clientConfig(srv.URL)
	cfg.API = customPackageAPI()
	c, err := documine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	content := pdfWith("packaged")
	ref, err := c.Submit(ctx, document("packaged.pdf", content, nil))
	if err != nil {
		t.Fatal(err)
	}
	for look := 1; look <= 2; look++ { // the file's pending look, then the package's made and pending
		if p, err := c.Check(ctx, ref); err != nil || p.Done {
			t.Fatalf("look %d: %+v %v, want pending", look, p, err)
		}
	}
	if sim.Packages() != 1 {
		t.Fatalf("%d packages before the restart, want 1", sim.Packages())
	}
	if err := sim.CloseState(); err != nil {
		t.Fatal(err)
	}

	sim = start()
	defer sim.CloseState()
	if p, err := c.Check(ctx, ref); err != nil || !p.Done || p.Failed {
		t.Fatalf("check after the restart: %+v %v, want done", p, err)
	}
	if sim.Logins() != 1 || sim.Refreshes() != 0 {
		t.Fatalf("logins %d refreshes %d after the restart, want 1 and 0", sim.Logins(), sim.Refreshes())
	}
	if n := sim.Requests("package-create"); n != 0 {
		t.Fatalf("%d packages made after the restart, want the one from before", n)
	}
	r, err := c.Result(ctx, ref)
	rec := simkit.RecogniseContent("packaged.pdf", content)
	if err != nil || !reflect.DeepEqual(r.Fields, wantFields(rec)) || !strings.Contains(r.Text, rec.InvoiceNumber) {
		t.Fatalf("result after the restart: %+v %v", r, err)
	}
	if err := c.Finish(ctx, ref); err != nil || sim.Packages() != 0 {
		t.Fatalf("finish: %v, %d packages left", err, sim.Packages())
	}
	_ = sim.CloseState()
	if sim = start(); sim.Packages() != 0 {
		t.Fatalf("%d packages after another restart: the deletion was not kept", sim.Packages())
	}
	_ = sim.CloseState()
}
