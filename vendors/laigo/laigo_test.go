package laigo_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/laigo"
	"github.com/ingest-dev/ingest/vendors/laigo/laigosim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

const (
	clientID     = "ingest-test"
	clientSecret = "s3cret"
)

var (
	pdfBytes = []byte("%PDF-1.7\n1 0 obj << /Type /Pages >> endobj\n2 0 obj << /Type /Page >> endobj\n3 0 obj << /Type /Page >> endobj\n%%EOF\n")
	pngBytes = append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 64)...)
	zipBytes = []byte("PK\x03\x04 not a document Laigo reads")
)

// setup starts the simulator over real HTTP and a client pointed at it; edit adjusts the client's
// config. Rate limiting is off so tests do not wait a second per request.
func setup(t *testing.T, sc laigosim.Config, edit func(*laigo.Config)) (*laigosim.Server, *laigo.Client) {
	t.Helper()
	if sc.ClientID == "" {
		sc.ClientID, sc.ClientSecret = clientID, clientSecret
	}
	sim := laigosim.New(sc)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	cfg := laigo.Config{
		BaseURL: srv.URL, TokenURL: srv.URL + laigosim.TokenPath,
		ClientID: clientID, ClientSecret: clientSecret,
		RateLimit: -1, HTTPClient: srv.Client(),
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := laigo.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return sim, c
}

// document wraps bytes as a vendors.Document and counts how often it is opened.
func document(name, ctype string, b []byte) (vendors.Document, *atomic.Int32) {
	var opens atomic.Int32
	sum, size := simkit.Digest(b)
	return vendors.Document{
		ID: "doc-" + name, Filename: name, ContentType: ctype, Size: size, SHA256: sum,
		Open: func(context.Context) (io.ReadCloser, error) {
			opens.Add(1)
			return io.NopCloser(bytes.NewReader(b)), nil
		},
	}, &opens
}

func vendorError(t *testing.T, err error) *vendors.Error {
	t.Helper()
	var e *vendors.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *vendors.Error", err, err)
	}
	return e
}

