package laigosim_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/vendors/laigo/laigosim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

const (
	id     = "client"
	secret = "secret"
)

var (
	pngBytes  = []byte("\x89PNG\r\n\x1a\nrest of a png")
	jpgBytes  = []byte{0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3}
	pdfBytes  = []byte("%PDF-1.4\n<< /Type /Page >>\n<< /Type/Page >>\n<< /Type /Pages >>\n%%EOF")
	tiffBytes = []byte("II*\x00\x08\x00\x00\x00")
	webpBytes = []byte("RIFF\x10\x00\x00\x00WEBPVP8 ")
	heicBytes = []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00")
)

type env struct {
	sim *laigosim.Server
	srv *httptest.Server
}

func start(t *testing.T, cfg laigosim.Config) *env {
	t.Helper()
	cfg.ClientID, cfg.ClientSecret = id, secret
	sim := laigosim.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &env{sim: sim, srv: srv}
}

func (e *env) do(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return res.StatusCode, res.Header, b
}

func (e *env) token(t *testing.T) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	st, _, b := e.do(t, formRequest(t, e.srv.URL, form))
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if st != 200 || json.Unmarshal(b, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %s", st, b)
	}
	return tok.AccessToken
}

func formRequest(t *testing.T, base string, form url.Values) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+laigosim.TokenPath, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

// upload builds the smartICR multipart request; a nil file leaves the file part out.
func (e *env) upload(t *testing.T, tok string, file []byte, fields map[string]string) *http.Request {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if file != nil {
		w, _ := mw.CreateFormFile("file", "doc.bin")
		_, _ = w.Write(file)
	}
	_ = mw.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+laigosim.UploadPath, &buf)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req
}

func (e *env) get(t *testing.T, tok, jobID, kind string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+laigosim.ResultPath+"/"+jobID+"/"+kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return req
}

func (e *env) submit(t *testing.T, tok string, file []byte, fields map[string]string) string {
	t.Helper()
	st, _, b := e.do(t, e.upload(t, tok, file, fields))
	var jobID string
	if st != http.StatusCreated || json.Unmarshal(b, &jobID) != nil {
		t.Fatalf("upload = %d %s, want 201 and a bare JSON string", st, b)
	}
	return jobID
}

// errorOf reads Laigo's {"code","message"} error JSON.
func errorOf(b []byte) (code, msg string) {
	var e struct{ Code, Message string }
	_ = json.Unmarshal(b, &e)
	return e.Code, e.Message
}

func TestToken(t *testing.T) {
	good := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	tests := []struct {
		name      string
		form      url.Values
		basic     bool
		ctype     string
		status    int
		wantError string
	}{
		{"form credentials", good, false, "", 200, ""},
		{"basic credentials", url.Values{"grant_type": {"client_credentials"}}, true, "", 200, ""},
		{"wrong secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {"x"}}, false, "", 401, "invalid_client"},
		{"no grant type", url.Values{"client_id": {id}, "client_secret": {secret}}, false, "", 400, "invalid_request"},
		{"password grant", url.Values{"grant_type": {"password"}, "client_id": {id}, "client_secret": {secret}}, false, "", 400, "unsupported_grant_type"},
		{"multipart body", good, false, "multipart/form-data; boundary=x", 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, laigosim.Config{TokenTTL: 90 * time.Second})
			req := formRequest(t, e.srv.URL, tt.form)
			if tt.basic {
				req.SetBasicAuth(id, secret)
			}
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			st, _, b := e.do(t, req)
			if st != tt.status {
				t.Fatalf("status = %d %s, want %d", st, b, tt.status)
			}
			var ans map[string]any
			if err := json.Unmarshal(b, &ans); err != nil {
				t.Fatalf("answer is not JSON: %s", b)
			}
			if tt.wantError != "" {
				if ans["error"] != tt.wantError || ans["error_description"] == "" {
					t.Errorf("answer = %v, want error %q with a description", ans, tt.wantError)
				}
				return
			}
			if ans["token_type"] != "Bearer" || ans["expires_in"] != 90.0 || ans["refresh_expires_in"] != 0.0 || ans["access_token"] == "" || ans["scope"] == "" {
				t.Errorf("token answer = %v", ans)
			}
			if !e.sim.Tokens.Valid(ans["access_token"].(string)) {
				t.Error("the issued token is not valid")
			}
		})
	}
}

