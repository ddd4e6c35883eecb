package gini_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/internal/testservers"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/gini"
	"github.com/ingest-dev/ingest/vendors/gini/ginisim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

const (
	clientID     = "ingest-client"
	clientSecret = "s3cret"
	username     = "alice@example.com"
	password     = "wonderland"
	userID       = "tenant-42"
)

func simConfig() ginisim.Config {
	return ginisim.Config{ClientID: clientID, ClientSecret: clientSecret, Users: map[string]string{username: password}}
}

// recorder keeps what the client sent, to check headers the simulator does not insist on.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []seen
}

type seen struct {
	Method, Path  string
	Query         url.Values
	Header        http.Header
	ContentLength int64
	Form          url.Values // of token requests
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	s := seen{Method: req.Method, Path: req.URL.Path, Query: req.URL.Query(), Header: req.Header.Clone(), ContentLength: req.ContentLength}
	if req.URL.Path == "/oauth/token" && req.GetBody != nil {
		// A copy of the body: the request's own must reach the server untouched.
		if b, err := req.GetBody(); err == nil {
			raw, _ := io.ReadAll(b)
			s.Form, _ = url.ParseQuery(string(raw))
		}
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, s)
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recorder) all() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.reqs...)
}

type fixture struct {
	sim *ginisim.Server
	srv *httptest.Server
	rec *recorder
}

func newFixture(t *testing.T, cfg ginisim.Config) *fixture {
	t.Helper()
	sim := ginisim.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &fixture{sim: sim, srv: srv, rec: &recorder{next: srv.Client().Transport}}
}