func TestNew(t *testing.T) {
	ok := laigo.Config{ClientID: "id", ClientSecret: "secret"}
	tests := []struct {
		name    string
		edit    func(*laigo.Config)
		wantErr string
	}{
		{"defaults", func(*laigo.Config) {}, ""},
		{"everything set", func(c *laigo.Config) {
			c.LanguageHint, c.Email, c.OutputFormats, c.FetchZIP = "DE", "ops@example.com", []string{"pdf"}, true
		}, ""},
		{"no client id", func(c *laigo.Config) { c.ClientID = " " }, "client id"},
		{"no client secret", func(c *laigo.Config) { c.ClientSecret = "" }, "client secret"},
		{"base URL without scheme", func(c *laigo.Config) { c.BaseURL = "use.laigo.io" }, "base URL"},
		{"base URL unparsable", func(c *laigo.Config) { c.BaseURL = "http://[::1" }, "base URL"},
		{"token URL not http", func(c *laigo.Config) { c.TokenURL = "ftp://account.laigo.io/t" }, "token URL"},
		{"language hint too long", func(c *laigo.Config) { c.LanguageHint = "deu" }, "ISO 639-1"},
		{"two formats in one", func(c *laigo.Config) { c.OutputFormats = []string{"PDF,TEXT"} }, "output format"},
		{"bad email", func(c *laigo.Config) { c.Email = "not an address" }, "email"},
		{"relative API path", func(c *laigo.Config) { c.UploadPath = "api/x" }, "must start with /"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			c, err := laigo.New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.Name() != "laigo" {
					t.Errorf("Name() = %q", c.Name())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestHappyPath(t *testing.T) {
	ctx := t.Context()
	sim, c := setup(t, laigosim.Config{PendingPolls: 3, PendingRetryAfter: 2 * time.Second}, func(c *laigo.Config) {
		c.FetchZIP, c.LanguageHint, c.Email = true, "de", "ops@example.com"
	})
	doc, _ := document("invoice.pdf", "application/pdf", pdfBytes)

	ref, err := c.Submit(ctx, doc)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if n := sim.Ledger.Count(doc.SHA256); n != 1 {
		t.Fatalf("the simulator recorded %d uploads of the document, want 1", n)
	}
	job, ok := sim.Job(ref)
	if !ok {
		t.Fatalf("the simulator does not know job %q", ref)
	}
	if got := strings.Join(job.OutputFormats, ","); got != "PDF,TEXT" || job.LanguageHint != "de" || job.Email != "ops@example.com" {
		t.Errorf("upload fields: formats %q, language %q, email %q", got, job.LanguageHint, job.Email)
	}

	for i := range 3 {
		p, err := c.Check(ctx, ref)
		if err != nil {
			t.Fatalf("Check %d: %v", i, err)
		}
		if p.Done || p.Failed {
			t.Fatalf("Check %d = %+v, want pending", i, p)
		}
		if p.RetryAfter != 2*time.Second {
			t.Errorf("Check %d RetryAfter = %v, want 2s from the header", i, p.RetryAfter)
		}
	}
	p, err := c.Check(ctx, ref)
	if err != nil || !p.Done || p.Failed {
		t.Fatalf("Check after the pending polls = %+v, %v; want done", p, err)
	}

	r, err := c.Result(ctx, ref)
	if err != nil {
		t.Fatalf("Result: %v", err)
	}
	want := simkit.RecogniseContent("invoice.pdf", pdfBytes).Text
	if r.Text != want {
		t.Errorf("Text = %q, want %q", r.Text, want)
	}
	if len(r.Fields) != 1 || r.Fields[0].Name != "page_count" || r.Fields[0].Value != "2" {
		t.Errorf("Fields = %+v, want page_count 2", r.Fields)
	}
	var raw struct {
		Files []struct {
			InputFileName string `json:"inputFileName"`
			Size          int64  `json:"size"`
		} `json:"files"`
	}
	if err := json.Unmarshal(r.Raw, &raw); err != nil || len(raw.Files) != 1 || raw.Files[0].InputFileName != "invoice.pdf" || raw.Files[0].Size != doc.Size {
		t.Errorf("Raw = %s (%v), want the vendor's JSON for invoice.pdf", r.Raw, err)
	}

	if len(r.Artifacts) != 1 || r.Artifacts[0].Name != "result.zip" || r.Artifacts[0].ContentType != "application/zip" {
		t.Fatalf("Artifacts = %+v, want result.zip", r.Artifacts)
	}
	rc, err := r.Artifacts[0].Open(ctx)
	if err != nil {
		t.Fatalf("open artifact: %v", err)
	}
	zb, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("read artifact: %v", err)
	}
	zr, err := zip.NewReader(bytes.NewReader(zb), int64(len(zb)))
	if err != nil {
		t.Fatalf("artifact is not a ZIP: %v", err)
	}
	files := map[string]string{}
	for _, f := range zr.File {
		fr, err := f.Open()
		if err != nil {
			t.Fatalf("open %s in zip: %v", f.Name, err)
		}
		b, _ := io.ReadAll(fr)
		fr.Close()
		files[f.Name] = string(b)
	}
	if files["invoice.txt"] != want || !strings.HasPrefix(files["invoice.pdf"], "%PDF-") {
		t.Errorf("zip holds %v, want invoice.pdf and invoice.txt with the text", keys(files))
	}
}

func TestResultWithoutZIP(t *testing.T) {
	_, c := setup(t, laigosim.Config{}, nil)
	doc, _ := document("scan.png", "image/png", pngBytes)
	ref, err := c.Submit(t.Context(), doc)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	r, err := c.Result(t.Context(), ref)
	if err != nil {
		t.Fatalf("Result: %v", err)
	}
	if len(r.Artifacts) != 0 {
		t.Errorf("Artifacts = %+v without FetchZIP", r.Artifacts)
	}
}

func TestTokenExpiresMidFlow(t *testing.T) {
	ctx := t.Context()
	sim, c := setup(t, laigosim.Config{}, nil)
	doc, opens := document("scan.png", "image/png", pngBytes)
	ref, err := c.Submit(ctx, doc)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}

	sim.Tokens.ExpireAll()
	if p, err := c.Check(ctx, ref); err != nil || !p.Done {
		t.Fatalf("Check after the token expired = %+v, %v; want done", p, err)
	}
	if got := sim.Tokens.Issued(); got != 2 {
		t.Errorf("tokens issued = %d, want 2 (one renewal after the 401)", got)
	}

	// An upload refused for its token is sent again, with the document opened anew.
	sim.Tokens.ExpireAll()
	if _, err := c.Submit(ctx, doc); err != nil {
		t.Fatalf("Submit after the token expired: %v", err)
	}
	if got := opens.Load(); got != 3 {
		t.Errorf("document opened %d times, want 3 (first submit, refused retry, resend)", got)
	}
	if got := sim.Ledger.Count(doc.SHA256); got != 2 {
		t.Errorf("simulator recorded %d uploads, want 2", got)
	}
	if got := sim.Refusals(); got != 2 {
		t.Errorf("simulator refused %d requests for their token, want 2", got)
	}
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	tests := []struct {
		name   string
		ttl    time.Duration
		issued int
	}{
		// Laigo's 300 s token serves all three calls.
		{"long-lived token reused", 300 * time.Second, 1},
		// A token within 30 s of expiry is renewed before use, so it is never refused.
		{"short-lived token renewed each call", 20 * time.Second, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t, laigosim.Config{TokenTTL: tt.ttl}, nil)
			doc, _ := document("scan.png", "image/png", pngBytes)
			ref, err := c.Submit(t.Context(), doc)
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			for range 2 {
				if _, err := c.Check(t.Context(), ref); err != nil {
					t.Fatalf("Check: %v", err)
				}
			}
			if got := sim.Tokens.Issued(); got != tt.issued {
				t.Errorf("tokens issued = %d, want %d", got, tt.issued)
			}
			if got := sim.Refusals(); got != 0 {
				t.Errorf("simulator refused %d requests, want none", got)
			}
		})
	}
}