func TestUploadRules(t *testing.T) {
	tests := []struct {
		name    string
		token   string // "good", "expired" or ""
		file    []byte
		fields  map[string]string
		status  int
		code    string
		message string
	}{
		{"png", "good", pngBytes, nil, 201, "", ""},
		{"jpg", "good", jpgBytes, nil, 201, "", ""},
		{"pdf", "good", pdfBytes, map[string]string{"outputFormats": "PDF,TEXT", "languageHint": "de"}, 201, "", ""},
		{"tiff", "good", tiffBytes, nil, 201, "", ""},
		{"webp", "good", webpBytes, nil, 201, "", ""},
		{"heic", "good", heicBytes, nil, 201, "", ""},
		{"no token", "", pngBytes, nil, 401, "Unauthorized", ""},
		{"expired token", "expired", pngBytes, nil, 401, "Unauthorized", ""},
		{"no file", "good", nil, map[string]string{"outputFormats": "PDF"}, 400, "BadRequest", laigosim.MsgNoFile},
		{"zip", "good", []byte("PK\x03\x04zip"), nil, 400, "BadRequest", laigosim.MsgFormat},
		{"empty file", "good", []byte{}, nil, 400, "BadRequest", laigosim.MsgFormat},
		{"too large", "good", append(bytes.Clone(pngBytes), make([]byte, 200)...), nil, 400, "BadRequest", laigosim.MsgTooLarge},
		{"unknown language", "good", pngBytes, map[string]string{"languageHint": "tlh"}, 400, "BadRequest", laigosim.MsgLanguage},
		{"unknown output format", "good", pngBytes, map[string]string{"outputFormats": "PDF,DOCX"}, 400, "BadRequest", laigosim.MsgOutput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, laigosim.Config{MaxBytes: 100})
			tok := ""
			switch tt.token {
			case "good":
				tok = e.token(t)
			case "expired":
				tok = e.token(t)
				e.sim.Tokens.ExpireAll()
			}
			st, _, b := e.do(t, e.upload(t, tok, tt.file, tt.fields))
			if st != tt.status {
				t.Fatalf("status = %d %s, want %d", st, b, tt.status)
			}
			if st == 201 {
				var jobID string
				if err := json.Unmarshal(b, &jobID); err != nil || len(jobID) != 36 {
					t.Fatalf("upload answer %s is not a bare JSON string UUID", b)
				}
				sum, size := simkit.Digest(tt.file)
				ups := e.sim.Ledger.All()
				if len(ups) != 1 || ups[0].Ref != jobID || ups[0].SHA256 != sum || ups[0].Size != size {
					t.Errorf("ledger = %+v, want the upload as job %s", ups, jobID)
				}
				return
			}
			code, msg := errorOf(b)
			if code != tt.code || (tt.message != "" && msg != tt.message) {
				t.Errorf("error = %q %q, want %q %q", code, msg, tt.code, tt.message)
			}
			if len(e.sim.Ledger.All()) != 0 {
				t.Error("a refused upload was recorded")
			}
		})
	}
}

func TestOutOfLaigos(t *testing.T) {
	e := start(t, laigosim.Config{Laigos: 2})
	tok := e.token(t)
	e.submit(t, tok, pngBytes, nil)
	e.submit(t, tok, pngBytes, nil)
	st, _, b := e.do(t, e.upload(t, tok, pngBytes, nil))
	if _, msg := errorOf(b); st != 400 || msg != laigosim.MsgNoLaigos {
		t.Errorf("third upload = %d %s, want 400 %q", st, b, laigosim.MsgNoLaigos)
	}
}

