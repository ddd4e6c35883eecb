package allsparksim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/ingest-dev/ingest/vendors/allspark/allsparksim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

const key = "sim-key"

var pdf = []byte("%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n")

type env struct {
	t   *testing.T
	sim *allsparksim.Server
	srv *httptest.Server
}

func newEnv(t *testing.T, cfg allsparksim.Config) *env {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = key
	}
	sim := allsparksim.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &env{t: t, sim: sim, srv: srv}
}

// call sends a request with the API key and returns status and body.
func (e *env) call(method, path string, body io.Reader, contentType string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("API-KEY", key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.StatusCode, b
}

// form is a multipart body with a file (nil: none) and optional document_type.
func form(t *testing.T, name string, content []byte, docType string) (io.Reader, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	if docType != "" {
		if err := mw.WriteField("document_type", docType); err != nil {
			t.Fatal(err)
		}
	}
	if content != nil {
		fw, err := mw.CreateFormFile("file", name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(content)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return &b, mw.FormDataContentType()
}

func (e *env) upload(path, name string, content []byte) (int, []byte) {
	e.t.Helper()
	body, ct := form(e.t, name, content, "")
	return e.call(http.MethodPost, path, body, ct)
}

func caseID(t *testing.T, body []byte) int {
	t.Helper()
	var out struct {
		CaseID int `json:"case_id"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.CaseID == 0 {
		t.Fatalf("no case_id in %s (%v)", body, err)
	}
	return out.CaseID
}

type caseBody struct {
	CaseID int    `json:"case_id"`
	Status string `json:"status"`
	Files  []struct {
		FileName string `json:"file_name"`
		Fields   []struct {
			DisplayName string `json:"display_name"`
			Name        string `json:"name"`
			FieldID     int    `json:"field_id"`
			Value       string `json:"value"`
		} `json:"fields"`
	} `json:"files"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

func (e *env) getCase(id int) caseBody {
	e.t.Helper()
	st, b := e.call(http.MethodGet, fmt.Sprintf("/api/v1/cases/%d", id), nil, "")
	if st != http.StatusOK {
		e.t.Fatalf("GET case %d: %d %s", id, st, b)
	}
	var c caseBody
	if err := json.Unmarshal(b, &c); err != nil {
		e.t.Fatal(err)
	}
	return c
}

var isoZ = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

func TestDirectUploadCompletesAfterPendingPolls(t *testing.T) {
	e := newEnv(t, allsparksim.Config{PendingPolls: 2})
	st, b := e.upload("/api/v1/cases/direct-upload/", "inv.pdf", pdf)
	if st != http.StatusCreated {
		t.Fatalf("upload: %d %s", st, b)
	}
	id := caseID(t, b)
	for i := range 2 {
		if c := e.getCase(id); c.Status != "pending" || len(c.Files) != 1 || c.Files[0].FileName != "inv.pdf" || len(c.Files[0].Fields) != 0 {
			t.Fatalf("poll %d: %+v", i+1, c)
		}
	}
	c := e.getCase(id)
	if c.Status != "completed" {
		t.Fatalf("after 2 pending polls: %q", c.Status)
	}
	rec := simkit.RecogniseContent("inv.pdf", pdf)
	got := map[string]string{}
	for _, f := range c.Files[0].Fields {
		got[f.Name] = f.Value
	}
	want := map[string]string{"invoice_number": rec.InvoiceNumber, "total_amount": rec.Total, "currency": rec.Currency, "invoice_date": rec.Date}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("fields %v, want %v", got, want)
	}
	if !isoZ.MatchString(c.CreatedAt) || !isoZ.MatchString(c.UpdatedAt) {
		t.Errorf("timestamps %q %q are not ISO-8601 with Z", c.CreatedAt, c.UpdatedAt)
	}
	sha, _ := simkit.Digest(pdf)
	if n := e.sim.Ledger.Count(sha); n != 1 {
		t.Errorf("ledger has %d uploads of the file, want 1", n)
	}

	st, b = e.call(http.MethodGet, fmt.Sprintf("/api/v1/cases/%d/ocr-output?file_name=inv.pdf", id), nil, "")
	var ocr struct{ Text string }
	if st != http.StatusOK || json.Unmarshal(b, &ocr) != nil || ocr.Text != rec.Text {
		t.Errorf("ocr: %d %s", st, b)
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, allsparksim.Config{})
	for _, tc := range []struct {
		name   string
		key    string
		status int
	}{
		{"missing", "", http.StatusUnauthorized},
		{"wrong", "nope", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/api/v1/cases/", nil)
			if tc.key != "" {
				req.Header.Set("API-KEY", tc.key)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var body struct{ Detail string }
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tc.status || body.Detail == "" {
				t.Errorf("got %d %q, want %d with a detail", res.StatusCode, body.Detail, tc.status)
			}
		})
	}
}

func TestPathsAreTheDocumentedOnes(t *testing.T) {
	e := newEnv(t, allsparksim.Config{})
	st, b := e.upload("/api/v1/cases/direct-upload/", "a.pdf", pdf)
	id := caseID(t, b)
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/cases/direct-upload"},       // DRF cannot redirect a POST without its slash
		{http.MethodPost, "/api/v1/direct-upload/"},            // the prose header's path, not the samples'
		{http.MethodGet, fmt.Sprintf("/api/v1/cases/%d/", id)}, // detail has no trailing slash in the docs
		{http.MethodPost, fmt.Sprintf("/api/v1/cases/%d/mark-complete", id)},
	} {
		st, b = e.call(tc.method, tc.path, nil, "")
		if st != http.StatusNotFound || !bytes.Contains(b, []byte(`"detail"`)) {
			t.Errorf("%s %s: %d %s, want a DRF 404", tc.method, tc.path, st, b)
		}
	}
}

func TestUploadRefusals(t *testing.T) {
	e := newEnv(t, allsparksim.Config{MaxBytes: 1 << 10, DocumentTypes: []string{"invoice"}})
	for _, tc := range []struct {
		name    string
		content []byte
		docType string
		status  int
		says    string
	}{
		{"no file", nil, "", http.StatusBadRequest, "No file was submitted."},
		{"empty file", []byte{}, "", http.StatusBadRequest, "The submitted file is empty."},
		{"not a document", []byte("hello, plain text"), "", http.StatusUnsupportedMediaType, "Unsupported file type"},
		{"too large", append([]byte("%PDF-"), make([]byte, 2<<10)...), "", http.StatusRequestEntityTooLarge, "File too large"},
		{"unknown document type", pdf, "receipt", http.StatusBadRequest, `not a valid choice`},
		{"known document type", pdf, "invoice", http.StatusCreated, "case_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ct := form(t, "x.pdf", tc.content, tc.docType)
			st, b := e.call(http.MethodPost, "/api/v1/cases/direct-upload/", body, ct)
			if st != tc.status || !bytes.Contains(b, []byte(tc.says)) {
				t.Errorf("got %d %s, want %d saying %q", st, b, tc.status, tc.says)
			}
		})
	}
	st, b := e.call(http.MethodPost, "/api/v1/cases/direct-upload/", strings.NewReader(`{}`), "application/json")
	if st != http.StatusUnsupportedMediaType {
		t.Errorf("JSON body: %d %s", st, b)
	}
	if n := len(e.sim.Ledger.All()); n != 1 {
		t.Errorf("ledger has %d uploads, want only the accepted one", n)
	}
}

func TestMultiFileCase(t *testing.T) {
	e := newEnv(t, allsparksim.Config{PendingPolls: 1})
	st, b := e.call(http.MethodPost, "/api/v1/cases/", nil, "")
	if st != http.StatusCreated {
		t.Fatalf("create: %d %s", st, b)
	}
	id := caseID(t, b)
	base := fmt.Sprintf("/api/v1/cases/%d", id)

	st, b = e.call(http.MethodPost, base+"/mark-complete/", nil, "")
	if st != http.StatusBadRequest {
		t.Errorf("mark-complete of an empty case: %d %s", st, b)
	}
	for _, name := range []string{"a.pdf", "b.pdf"} {
		st, b = e.upload(base+"/add-file/", name, append(pdf, name...))
		if st != http.StatusOK || !bytes.Contains(b, []byte(`"status":"success"`)) {
			t.Fatalf("add-file %s: %d %s", name, st, b)
		}
	}
	// Not processing until marked complete, however often it is polled.
	for range 5 {
		if c := e.getCase(id); c.Status != "pending" {
			t.Fatalf("unmarked case is %q", c.Status)
		}
	}
	st, b = e.call(http.MethodPost, base+"/mark-complete/", nil, "")
	if st != http.StatusOK || !bytes.Contains(b, []byte(`"status":"success"`)) {
		t.Fatalf("mark-complete: %d %s", st, b)
	}
	st, b = e.upload(base+"/add-file/", "c.pdf", pdf)
	if st != http.StatusBadRequest {
		t.Errorf("add-file after mark-complete: %d %s", st, b)
	}
	if c := e.getCase(id); c.Status != "pending" {
		t.Fatalf("first poll after marking: %q", c.Status)
	}
	c := e.getCase(id)
	if c.Status != "completed" || len(c.Files) != 2 || len(c.Files[0].Fields) != 4 || len(c.Files[1].Fields) != 4 {
		t.Fatalf("completed case: %+v", c)
	}
	st, _ = e.upload("/api/v1/cases/999/add-file/", "x.pdf", pdf)
	if st != http.StatusNotFound {
		t.Errorf("add-file to an unknown case: %d", st)
	}
}

func TestListPaginates(t *testing.T) {
	e := newEnv(t, allsparksim.Config{})
	for range 5 {
		e.call(http.MethodPost, "/api/v1/cases/", nil, "")
	}
	if err := e.sim.SetStatus("3", "in_review"); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Count    int
		Next     *string
		Previous *string
		Results  []struct {
			CaseID int `json:"case_id"`
			Status string
		}
	}
	get := func(path string) page {
		t.Helper()
		st, b := e.call(http.MethodGet, path, nil, "")
		var p page
		if st != http.StatusOK || json.Unmarshal(b, &p) != nil {
			t.Fatalf("%s: %d %s", path, st, b)
		}
		return p
	}
	p := get("/api/v1/cases/?order=desc&sort_by=created_at&limit=2")
	if p.Count != 5 || len(p.Results) != 2 || p.Results[0].CaseID != 5 || p.Results[1].CaseID != 4 || p.Previous != nil || p.Next == nil {
		t.Fatalf("first page: %+v", p)
	}
	next, err := url.Parse(*p.Next)
	if err != nil || next.Scheme != "http" || next.Host == "" || next.Query().Get("offset") != "2" || next.Query().Get("order") != "desc" {
		t.Fatalf("next %q is not a full URL to offset 2 keeping the query", *p.Next)
	}
	p = get(next.RequestURI())
	if len(p.Results) != 2 || p.Results[0].CaseID != 3 || p.Previous == nil || p.Next == nil {
		t.Fatalf("second page: %+v", p)
	}
	if prev, _ := url.Parse(*p.Previous); prev.Query().Has("offset") {
		t.Errorf("previous of offset 2 keeps offset: %s", *p.Previous)
	}
	p = get("/api/v1/cases/?status=in_review")
	if p.Count != 1 || p.Results[0].CaseID != 3 || p.Results[0].Status != "in_review" {
		t.Errorf("status filter: %+v", p)
	}
	p = get("/api/v1/cases/?limit=x&offset=-3&order=sideways")
	if p.Count != 5 || len(p.Results) != 5 || p.Results[0].CaseID != 1 {
		t.Errorf("invalid parameters are not ignored: %+v", p)
	}
}

func TestOCROutput(t *testing.T) {
	e := newEnv(t, allsparksim.Config{})
	name := "scan & copy #1.pdf"
	_, b := e.upload("/api/v1/cases/direct-upload/", name, pdf)
	id := caseID(t, b)
	path := fmt.Sprintf("/api/v1/cases/%d/ocr-output", id)
	if st, _ := e.call(http.MethodGet, path+"?file_name="+url.QueryEscape(name), nil, ""); st != http.StatusNotFound {
		t.Errorf("OCR before completion: %d", st)
	}
	e.getCase(id) // PendingPolls 0: completes on the first poll
	for _, tc := range []struct {
		query  string
		status int
	}{
		{"?file_name=" + strings.ReplaceAll(url.QueryEscape(name), "+", "%20"), http.StatusOK},
		{"", http.StatusBadRequest},
		{"?file_name=other.pdf", http.StatusNotFound},
	} {
		st, b := e.call(http.MethodGet, path+tc.query, nil, "")
		if st != tc.status {
			t.Errorf("%q: %d %s, want %d", tc.query, st, b, tc.status)
		}
	}
}

func TestFaultsComeFirst(t *testing.T) {
	e := newEnv(t, allsparksim.Config{})
	e.sim.Faults.Add("upload", simkit.Fault{Status: 503, Body: `{"detail":"busy"}`, RetryAfter: "3"})
	body, ct := form(t, "a.pdf", pdf, "")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/api/v1/cases/direct-upload/", body)
	req.Header.Set("Content-Type", ct) // no key: the fault still answers first
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "3" {
		t.Errorf("fault: %d Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if st, _ := e.upload("/api/v1/cases/direct-upload/", "a.pdf", pdf); st != http.StatusCreated {
		t.Errorf("after the fault: %d", st)
	}
	if n := len(e.sim.Ledger.All()); n != 1 {
		t.Errorf("ledger has %d uploads, want 1", n)
	}
}

func TestSetStatusPins(t *testing.T) {
	e := newEnv(t, allsparksim.Config{})
	_, b := e.upload("/api/v1/cases/direct-upload/", "a.pdf", pdf)
	id := caseID(t, b)
	if err := e.sim.SetStatus(fmt.Sprint(id), "in_review"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if c := e.getCase(id); c.Status != "in_review" {
			t.Fatalf("pinned status moved to %q", c.Status)
		}
	}
	if err := e.sim.SetStatus("404", "failed"); err == nil {
		t.Error("SetStatus of an unknown case did not fail")
	}
}

func TestConcurrentUploadsGetDistinctCases(t *testing.T) {
	e := newEnv(t, allsparksim.Config{})
	const n = 20
	ids := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body, ct := form(t, fmt.Sprintf("%d.pdf", i), pdf, "")
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/cases/direct-upload/", body)
			req.Header.Set("API-KEY", key)
			req.Header.Set("Content-Type", ct)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			var out struct {
				CaseID int `json:"case_id"`
			}
			_ = json.NewDecoder(res.Body).Decode(&out)
			ids <- out.CaseID
		})
	}
	wg.Wait()
	close(ids)
	seen := map[int]bool{}
	for id := range ids {
		if id == 0 || seen[id] {
			t.Errorf("case id %d missing or repeated", id)
		}
		seen[id] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct cases, want %d", len(seen), n)
	}
}