func TestSubmitRefused(t *testing.T) {
	eicar := []byte(`%PDF-1.4 X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)
	tests := []struct {
		name     string
		sim      laigosim.Config
		edit     func(*laigo.Config)
		content  []byte
		prior    int // successful uploads before the refused one
		status   int
		wantText string
	}{
		{"zip is not a type Laigo reads", laigosim.Config{}, nil, zipBytes, 0, 400, "correct input file format"},
		{"too large for Laigo", laigosim.Config{MaxBytes: 32}, nil, pngBytes, 0, 400, "size limit"},
		{"too large, refused before upload", laigosim.Config{}, func(c *laigo.Config) { c.MaxBytes = 16 }, pngBytes, 0, 0, "more than the 16"},
		{"language hint unsupported", laigosim.Config{}, func(c *laigo.Config) { c.LanguageHint = "xx" }, pngBytes, 0, 400, "Language Hint"},
		{"output format unknown", laigosim.Config{}, func(c *laigo.Config) { c.OutputFormats = []string{"DOCX"} }, pngBytes, 0, 400, "No valid input formats"},
		{"malware suspected", laigosim.Config{}, nil, eicar, 0, 400, "malware"},
		{"out of Laigos", laigosim.Config{Laigos: 1}, nil, pngBytes, 1, 400, "ran out of Laigos"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t, tt.sim, tt.edit)
			for i := range tt.prior {
				d, _ := document(fmt.Sprintf("ok%d.png", i), "image/png", pngBytes)
				if _, err := c.Submit(t.Context(), d); err != nil {
					t.Fatalf("prior Submit: %v", err)
				}
			}
			doc, _ := document("file.bin", "application/octet-stream", tt.content)
			ref, err := c.Submit(t.Context(), doc)
			if err == nil {
				t.Fatalf("Submit accepted (ref %q), want a refusal", ref)
			}
			e := vendorError(t, err)
			if !e.Permanent || !vendors.IsPermanent(err) {
				t.Errorf("error %v is transient, want permanent", err)
			}
			if e.Status != tt.status || !strings.Contains(e.Message, tt.wantText) {
				t.Errorf("error = HTTP %d %q, want HTTP %d mentioning %q", e.Status, e.Message, tt.status, tt.wantText)
			}
			if n := len(sim.Ledger.All()); n != tt.prior {
				t.Errorf("simulator recorded %d uploads, want %d", n, tt.prior)
			}
		})
	}
}

func TestTransientErrors(t *testing.T) {
	tests := []struct {
		name  string
		fault simkit.Fault
		after time.Duration
	}{
		{"503 with Retry-After", simkit.Fault{Status: 503, Body: `{"code":"ServerError","message":"maintenance"}`, RetryAfter: "7"}, 7 * time.Second},
		{"429 rate limited", simkit.Fault{Status: 429, Body: `"Too many requests"`, RetryAfter: "3"}, 3 * time.Second},
		{"500 without hint", simkit.Fault{Status: 500, Body: `{"code":"ServerError","message":"boom"}`}, 0},
		{"ServerError code on a 400", simkit.Fault{Status: 400, Body: `{"code":"ServerError","message":"OCR backend down"}`}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t, laigosim.Config{}, nil)
			sim.Faults.Add("upload", tt.fault)
			doc, _ := document("scan.png", "image/png", pngBytes)
			_, err := c.Submit(t.Context(), doc)
			if err == nil {
				t.Fatal("Submit succeeded through an injected fault")
			}
			if vendors.IsPermanent(err) {
				t.Errorf("error %v is permanent, want transient", err)
			}
			if got := vendors.RetryAfterOf(err); got != tt.after {
				t.Errorf("RetryAfterOf = %v, want %v", got, tt.after)
			}
			if e := vendorError(t, err); e.Status != tt.fault.Status {
				t.Errorf("Status = %d, want %d", e.Status, tt.fault.Status)
			}
			if _, err := c.Submit(t.Context(), doc); err != nil {
				t.Fatalf("next Submit: %v", err)
			}
			if n := sim.Ledger.Count(doc.SHA256); n != 1 {
				t.Errorf("simulator recorded %d uploads, want 1", n)
			}
		})
	}
}

func TestMalformedAnswers(t *testing.T) {
	tests := []struct {
		name string
		op   string // the simulator's operation that answers wrongly
		body string
		ct   string
	}{
		{"upload answers an object", "upload", `{"weird":1}`, ""},
		{"upload answers prose", "upload", `not json`, "text/plain"},
		{"upload answers an empty string", "upload", `""`, ""},
		{"upload answers nothing", "upload", ``, ""},
		{"upload answers a path", "upload", `"../../admin"`, ""},
		{"result files is a string", "result", `{"files":"x"}`, ""},
		{"result is not JSON", "result", `not json`, "text/plain"},
		{"result has no files", "result", `{}`, ""},
		{"result page count negative", "result", `{"files":[{"pageCount":-1}]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t, laigosim.Config{}, nil)
			doc, _ := document("scan.png", "image/png", pngBytes)
			fault := simkit.Fault{Status: http.StatusOK, Body: tt.body, ContentType: tt.ct}
			var err error
			if tt.op == "upload" {
				fault.Status = http.StatusCreated
				sim.Faults.Add("upload", fault)
				_, err = c.Submit(t.Context(), doc)
			} else {
				ref, serr := c.Submit(t.Context(), doc)
				if serr != nil {
					t.Fatalf("Submit: %v", serr)
				}
				sim.Faults.Add("result", fault)
				_, err = c.Result(t.Context(), ref)
			}
			if err == nil {
				t.Fatal("a malformed answer was accepted")
			}
			e := vendorError(t, err)
			if !e.Permanent || !strings.Contains(e.Message, "unexpected answer") {
				t.Errorf("error = %+v, want a permanent 'unexpected answer'", e)
			}
		})
	}
}