func TestResultLifecycle(t *testing.T) {
	e := start(t, laigosim.Config{PendingPolls: 2, PendingRetryAfter: 3 * time.Second, ExpiredStatus: 410})
	tok := e.token(t)
	jobID := e.submit(t, tok, pdfBytes, map[string]string{"outputFormats": "TEXT"})

	for i := range 2 {
		kind := []string{"json", "zip"}[i] // both endpoints count as polls
		st, h, b := e.do(t, e.get(t, tok, jobID, kind))
		var msg string
		if st != 202 || json.Unmarshal(b, &msg) != nil || msg != laigosim.MsgPending || h.Get("Retry-After") != "3" {
			t.Fatalf("poll %d = %d %s (Retry-After %q), want 202 %q", i, st, b, h.Get("Retry-After"), laigosim.MsgPending)
		}
	}

	st, _, b := e.do(t, e.get(t, tok, jobID, "json"))
	var res struct {
		Files []struct {
			InputFileName string `json:"inputFileName"`
			Size          int64  `json:"size"`
			PageCount     int    `json:"pageCount"`
			Content       string `json:"content"`
		} `json:"files"`
	}
	if st != 200 || json.Unmarshal(b, &res) != nil || len(res.Files) != 1 {
		t.Fatalf("result = %d %s", st, b)
	}
	f := res.Files[0]
	want := simkit.RecogniseContent("doc.bin", pdfBytes).Text
	if f.InputFileName != "doc.bin" || f.Size != int64(len(pdfBytes)) || f.PageCount != 2 || f.Content != want {
		t.Errorf("file = %+v, want doc.bin, %d bytes, 2 pages, recognised text", f, len(pdfBytes))
	}

	st, h, b := e.do(t, e.get(t, tok, jobID, "zip"))
	if st != 200 || h.Get("Content-Type") != "application/zip" {
		t.Fatalf("zip = %d %s", st, h.Get("Content-Type"))
	}
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("not a zip: %v", err)
	}
	// Only TEXT was asked for: no PDF in the archive.
	if len(zr.File) != 1 || zr.File[0].Name != "doc.txt" {
		t.Errorf("zip holds %d files (first %q), want only doc.txt", len(zr.File), zr.File[0].Name)
	}

	if !e.sim.Expire(jobID) {
		t.Fatal("Expire did not find the job")
	}
	st, _, b = e.do(t, e.get(t, tok, jobID, "json"))
	if _, msg := errorOf(b); st != 410 || msg != laigosim.MsgExpired {
		t.Errorf("expired result = %d %s, want 410 %q", st, b, laigosim.MsgExpired)
	}
	if j, _ := e.sim.Job(jobID); j.Polls != 2 || j.Reads != 2 || !j.Expired {
		t.Errorf("job = %+v, want 2 polls, 2 reads, expired", j)
	}
}

func TestUnknownJobAndRoute(t *testing.T) {
	e := start(t, laigosim.Config{})
	tok := e.token(t)
	for _, kind := range []string{"json", "zip"} {
		st, _, b := e.do(t, e.get(t, tok, "00000000-0000-4000-8000-000000000000", kind))
		if code, _ := errorOf(b); st != 404 || code != "NotFound" {
			t.Errorf("%s of unknown job = %d %s, want 404 NotFound", kind, st, b)
		}
	}
	if st, _, b := e.do(t, e.get(t, "bogus", "x", "json")); st != 401 {
		t.Errorf("bad token = %d %s, want 401", st, b)
	}
	if e.sim.Refusals() != 1 {
		t.Errorf("Refusals = %d, want 1", e.sim.Refusals())
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/api/api/FileUpload", nil)
	if st, _, b := e.do(t, req); st != 404 {
		t.Errorf("unknown route = %d %s, want 404", st, b)
	}
}

func TestFaultsComeFirst(t *testing.T) {
	e := start(t, laigosim.Config{})
	e.sim.Faults.Add("upload", simkit.Fault{Status: 503, Body: `{"code":"ServerError","message":"down"}`, RetryAfter: "7"})
	// No token at all: the fault still answers, as an overloaded front end would.
	st, h, _ := e.do(t, e.upload(t, "", pngBytes, nil))
	if st != 503 || h.Get("Retry-After") != "7" {
		t.Errorf("faulted upload = %d Retry-After %q, want 503 7", st, h.Get("Retry-After"))
	}
	if st, _, _ := e.do(t, e.upload(t, "", pngBytes, nil)); st != 401 {
		t.Errorf("upload after the fault = %d, want the normal 401", st)
	}
}

func TestConcurrentUse(t *testing.T) {
	e := start(t, laigosim.Config{PendingPolls: 1})
	tok := e.token(t)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			file := append(bytes.Clone(pngBytes), byte(i))
			req := e.upload(t, tok, file, nil)
			res, err := e.srv.Client().Do(req)
			if err != nil {
				t.Errorf("upload: %v", err)
				return
			}
			var jobID string
			err = json.NewDecoder(res.Body).Decode(&jobID)
			res.Body.Close()
			if err != nil {
				t.Errorf("upload answer: %v", err)
				return
			}
			for range 2 {
				res, err := e.srv.Client().Do(e.get(t, tok, jobID, "json"))
				if err != nil {
					t.Errorf("result: %v", err)
					return
				}
				res.Body.Close()
			}
		})
	}
	wg.Wait()
	if n := len(e.sim.Ledger.All()); n != 10 {
		t.Errorf("ledger has %d uploads, want 10", n)
	}
}