// client returns a client in mode "backend" (Basic + X-User-Identifier) or "user" (password grant).
func (f *fixture) client(t *testing.T, mode string, edit func(*gini.Config)) *gini.Client {
	t.Helper()
	cfg := gini.Config{BaseURL: f.srv.URL, ClientID: clientID, ClientSecret: clientSecret,
		HTTPClient: &http.Client{Transport: f.rec}, Timeout: 10 * time.Second}
	switch mode {
	case "backend":
		cfg.UserIdentifier = userID
	case "user":
		cfg.Username, cfg.Password, cfg.TokenURL = username, password, f.srv.URL+"/oauth/token"
	default:
		t.Fatalf("unknown mode %q", mode)
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := gini.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// document is a vendors.Document over content that counts how often it was opened.
func document(name, contentType string, content []byte) (vendors.Document, *atomic.Int32) {
	opens := &atomic.Int32{}
	sum, size := simkit.Digest(content)
	return vendors.Document{
		ID: "doc-" + name, Filename: name, ContentType: contentType, Size: size, SHA256: sum,
		Open: func(context.Context) (io.ReadCloser, error) {
			opens.Add(1)
			return io.NopCloser(bytes.NewReader(content)), nil
		},
	}, opens
}

func pdf(s string) []byte { return []byte("%PDF-1.7\n" + s + "\n%%EOF\n") }

func asVendorError(t *testing.T, err error) *vendors.Error {
	t.Helper()
	var ve *vendors.Error
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *vendors.Error", err, err)
	}
	return ve
}

func fieldsByName(fs []events.Field) map[string]events.Field {
	m := map[string]events.Field{}
	for _, f := range fs {
		m[f.Name] = f
	}
	return m
}

func TestNew(t *testing.T) {
	base := gini.Config{ClientID: "id", ClientSecret: "secret"}
	tests := []struct {
		name string
		edit func(*gini.Config)
		want string // part of the error; "" for none
	}{
		{"backend mode", func(c *gini.Config) { c.UserIdentifier = "u" }, ""},
		{"user mode", func(c *gini.Config) { c.Username, c.Password = "u", "p" }, ""},
		{"no mode", func(c *gini.Config) {}, "no auth mode"},
		{"both modes", func(c *gini.Config) { c.UserIdentifier, c.Username, c.Password = "u", "u", "p" }, "not both"},
		{"username without password", func(c *gini.Config) { c.Username = "u" }, "both a username and a password"},
		{"no client secret", func(c *gini.Config) { c.UserIdentifier, c.ClientSecret = "u", "" }, "client secret"},
		{"relative base URL", func(c *gini.Config) { c.UserIdentifier, c.BaseURL = "u", "/documents" }, "absolute"},
		{"bad token URL", func(c *gini.Config) { c.Username, c.Password, c.TokenURL = "u", "p", "ftp://x" }, "token URL"},
		{"negative rate", func(c *gini.Config) { c.UserIdentifier, c.RateLimit = "u", -1 }, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			c, err := gini.New(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.Name() != "gini" {
					t.Errorf("Name() = %q", c.Name())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestHappyPath(t *testing.T) {
	for _, mode := range []string{"backend", "user"} {
		t.Run(mode, func(t *testing.T) {
			ctx := t.Context()
			cfg := simConfig()
			cfg.PendingPolls = 3
			f := newFixture(t, cfg)
			c := f.client(t, mode, func(c *gini.Config) { c.FetchLayout, c.DocType = true, "Invoice" })

			content := pdf("invoice for " + mode)
			doc, opens := document("Rechnung 2026.pdf", "application/pdf", content)
			ref, err := c.Submit(ctx, doc)
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(ref) {
				t.Errorf("ref = %q, want the id from Location", ref)
			}
			if n := opens.Load(); n != 1 {
				t.Errorf("document opened %d times, want 1", n)
			}
			for i := range 3 {
				p, err := c.Check(ctx, ref)
				if err != nil {
					t.Fatalf("Check %d: %v", i, err)
				}
				if p.Done {
					t.Fatalf("Check %d: done, want pending", i)
				}
			}
			p, err := c.Check(ctx, ref)
			if err != nil || !p.Done || p.Failed {
				t.Fatalf("Check after processing = %+v, %v; want done", p, err)
			}

			res, err := c.Result(ctx, ref)
			if err != nil {
				t.Fatalf("Result: %v", err)
			}
			rec := simkit.RecogniseContent(doc.Filename, content)
			fs := fieldsByName(res.Fields)
			amount := fs["amountToPay"]
			if amount.Value != rec.Total || amount.Currency != "EUR" {
				t.Errorf("amountToPay = %q %q, want %q EUR", amount.Value, amount.Currency, rec.Total)
			}
			if amount.Page == nil || *amount.Page != 1 || amount.Box == nil || *amount.Box != (events.Box{X: 516, Y: 588, Width: 42, Height: 9}) {
				t.Errorf("amountToPay position = page %v box %+v", amount.Page, amount.Box)
			}
			if got := fs["invoiceId"]; got.Value != rec.InvoiceNumber || got.Currency != "" {
				t.Errorf("invoiceId = %+v, want %q without currency", got, rec.InvoiceNumber)
			}
			if got := fs["paymentReference"]; got.Box != nil || got.Page != nil || got.Value != rec.InvoiceNumber {
				t.Errorf("paymentReference = %+v, want no box", got)
			}
			if len(res.Fields) != 6 {
				t.Errorf("%d fields, want 6: %+v", len(res.Fields), res.Fields)
			}
			want, _ := json.Marshal(ginisim.Extractions(rec))
			if !bytes.Equal(res.Raw, want) {
				t.Errorf("Raw is not the extractions answer verbatim:\n got %s\nwant %s", res.Raw, want)
			}
			if res.Text != rec.Text {
				t.Errorf("Text = %q, want the layout's %q", res.Text, rec.Text)
			}
			if n := f.sim.Ledger.Count(doc.SHA256); n != 1 {
				t.Errorf("Gini got the document %d times, want once", n)
			}
			if up := f.sim.Ledger.All(); len(up) != 1 || up[0].Filename != doc.Filename || up[0].Ref != ref {
				t.Errorf("ledger = %+v", up)
			}
			checkHeaders(t, f.rec.all(), mode, doc)
		})
	}
}

// checkHeaders looks at what went over the wire: the pinned media type everywhere, the mode's
// credentials, and an upload that is the raw document with its name and type.
func checkHeaders(t *testing.T, reqs []seen, mode string, doc vendors.Document) {
	t.Helper()
	uploads := 0
	for _, r := range reqs {
		if r.Path == "/oauth/token" {
			if id, secret, ok := (&http.Request{Header: r.Header}).BasicAuth(); !ok || id != clientID || secret != clientSecret {
				t.Errorf("token request without Basic client auth")
			}
			continue
		}
		if got := r.Header.Get("Accept"); got != gini.DefaultAccept {
			t.Errorf("%s %s: Accept = %q", r.Method, r.Path, got)
		}
		auth := r.Header.Get("Authorization")
		switch mode {
		case "backend":
			if !strings.HasPrefix(auth, "Basic ") || r.Header.Get("X-User-Identifier") != userID {
				t.Errorf("%s %s: Authorization %q, X-User-Identifier %q", r.Method, r.Path, auth, r.Header.Get("X-User-Identifier"))
			}
		case "user":
			if !strings.HasPrefix(auth, "Bearer ") || r.Header.Get("X-User-Identifier") != "" {
				t.Errorf("%s %s: Authorization %q", r.Method, r.Path, auth)
			}
		}
		if r.Method == http.MethodPost && r.Path == "/documents" {
			uploads++
			if r.Query.Get("filename") != doc.Filename || r.Query.Get("doctype") != "Invoice" {
				t.Errorf("upload query = %v", r.Query)
			}
			if r.Header.Get("Content-Type") != doc.ContentType || r.ContentLength != doc.Size {
				t.Errorf("upload Content-Type %q length %d, want %q %d", r.Header.Get("Content-Type"), r.ContentLength, doc.ContentType, doc.Size)
			}
		}
	}
	if uploads != 1 {
		t.Errorf("%d uploads, want 1", uploads)
	}
}

// In backend mode a document belongs to the user identifier that uploaded it.
func TestBackendUsersAreSeparate(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, simConfig())
	ref, err := f.client(t, "backend", nil).Submit(ctx, must(document("a.pdf", "application/pdf", pdf("a"))))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	other := f.client(t, "backend", func(c *gini.Config) { c.UserIdentifier = "someone-else" })
	_, err = other.Check(ctx, ref)
	if ve := asVendorError(t, err); ve.Status != http.StatusNotFound || !ve.Permanent {
		t.Fatalf("another user's Check = %v, want permanent 404", err)
	}
}

func must(doc vendors.Document, _ *atomic.Int32) vendors.Document { return doc }

func TestExpiredTokenMidFlow(t *testing.T) {
	for _, refresh := range []bool{false, true} {
		t.Run(map[bool]string{false: "login again", true: "refresh token"}[refresh], func(t *testing.T) {
			ctx := t.Context()
			cfg := simConfig()
			cfg.RefreshTokens = refresh
			f := newFixture(t, cfg)
			c := f.client(t, "user", nil)
			ref, err := c.Submit(ctx, must(document("a.pdf", "application/pdf", pdf("a"))))
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			issued, checks, tokenCalls := f.sim.Tokens.Issued(), f.sim.Requests("document"), f.sim.Requests("token")

			f.sim.Tokens.ExpireAll()
			p, err := c.Check(ctx, ref)
			if err != nil || !p.Done {
				t.Fatalf("Check after expiry = %+v, %v", p, err)
			}
			if n := f.sim.Tokens.Issued() - issued; n != 1 {
				t.Errorf("%d new tokens, want 1", n)
			}
			if n := f.sim.Requests("token") - tokenCalls; n != 1 {
				t.Errorf("%d token requests, want 1", n)
			}
			if n := f.sim.Requests("document") - checks; n != 2 {
				t.Errorf("%d status requests, want 2 (refused, then retried)", n)
			}
			var grants []string
			for _, r := range f.rec.all() {
				if r.Path == "/oauth/token" {
					grants = append(grants, r.Form.Get("grant_type"))
				}
			}
			want := []string{"password", "password"}
			if refresh {
				want = []string{"password", "refresh_token"}
			}
			if strings.Join(grants, ",") != strings.Join(want, ",") {
				t.Errorf("grants = %v, want %v", grants, want)
			}
		})
	}
}

// The retry after a 401 sends the whole document again: it is re-opened, and Gini keeps one copy.
func TestExpiredTokenDuringUpload(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, simConfig())
	c := f.client(t, "user", nil)
	if _, err := c.Submit(ctx, must(document("first.pdf", "application/pdf", pdf("first")))); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	f.sim.Tokens.ExpireAll()
	doc, opens := document("second.pdf", "application/pdf", pdf("second"))
	ref, err := c.Submit(ctx, doc)
	if err != nil {
		t.Fatalf("Submit after expiry: %v", err)
	}
	if n := opens.Load(); n != 2 {
		t.Errorf("document opened %d times, want 2", n)
	}
	if n := f.sim.Ledger.Count(doc.SHA256); n != 1 {
		t.Errorf("Gini holds %d copies, want 1", n)
	}
	if p, err := c.Check(ctx, ref); err != nil || !p.Done {
		t.Errorf("Check = %+v, %v", p, err)
	}
}

func TestRejected(t *testing.T) {
	tests := []struct {
		name        string
		mode        string
		edit        func(*gini.Config)
		filename    string
		contentType string
		content     []byte
		status      int
		message     string
	}{
		{"zip", "backend", nil, "a.pdf", "application/pdf", []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a zip"),
			http.StatusUnsupportedMediaType, "Unsupported media type"},
		{"too large", "backend", nil, "big.pdf", "application/pdf", pdf(strings.Repeat("x", 2048)),
			http.StatusBadRequest, "less than 1 KiB"},
		{"text too large", "user", nil, "big.txt", "text/plain", []byte(strings.Repeat("Rechnung ", 100)),
			http.StatusBadRequest, "smaller than 512 bytes"},
		{"empty", "backend", nil, "empty.pdf", "application/pdf", nil, http.StatusBadRequest, "empty"},
		{"wrong client secret", "backend", func(c *gini.Config) { c.ClientSecret = "wrong" }, "a.pdf", "application/pdf", pdf("a"),
			http.StatusUnauthorized, "credentials refused: Bad client credentials"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := simConfig()
			cfg.MaxBytes, cfg.MaxTextBytes = 1024, 512
			f := newFixture(t, cfg)
			_, err := f.client(t, tc.mode, tc.edit).Submit(t.Context(), must(document(tc.filename, tc.contentType, tc.content)))
			ve := asVendorError(t, err)
			if ve.Status != tc.status || !ve.Permanent || ve.Op != "submit" {
				t.Errorf("error = %+v, want permanent HTTP %d", ve, tc.status)
			}
			if !strings.Contains(ve.Message, tc.message) || !strings.Contains(ve.Message, "Gini request id") {
				t.Errorf("message = %q, want Gini's %q and its request id", ve.Message, tc.message)
			}
			if n := len(f.sim.Ledger.All()); n != 0 {
				t.Errorf("Gini kept %d documents", n)
			}
		})
	}
}

func TestTransientErrors(t *testing.T) {
	tests := []struct {
		op     string // simulator operation the fault is put in front of
		status int
		call   func(ctx context.Context, c *gini.Client, ref string) error
	}{
		{"upload", http.StatusServiceUnavailable, func(ctx context.Context, c *gini.Client, _ string) error {
			_, err := c.Submit(ctx, must(document("again.pdf", "application/pdf", pdf("again"))))
			return err
		}},
		{"document", http.StatusTooManyRequests, func(ctx context.Context, c *gini.Client, ref string) error {
			_, err := c.Check(ctx, ref)
			return err
		}},
		{"extractions", http.StatusBadGateway, func(ctx context.Context, c *gini.Client, ref string) error {
			_, err := c.Result(ctx, ref)
			return err
		}},
		{"layout", http.StatusServiceUnavailable, func(ctx context.Context, c *gini.Client, ref string) error {
			_, err := c.Result(ctx, ref)
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.op, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, simConfig())
			c := f.client(t, "backend", func(c *gini.Config) { c.FetchLayout = true })
			ref, err := c.Submit(ctx, must(document("a.pdf", "application/pdf", pdf("a"))))
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			f.sim.Faults.Add(tc.op, simkit.Fault{Status: tc.status, RetryAfter: "7",
				Body: `{"message":"Service temporarily unavailable","requestId":"req-` + tc.op + `"}`})

			err = tc.call(ctx, c, ref)
			ve := asVendorError(t, err)
			if ve.Permanent || ve.Status != tc.status || vendors.RetryAfterOf(err) != 7*time.Second {
				t.Errorf("error = %+v, want transient HTTP %d with Retry-After 7s", ve, tc.status)
			}
			if !strings.Contains(ve.Message, "Service temporarily unavailable (Gini request id req-"+tc.op+")") {
				t.Errorf("message = %q", ve.Message)
			}
			if err := tc.call(ctx, c, ref); err != nil {
				t.Errorf("after the fault: %v", err)
			}
		})
	}
}

func TestErrorProgress(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, simConfig())
	c := f.client(t, "backend", nil)
	ref, err := c.Submit(ctx, must(document("a.pdf", "application/pdf", pdf("a"))))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	f.sim.SetProgress(ref, "ERROR")
	p, err := c.Check(ctx, ref)
	if err != nil || !p.Done || !p.Failed || !strings.Contains(p.Error, "ERROR") {
		t.Fatalf("Check = %+v, %v; want done and failed", p, err)
	}
}

func TestUnknownProgressIsPending(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, simConfig())
	var logs bytes.Buffer
	c := f.client(t, "backend", func(c *gini.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	ref, err := c.Submit(ctx, must(document("a.pdf", "application/pdf", pdf("a"))))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	f.sim.SetProgress(ref, "ARCHIVED")
	p, err := c.Check(ctx, ref)
	if err != nil || p.Done || p.Failed {
		t.Fatalf("Check = %+v, %v; want pending", p, err)
	}
	if !strings.Contains(logs.String(), "ARCHIVED") {
		t.Errorf("the unknown progress was not noted: %q", logs.String())
	}
}

func TestUnknownDocument(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, simConfig())
	c := f.client(t, "user", nil)
	const ref = "626626a0-749f-11e2-bfd6-000000000000"
	_, errCheck := c.Check(ctx, ref)
	_, errResult := c.Result(ctx, ref)
	_, errEmpty := c.Check(ctx, "")
	for name, err := range map[string]error{"Check": errCheck, "Result": errResult} {
		ve := asVendorError(t, err)
		if ve.Status != http.StatusNotFound || !ve.Permanent || !strings.Contains(ve.Message, "Document not found") {
			t.Errorf("%s = %+v, want permanent 404 with Gini's message", name, ve)
		}
	}
	if ve := asVendorError(t, errEmpty); !ve.Permanent {
		t.Errorf("Check(\"\") = %+v, want permanent", ve)
	}
}

func TestMalformedAnswers(t *testing.T) {
	submit := func(ctx context.Context, c *gini.Client, _ string) error {
		_, err := c.Submit(ctx, must(document("b.pdf", "application/pdf", pdf("b"))))
		return err
	}
	check := func(ctx context.Context, c *gini.Client, ref string) error {
		_, err := c.Check(ctx, ref)
		return err
	}
	result := func(ctx context.Context, c *gini.Client, ref string) error {
		_, err := c.Result(ctx, ref)
		return err
	}
	find := func(ctx context.Context, c *gini.Client, _ string) error {
		_, err := c.Find(ctx, must(document("a.pdf", "", nil)), time.Time{})
		return err
	}
	tests := []struct {
		name    string
		op      string
		fault   simkit.Fault
		call    func(context.Context, *gini.Client, string) error
		message string
	}{
		{"progress missing", "document", simkit.Fault{Status: 200, Body: `{"id":"x","name":"a.pdf"}`}, check, "no progress"},
		{"progress not a string", "document", simkit.Fault{Status: 200, Body: `{"progress":3}`}, check, "unexpected answer"},
		{"document not JSON", "document", simkit.Fault{Status: 200, Body: `<html>`, ContentType: "text/html"}, check, "<html>"},
		{"extractions not an object", "extractions", simkit.Fault{Status: 200, Body: `{"extractions":[1,2]}`}, result, "no extractions object"},
		{"extractions missing", "extractions", simkit.Fault{Status: 200, Body: `{"candidates":{}}`}, result, "no extractions object"},
		{"extraction not an object", "extractions", simkit.Fault{Status: 200, Body: `{"extractions":{"amountToPay":"24.99:EUR"}}`}, result, `"amountToPay" is not an object`},
		{"extractions an array", "extractions", simkit.Fault{Status: 200, Body: `[]`}, result, "not a JSON object"},
		{"Location missing", "upload", simkit.Fault{Status: 201}, submit, "without a Location"},
		{"list without documents", "list", simkit.Fault{Status: 200, Body: `{"totalCount":1}`}, find, "no documents"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, simConfig())
			c := f.client(t, "backend", nil)
			ref, err := c.Submit(ctx, must(document("a.pdf", "application/pdf", pdf("a"))))
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			f.sim.Faults.Add(tc.op, tc.fault)
			ve := asVendorError(t, tc.call(ctx, c, ref))
			if !ve.Permanent || !strings.Contains(ve.Message, tc.message) {
				t.Errorf("error = %+v, want permanent containing %q", ve, tc.message)
			}
		})
	}
}