func TestUnknownJob(t *testing.T) {
	tests := []struct {
		name, ref string
		status    int
	}{
		{"job Laigo never had", "00000000-0000-4000-8000-000000000000", 404},
		{"ref that is not a job id", "../FileUpload", 0},
		{"empty ref", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t, laigosim.Config{}, nil)
			_, checkErr := c.Check(t.Context(), tt.ref)
			_, resultErr := c.Result(t.Context(), tt.ref)
			for op, err := range map[string]error{"Check": checkErr, "Result": resultErr} {
				if err == nil {
					t.Fatalf("%s(%q) succeeded", op, tt.ref)
				}
				if e := vendorError(t, err); !e.Permanent || e.Status != tt.status {
					t.Errorf("%s error = %+v, want permanent with status %d", op, e, tt.status)
				}
			}
			if tt.status == 0 && sim.Tokens.Issued() != 0 {
				t.Error("an invalid ref reached the vendor")
			}
		})
	}
}

func TestExpiredResult(t *testing.T) {
	// Laigo does not say which status carries "Result not available any more."; any must do.
	for _, status := range []int{404, 410, 400, 200, 500} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			sim, c := setup(t, laigosim.Config{ExpiredStatus: status}, nil)
			doc, _ := document("scan.png", "image/png", pngBytes)
			ref, err := c.Submit(t.Context(), doc)
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if !sim.Expire(ref) {
				t.Fatal("Expire did not find the job")
			}
			p, err := c.Check(t.Context(), ref)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if !p.Done || !p.Failed || !strings.Contains(p.Error, laigosim.MsgExpired) {
				t.Errorf("Check = %+v, want failed with Laigo's words", p)
			}
			_, err = c.Result(t.Context(), ref)
			if err == nil || !vendors.IsPermanent(err) || !strings.Contains(err.Error(), laigosim.MsgExpired) {
				t.Errorf("Result error = %v, want permanent with Laigo's words", err)
			}
		})
	}
}

func TestResultExpiresAfterReads(t *testing.T) {
	sim, c := setup(t, laigosim.Config{ExpireAfterReads: 1}, nil)
	doc, _ := document("scan.png", "image/png", pngBytes)
	ref, err := c.Submit(t.Context(), doc)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if _, err := c.Result(t.Context(), ref); err != nil {
		t.Fatalf("first Result: %v", err)
	}
	if p, err := c.Check(t.Context(), ref); err != nil || !p.Failed {
		t.Errorf("Check after the only allowed read = %+v, %v; want failed", p, err)
	}
	if j, _ := sim.Job(ref); !j.Expired || j.Reads != 1 {
		t.Errorf("job = %+v, want expired after one read", j)
	}
}

func TestCredentials(t *testing.T) {
	tests := []struct {
		name      string
		secret    string
		fault     *simkit.Fault
		permanent bool
		wantText  string
	}{
		{"wrong secret", "wrong", nil, true, "credentials"},
		{"token endpoint down", clientSecret, &simkit.Fault{Status: 503, Body: `{"error":"temporarily_unavailable"}`, RetryAfter: "5"}, false, "token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := setup(t, laigosim.Config{}, func(c *laigo.Config) { c.ClientSecret = tt.secret })
			if tt.fault != nil {
				sim.Faults.Add("token", *tt.fault)
			}
			doc, _ := document("scan.png", "image/png", pngBytes)
			_, err := c.Submit(t.Context(), doc)
			if err == nil {
				t.Fatal("Submit succeeded")
			}
			e := vendorError(t, err)
			if e.Permanent != tt.permanent || e.Op != "token" || !strings.Contains(e.Message, tt.wantText) {
				t.Errorf("error = %+v, want op token, permanent %v, mentioning %q", e, tt.permanent, tt.wantText)
			}
			if len(sim.Ledger.All()) != 0 {
				t.Error("a document was uploaded without a token")
			}
		})
	}
}