// A Location that names no document: the simulator cannot be made to send one, so a handler in
// front of it does.
func TestGarbledLocation(t *testing.T) {
	for _, loc := range []string{"https://api.gini.net/documents/", "https://api.gini.net/documents", "%zz"} {
		t.Run(loc, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Location", loc)
				w.WriteHeader(http.StatusCreated)
			}))
			defer srv.Close()
			c, err := gini.New(gini.Config{BaseURL: srv.URL, ClientID: "id", ClientSecret: "s", UserIdentifier: "u"})
			if err != nil {
				t.Fatal(err)
			}
			ref, err := c.Submit(t.Context(), must(document("a.pdf", "application/pdf", pdf("a"))))
			if ve := asVendorError(t, err); !ve.Permanent || !strings.Contains(ve.Message, "Location") || ref != "" {
				t.Errorf("Submit = %q, %+v; want a permanent error about the Location", ref, ve)
			}
		})
	}
}

// A layout Gini cannot give does not cost the extractions.
func TestLayoutUnreadable(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, simConfig())
	c := f.client(t, "backend", func(c *gini.Config) { c.FetchLayout = true })
	ref, err := c.Submit(ctx, must(document("a.pdf", "application/pdf", pdf("a"))))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	f.sim.Faults.Add("layout", simkit.Fault{Status: 200, Body: `[1,2]`})
	res, err := c.Result(ctx, ref)
	if err != nil || len(res.Fields) == 0 || res.Text != "" {
		t.Fatalf("Result = %d fields, text %q, %v; want fields without text", len(res.Fields), res.Text, err)
	}
}