func TestTokenAuthStyle(t *testing.T) {
	tests := []struct {
		name      string
		basic     bool
		wantBasic bool
	}{
		{"form body by default, as docs.laigo.ai's curl", false, false},
		{"HTTP Basic, as the smartICR page says", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim := laigosim.New(laigosim.Config{ClientID: clientID, ClientSecret: clientSecret})
			var mu sync.Mutex
			var basic, inForm []bool
			// A real server in front of the simulator, noting how the token request carried the
			// credentials.
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == laigosim.TokenPath {
					_, _, ok := r.BasicAuth()
					_ = r.ParseForm()
					mu.Lock()
					basic, inForm = append(basic, ok), append(inForm, r.PostForm.Get("client_secret") != "")
					mu.Unlock()
				}
				sim.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			c, err := laigo.New(laigo.Config{
				BaseURL: srv.URL, TokenURL: srv.URL + laigosim.TokenPath, ClientID: clientID, ClientSecret: clientSecret,
				TokenBasicAuth: tt.basic, RateLimit: -1, HTTPClient: srv.Client(),
			})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			doc, _ := document("scan.png", "image/png", pngBytes)
			if _, err := c.Submit(t.Context(), doc); err != nil {
				t.Fatalf("Submit: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(basic) != 1 || basic[0] != tt.wantBasic || inForm[0] == tt.wantBasic {
				t.Errorf("token requests: basic %v, secret in form %v; want basic %v", basic, inForm, tt.wantBasic)
			}
		})
	}
}

func TestArtifactNotReady(t *testing.T) {
	sim, c := setup(t, laigosim.Config{}, func(c *laigo.Config) { c.FetchZIP = true })
	doc, _ := document("scan.png", "image/png", pngBytes)
	ref, err := c.Submit(t.Context(), doc)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	r, err := c.Result(t.Context(), ref)
	if err != nil {
		t.Fatalf("Result: %v", err)
	}
	sim.Faults.Add("zip", simkit.Fault{Status: 202, Body: `"` + laigosim.MsgPending + `"`, RetryAfter: "4"})
	if _, err := r.Artifacts[0].Open(t.Context()); err == nil || vendors.IsPermanent(err) || vendors.RetryAfterOf(err) != 4*time.Second {
		t.Errorf("Open while the zip is pending: %v, want transient with Retry-After 4s", err)
	}
	sim.Expire(ref)
	if _, err := r.Artifacts[0].Open(t.Context()); !vendors.IsPermanent(err) {
		t.Errorf("Open after expiry: %v, want permanent", err)
	}
}

func TestConcurrentSubmits(t *testing.T) {
	sim, c := setup(t, laigosim.Config{}, func(c *laigo.Config) { c.Concurrency = 2 })
	const n = 8
	refs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			doc, _ := document(fmt.Sprintf("scan%d.png", i), "image/png", append(bytes.Clone(pngBytes), byte(i)))
			ref, err := c.Submit(t.Context(), doc)
			if err != nil {
				t.Errorf("Submit %d: %v", i, err)
			}
			refs[i] = ref
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range refs {
		seen[r] = true
	}
	if len(seen) != n || len(sim.Ledger.All()) != n {
		t.Errorf("%d distinct refs, %d uploads; want %d of each", len(seen), len(sim.Ledger.All()), n)
	}
	if got := sim.Tokens.Issued(); got != 1 {
		t.Errorf("tokens issued = %d, want 1 shared token", got)
	}
}

func FuzzParseJobID(f *testing.F) {
	for _, s := range []string{`"754a9eff-2633-47d6-ab10-f6b18da1da4f"`, `754a9eff`, ` "abc" `, `{"weird":1}`, `not json`, `""`, `"\u002e\u002e"`, `"a/b"`, `null`, `"` + strings.Repeat("a", 200) + `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, err := laigo.ParseJobID(body)
		if err != nil {
			return
		}
		if id == "" || strings.ContainsAny(id, "/\\?#% \"") || id == "." || id == ".." {
			t.Fatalf("ParseJobID(%q) = %q, not a safe path segment", body, id)
		}
		// A job id Laigo answered with quotes reads back as itself.
		quoted, _ := json.Marshal(id)
		if again, err := laigo.ParseJobID(quoted); err != nil || again != id {
			t.Fatalf("ParseJobID(%s) = %q, %v; want %q", quoted, again, err, id)
		}
	})
}

func FuzzParseResult(f *testing.F) {
	for _, s := range []string{
		`{"files":[{"inputFileName":"test.pdf","size":59472,"pageCount":1,"content":"Hello World!"}]}`,
		`{"files":[]}`, `{"files":"x"}`, `{}`, `null`, `[]`, `{"files":[{"pageCount":-1}]}`,
		`{"files":[{"content":"a"},{"content":"b","pageCount":2}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := laigo.ParseResult(body)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Raw, body) {
			t.Fatalf("Raw differs from the body")
		}
		for _, fl := range r.Fields {
			if fl.Name != "page_count" || fl.Value == "" || fl.Value == "0" {
				t.Fatalf("unexpected field %+v", fl)
			}
		}
	})
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Laigo lists "Result not yet available, please try again later." among its messages without a
// status: whatever status and wording the simulator plays, the client keeps waiting (never fails
// the document, never calls it done), then gets the result.
func TestPendingWhateverTheStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		words  string
	}{
		{202, ""}, {200, ""}, {400, ""}, {404, ""}, {409, ""}, {503, ""},
		{200, "Outcome data currently unavailable, kindly retry at a later time."},
		{400, "Outcome data currently unavailable, kindly retry at a later time."},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.words), func(t *testing.T) {
			_, c := setup(t, laigosim.Config{PendingPolls: 2, PendingStatus: tc.status, PendingMessage: tc.words}, nil)
			doc, _ := document("scan.png", "image/png", pngBytes)
			ref, err := c.Submit(t.Context(), doc)
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			for i := range 2 {
				p, err := c.Check(t.Context(), ref)
				if err != nil || p.Done {
					t.Fatalf("Check %d while pending = %+v, %v; want not done, no error", i, p, err)
				}
			}
			if p, err := c.Check(t.Context(), ref); err != nil || !p.Done || p.Failed {
				t.Fatalf("Check once ready = %+v, %v; want done", p, err)
			}
			if r, err := c.Result(t.Context(), ref); err != nil || len(r.Text) == 0 {
				t.Fatalf("Result = %+v, %v", r, err)
			}
		})
	}
}

// Result asked while Laigo still says "not yet" (under any status) is a retryable error, never a
// permanent failure or a malformed result.
func TestResultNotReadyIsRetryable(t *testing.T) {
	for _, status := range []int{202, 200, 400, 404} {
		_, c := setup(t, laigosim.Config{PendingPolls: 5, PendingStatus: status}, nil)
		doc, _ := document("scan.png", "image/png", pngBytes)
		ref, err := c.Submit(t.Context(), doc)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Result(t.Context(), ref)
		if err == nil || vendors.IsPermanent(err) {
			t.Errorf("status %d: Result while pending = %v; want a retryable error", status, err)
		}
	}
}

// Answers that are neither a result nor one of Laigo's messages: a clear error, retryable where
// another look may differ (a proxy's page, a 200 without files), and never "done".
func TestSurprisingAnswers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fault     simkit.Fault
		permanent bool
		says      string
	}{
		{"200 without files", simkit.Fault{Status: 200, Body: `{"status":"ok"}`}, false, "without a result"},
		{"200 empty object", simkit.Fault{Status: 200, Body: `{}`}, false, "without a result"},
		{"200 HTML page", simkit.Fault{Status: 200, ContentType: "text/html", Body: "<html><body>Maintenance</body></html>"}, false, "HTML page"},
		{"502 HTML page", simkit.Fault{Status: 502, ContentType: "text/html", Body: "<html>Bad Gateway</html>", Times: 10}, false, ""},
		{"400 other message", simkit.Fault{Status: 400, Body: `{"code":"BadRequest","message":"Please send the correct input file format!"}`}, true, "correct input file format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, c := setup(t, laigosim.Config{}, nil)
			doc, _ := document("scan.png", "image/png", pngBytes)
			ref, err := c.Submit(t.Context(), doc)
			if err != nil {
				t.Fatal(err)
			}
			sim.Faults.Add("result", tc.fault)
			p, err := c.Check(t.Context(), ref)
			if err == nil {
				t.Fatalf("Check = %+v; want an error", p)
			}
			if vendors.IsPermanent(err) != tc.permanent || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Check error = %v (permanent %v); want permanent=%v saying %q", err, vendors.IsPermanent(err), tc.permanent, tc.says)
			}
		})
	}
}