// Find recognises a document only by its tag, never by its name (every scanner names its files
// scan.pdf), and answers Absent only when the listing covered everything since the attempt: for
// each order the simulator can list in, since Gini documents none.
func TestFind(t *testing.T) {
	for _, order := range []string{"newest", "oldest", "scrambled"} {
		t.Run(order, func(t *testing.T) {
			ctx := t.Context()
			cfg := simConfig()
			cfg.ListOrder = order
			f := newFixture(t, cfg)
			c := f.client(t, "backend", nil)
			since := time.Now().Add(-time.Hour)
			upload := func(docID string, attempt int, created time.Time) string {
				t.Helper()
				doc := must(document("scan.pdf", "application/pdf", pdf(docID+created.String())))
				doc.ID, doc.Tag = docID, vendors.NewTag(docID, attempt)
				ref, err := c.Submit(ctx, doc)
				if err != nil {
					t.Fatalf("Submit %s: %v", docID, err)
				}
				f.sim.SetCreated(ref, created)
				return ref
			}
			upload("old-1", 1, since.Add(-3*time.Hour))
			upload("old-2", 1, since.Add(-2*time.Hour))
			mine := upload("mine", 1, since.Add(3*time.Second))
			upload("other-1", 1, since.Add(time.Second))
			upload("other-2", 1, since.Add(4*time.Second))
			first := upload("twice", 1, since.Add(5*time.Second))
			second := upload("twice", 2, since.Add(6*time.Second))

			tests := []struct {
				name        string
				docID       string
				limit       int
				pages       int
				newestFirst bool
				want        vendors.Outcome
				ref         string
				dupes       []string
			}{
				{"found on a later page", "mine", 1, 0, false, vendors.Found, mine, nil},
				{"same file name, not ours", "absent", 1, 0, false, vendors.Absent, "", nil},
				{"two attempts arrived: the first is kept", "twice", 0, 0, false, vendors.Found, first, []string{second}},
				{"bound reached", "absent", 1, 6, false, vendors.Unknown, "", nil},
				// Past the bound it depends on the order: only a list that really comes newest
				// first may stop at older documents. (A scrambled list can look ordered for a
				// while; the client catches only the disorder it sees, so it is not asserted.)
				{"bound reached, newest first", "absent", 1, 6, true, map[string]vendors.Outcome{
					"newest": vendors.Absent, "oldest": vendors.Unknown}[order], "", nil},
			}
			for _, tc := range tests {
				if tc.newestFirst && order == "scrambled" {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					cl := f.client(t, "backend", func(c *gini.Config) {
						c.ListLimit, c.ListPages, c.ListNewestFirst = tc.limit, tc.pages, tc.newestFirst
					})
					doc := must(document("scan.pdf", "application/pdf", nil))
					doc.ID = tc.docID
					got, err := cl.Find(ctx, doc, since)
					if err != nil {
						t.Fatalf("Find: %v", err)
					}
					if got.Outcome != tc.want || got.Ref != tc.ref || !slices.Equal(got.Duplicates, tc.dupes) {
						t.Errorf("Find(%s) = %+v; want %v ref %q duplicates %v", tc.docID, got, tc.want, tc.ref, tc.dupes)
					}
					if got.Outcome == vendors.Unknown && !strings.Contains(got.Reason, "document list") {
						t.Errorf("Unknown without a reason an operator can read: %q", got.Reason)
					}
				})
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	page1 := 1
	tests := []struct {
		name string
		body string
		want []events.Field
		err  string
	}{
		{"Gini's example", `{"extractions":{"amountToPay":{"box":{"height":9.0,"left":516.0,"page":1,"top":588.0,"width":42.0},
			"entity":"amount","value":"24.99:EUR","candidates":"amounts"}},"candidates":{"amounts":[]}}`,
			[]events.Field{{Name: "amountToPay", Value: "24.99", Currency: "EUR", Page: &page1, Box: &events.Box{X: 516, Y: 588, Width: 42, Height: 9}}}, ""},
		{"amount entity with a comma", `{"extractions":{"a":{"entity":"amount","value":"12,50:CHF"}}}`,
			[]events.Field{{Name: "a", Value: "12,50", Currency: "CHF"}}, ""},
		{"amount-looking text entity", `{"extractions":{"t":{"entity":"text","value":"-3.5:USD"}}}`,
			[]events.Field{{Name: "t", Value: "-3.5", Currency: "USD"}}, ""},
		{"reference with a colon", `{"extractions":{"r":{"entity":"reference","value":"ReNr:ABC"}}}`,
			[]events.Field{{Name: "r", Value: "ReNr:ABC"}}, ""},
		{"amount without currency", `{"extractions":{"a":{"entity":"amount","value":"24.99"}}}`,
			[]events.Field{{Name: "a", Value: "24.99"}}, ""},
		{"number value, box without page, sorted", `{"extractions":{"z":{"value":42},"b":{"value":"x","box":{"left":1,"top":2,"width":3,"height":4}}}}`,
			[]events.Field{{Name: "b", Value: "x", Box: &events.Box{X: 1, Y: 2, Width: 3, Height: 4}}, {Name: "z", Value: "42"}}, ""},
		{"empty", `{"extractions":{},"candidates":{}}`, []events.Field{}, ""},
		{"null extractions", `{"extractions":null}`, nil, "no extractions object"},
		{"box not an object", `{"extractions":{"a":{"value":"x","box":"top left"}}}`, nil, `extraction "a"`},
		{"not JSON", `extractions`, nil, "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := gini.Normalize([]byte(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize: %v", err)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tc.want)
			if !bytes.Equal(gj, wj) {
				t.Errorf("fields\n got %s\nwant %s", gj, wj)
			}
		})
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add([]byte(`{"extractions":{"amountToPay":{"box":{"height":9.0,"left":516.0,"page":1,"top":588.0,"width":42.0},"entity":"amount","value":"24.99:EUR","candidates":"amounts"}},"candidates":{}}`))
	f.Add([]byte(`{"extractions":{"iban":{"entity":"iban","value":"DE68130300000017850360"},"paymentReference":{"entity":"reference","value":"ReNr 123, KdNr 32"}}}`))
	f.Add([]byte(`{"extractions":{"a":{"entity":"amount","value":":EUR"},"b":{"value":"1:EUR:USD"},"c":{"value":null,"box":{"page":1e300}}}}`))
	f.Add([]byte(`{"extractions":[]}`))
	f.Add([]byte(`{"extractions":{"x":[]}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		fields, err := gini.Normalize(body)
		if err != nil {
			return
		}
		// Whatever Normalize accepts is an object of labels: one field for each, in label order.
		var top struct {
			Extractions map[string]struct {
				Value json.RawMessage `json:"value"`
			} `json:"extractions"`
		}
		if err := json.Unmarshal(body, &top); err != nil {
			t.Fatalf("Normalize accepted what is not an extractions object: %v", err)
		}
		if len(fields) != len(top.Extractions) {
			t.Fatalf("%d fields for %d labels", len(fields), len(top.Extractions))
		}
		for i, fd := range fields {
			if i > 0 && fields[i-1].Name >= fd.Name {
				t.Fatalf("fields not sorted by unique label: %q then %q", fields[i-1].Name, fd.Name)
			}
			ex, ok := top.Extractions[fd.Name]
			if !ok {
				t.Fatalf("field %q is no label", fd.Name)
			}
			if fd.Currency == "" {
				continue
			}
			// A split amount loses nothing: value and currency give back Gini's text.
			var orig string
			if json.Unmarshal(ex.Value, &orig) != nil || orig != fd.Value+":"+fd.Currency || fd.Value == "" {
				t.Fatalf("amount %q %q does not come from %s", fd.Value, fd.Currency, ex.Value)
			}
			if !regexp.MustCompile(`^[A-Z]{3}$`).MatchString(fd.Currency) {
				t.Fatalf("currency %q", fd.Currency)
			}
		}
	})
}

func TestLayoutText(t *testing.T) {
	tests := []struct {
		name, body, want, err string
	}{
		{"Gini's shape", `{"pages":[{"number":1,"textZones":[{"paragraphs":[{"lines":[
			{"wds":[{"text":"Ihre"},{"text":"Vorgangsnummer"},{"text":":"}]},{"wds":[{"text":"4711"}]}]}]}],"regions":[]}]}`,
			"Ihre Vorgangsnummer :\n4711", ""},
		{"two pages, two paragraphs", `{"pages":[{"textZones":[{"paragraphs":[{"lines":[{"wds":[{"text":"a"}]}]},{"lines":[{"wds":[{"text":"b"}]}]}]}]},
			{"textZones":[{"paragraphs":[{"lines":[{"wds":[{"text":"c"}]}]}]}]}]}`, "a\nb\fc", ""},
		{"words instead of wds", `{"pages":[{"textZones":[{"paragraphs":[{"lines":[{"words":[{"text":"x"},{"text":"y"}]}]}]}]}]}`, "x y", ""},
		{"odd levels skipped", `{"pages":[{"textZones":"none"},7,{"textZones":[{"paragraphs":[{"lines":[{"wds":[{"text":5},{"text":"ok"}]}]}]}]}]}`, "\fok", ""},
		{"no pages", `{}`, "", ""},
		{"not an object", `[1]`, "", "not a JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := gini.LayoutText([]byte(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("LayoutText = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// A sandbox keeps its documents across a restart: a document in flight when the simulator stops
// is known to the one started on the same state, with its progress, and completes there with its
// own result — and can still be found by its tag, as a crashed submission would be looked for.
func TestSimulatorStateSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gini", "documents.jsonl")
	start := func() (*ginisim.Server, *gini.Client) {
		cfg := simConfig()
		cfg.PendingPolls = 2
		sim := ginisim.New(cfg)
		if err := sim.KeepState(path); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(sim)
		t.Cleanup(srv.Close)
		c, err := gini.New(gini.Config{BaseURL: srv.URL, ClientID: clientID, ClientSecret: clientSecret,
			UserIdentifier: userID, FetchLayout: true, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return sim, c
	}
	sim, c := start()
	const marker = "only-in-the-document-bytes"
	content := pdf("invoice " + marker)
	doc, _ := document("Rechnung.pdf", "application/pdf", content)
	doc.Tag = vendors.NewTag(doc.ID, 1)
	since := time.Now()
	ref, err := c.Submit(t.Context(), doc)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.Check(t.Context(), ref); err != nil || p.Done {
		t.Fatalf("first check: %+v %v", p, err)
	}
	if err := sim.CloseState(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Contains(b, []byte(ref)) || bytes.Contains(b, []byte(marker)) {
		t.Fatalf("the journal should hold the document's record but not its bytes (%v):\n%s", err, b)
	}

	sim, c = start() // a new process: new simulator, new client, same state
	defer sim.CloseState()
	if n := sim.Documents(); n != 1 {
		t.Fatalf("%d documents after the restart, want 1", n)
	}
	// PendingPolls is 2 and one was spent before the restart: if the restart had forgotten it,
	// this would take two more looks, not one.
	if p, err := c.Check(t.Context(), ref); err != nil || p.Done {
		t.Fatalf("check after restart: %+v %v; want still pending (one poll left)", p, err)
	}
	if p, err := c.Check(t.Context(), ref); err != nil || !p.Done || p.Failed {
		t.Fatalf("check: %+v %v; want done", p, err)
	}
	res, err := c.Result(t.Context(), ref)
	if err != nil {
		t.Fatalf("result after restart: %v", err)
	}
	rec := simkit.RecogniseContent(vendors.UploadName(doc), content)
	want, _ := json.Marshal(ginisim.Extractions(rec))
	if !bytes.Equal(res.Raw, want) || res.Text != rec.Text {
		t.Errorf("result after restart: raw %s text %q\nwant raw %s text %q", res.Raw, res.Text, want, rec.Text)
	}
	if l, err := c.Find(t.Context(), doc, since); err != nil || l.Outcome != vendors.Found || l.Ref != ref {
		t.Errorf("Find after restart = %+v, %v; want found %s", l, err, ref)
	}
}

// The restart forgets access and refresh tokens (Gini's expire within the hour anyway): a client
// that lived through it gets a 401, has its refresh token refused, logs in again with its password
// and goes on with the same document, which belongs to the same user.
func TestSimulatorRestartForgetsTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "documents.jsonl")
	var current atomic.Pointer[ginisim.Server]
	start := func() *ginisim.Server {
		cfg := simConfig()
		cfg.RefreshTokens = true
		sim := ginisim.New(cfg)
		if err := sim.KeepState(path); err != nil {
			t.Fatal(err)
		}
		current.Store(sim)
		return sim
	}
	// One address across the restart, as ingest's sandbox has: the client keeps talking to it.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	f := &fixture{sim: start(), srv: front, rec: &recorder{next: front.Client().Transport}}
	c := f.client(t, "user", nil)
	ref, err := c.Submit(t.Context(), must(document("a.pdf", "application/pdf", pdf("a"))))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if err := f.sim.CloseState(); err != nil {
		t.Fatal(err)
	}

	sim := start()
	defer sim.CloseState()
	if p, err := c.Check(t.Context(), ref); err != nil || !p.Done {
		t.Fatalf("Check after the restart = %+v, %v", p, err)
	}
	if n := sim.Requests("document"); n != 2 {
		t.Errorf("%d status requests, want 2 (refused with the old token, then retried)", n)
	}
	var grants []string
	for _, r := range f.rec.all() {
		if r.Path == "/oauth/token" {
			grants = append(grants, r.Form.Get("grant_type"))
		}
	}
	if want := "password,refresh_token,password"; strings.Join(grants, ",") != want {
		t.Errorf("grants = %v, want %s", grants, want)
	}
}

// Without an HTTPClient of the caller's, the client keeps a connection per request it may have
// in flight: submitting and checking documents at full concurrency, again and again, opens no
// more connections than that (net/http's default keeps two, and every call beyond two at a
// time would open one, TLS handshake included).
func TestConnectionsAreReused(t *testing.T) {
	srv, opened := testservers.CountingHTTP(t, ginisim.New(simConfig()))
	const concurrency = 4
	c, err := gini.New(gini.Config{BaseURL: srv.URL, ClientID: clientID, ClientSecret: clientSecret,
		UserIdentifier: userID, Concurrency: concurrency, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				doc, _ := document(fmt.Sprintf("doc-%d-%d.pdf", w, i), "application/pdf", pdf(fmt.Sprintf("%d %d", w, i)))
				ref, err := c.Submit(t.Context(), doc)
				if err == nil {
					_, err = c.Check(t.Context(), ref)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// A connection goes back to the pool a moment after its answer was read, so a request that
	// starts just then may open one more; without the pool it is one per request beyond two.
	if n := opened.Load(); n > 2*concurrency {
		t.Fatalf("%d connections opened for 80 requests, at most %d at a time; want at most %d", n, concurrency, 2*concurrency)
	}
}