// The settings the configuration exposes are honoured: HTTP Basic at the token endpoint, and API
// paths other than the documented ones (the "/api/api/" spelling of Laigo's marketing pages).
func TestConfiguredAuthAndPaths(t *testing.T) {
	const up, res = "/api/api/FileUpload/v1/Upload/smartICR", "/api/api/Result/v1/JobResults"
	sim, c := setup(t, laigosim.Config{UploadPath: up, ResultPath: res}, func(c *laigo.Config) {
		c.TokenBasicAuth, c.UploadPath, c.ResultPath = true, up, res
	})
	doc, _ := document("scan.png", "image/png", pngBytes)
	ref, err := c.Submit(t.Context(), doc)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if p, err := c.Check(t.Context(), ref); err != nil || !p.Done {
		t.Fatalf("Check = %+v, %v", p, err)
	}
	if sim.Requests("upload") != 1 || sim.Tokens.Issued() == 0 {
		t.Fatalf("uploads %d, tokens %d", sim.Requests("upload"), sim.Tokens.Issued())
	}
	// The documented paths are not there on this simulator: a client left on them fails clearly.
	_, other := setup(t, laigosim.Config{UploadPath: up, ResultPath: res}, nil)
	if _, err := other.Submit(t.Context(), doc); err == nil {
		t.Fatal("a client on the default paths reached a moved API")
	}
}

// A sandbox keeps its jobs across a restart: a job in flight when the simulator stops is known to
// the one started on the same state, and completes there with its own result.
func TestSimulatorStateSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "laigo", "jobs.jsonl")
	start := func() (*laigosim.Server, *laigo.Client) {
		sim := laigosim.New(laigosim.Config{ClientID: clientID, ClientSecret: clientSecret, PendingPolls: 2})
		if err := sim.KeepState(path); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(sim)
		t.Cleanup(srv.Close)
		c, err := laigo.New(laigo.Config{BaseURL: srv.URL, TokenURL: srv.URL + laigosim.TokenPath,
			ClientID: clientID, ClientSecret: clientSecret, RateLimit: -1})
		if err != nil {
			t.Fatal(err)
		}
		return sim, c
	}
	sim, c := start()
	doc, _ := document("scan.png", "image/png", pngBytes)
	ref, err := c.Submit(t.Context(), doc)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.Check(t.Context(), ref); err != nil || p.Done {
		t.Fatalf("first check: %+v %v", p, err)
	}
	want, _ := sim.Job(ref)
	if err := sim.CloseState(); err != nil {
		t.Fatal(err)
	}

	sim, c = start() // a new process: new simulator, new client, same state
	defer sim.CloseState()
	if got, ok := sim.Job(ref); !ok || got.Filename != want.Filename || got.Polls != 1 {
		t.Fatalf("after the restart the job is %+v (known %v), want %+v", got, ok, want)
	}
	if p, err := c.Check(t.Context(), ref); err != nil || p.Done {
		t.Fatalf("check after restart: %+v %v; want still pending (one poll left)", p, err)
	}
	if p, err := c.Check(t.Context(), ref); err != nil || !p.Done || p.Failed {
		t.Fatalf("check: %+v %v; want done", p, err)
	}
	if r, err := c.Result(t.Context(), ref); err != nil || r.Text == "" {
		t.Fatalf("result after restart: %+v %v", r, err)
	}
}
