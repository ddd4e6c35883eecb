package ginisim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/vendors/gini/ginisim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

const (
	cid, csecret = "client", "secret"
	uid          = "tenant-1"
)

type fixture struct {
	t   *testing.T
	sim *ginisim.Server
	srv *httptest.Server
}

func newFixture(t *testing.T, edit func(*ginisim.Config)) *fixture {
	t.Helper()
	cfg := ginisim.Config{ClientID: cid, ClientSecret: csecret, Users: map[string]string{"alice": "pw"}}
	if edit != nil {
		edit(&cfg)
	}
	sim := ginisim.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &fixture{t: t, sim: sim, srv: srv}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %s", a.status, err, a.body)
	}
	return m
}

// backend is the headers of the backend mode: Basic client credentials, a user identifier, v1.
func backend(user string) http.Header {
	h := http.Header{"Accept": {ginisim.MediaType}, "X-User-Identifier": {user}}
	h.Set("Authorization", "Basic "+basic(cid, csecret))
	return h
}

func basic(id, secret string) string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(id, secret)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func bearer(tok string) http.Header {
	return http.Header{"Accept": {ginisim.MediaType}, "Authorization": {"BEARER " + tok}}
}

func (f *fixture) do(method, path string, h http.Header, body []byte) answer {
	f.t.Helper()
	req, err := http.NewRequestWithContext(f.t.Context(), method, f.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, b}
}

// token logs in with the password grant the way Gini documents it: grant_type in the query.
func (f *fixture) token(id, secret, form string) answer {
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	h.Set("Authorization", "Basic "+basic(id, secret))
	return f.do(http.MethodPost, "/oauth/token?grant_type=password", h, []byte(form))
}

func (f *fixture) upload(h http.Header, query string, content []byte) (id string, a answer) {
	f.t.Helper()
	a = f.do(http.MethodPost, "/documents"+query, h, content)
	if a.status == http.StatusCreated {
		loc, err := url.Parse(a.header.Get("Location"))
		if err != nil || !loc.IsAbs() || !strings.HasPrefix(loc.Path, "/documents/") {
			f.t.Fatalf("Location %q is not an absolute document URI", a.header.Get("Location"))
		}
		id = strings.TrimPrefix(loc.Path, "/documents/")
	}
	return id, a
}

func TestToken(t *testing.T) {
	tests := []struct {
		name          string
		id, secret    string
		form          string
		refresh       bool
		status        int
		errCode       string
		wantRefreshTk bool
	}{
		{"password grant", cid, csecret, "username=alice&password=pw", false, 200, "", false},
		{"with refresh tokens", cid, csecret, "username=alice&password=pw", true, 200, "", true},
		{"wrong client secret", cid, "nope", "username=alice&password=pw", false, 401, "invalid_client", false},
		{"wrong password", cid, csecret, "username=alice&password=guess", false, 400, "invalid_grant", false},
		{"unknown user", cid, csecret, "username=bob&password=pw", false, 400, "invalid_grant", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *ginisim.Config) { c.RefreshTokens = tc.refresh })
			a := f.token(tc.id, tc.secret, tc.form)
			m := a.json(t)
			if a.status != tc.status || (tc.errCode != "" && m["error"] != tc.errCode) {
				t.Fatalf("answer %d %s, want %d %s", a.status, a.body, tc.status, tc.errCode)
			}
			if tc.status != 200 {
				return
			}
			if m["expires_in"] != float64(3599) || m["token_type"] != "bearer" || m["access_token"] == "" {
				t.Errorf("token answer %s", a.body)
			}
			rt, hasRT := m["refresh_token"].(string)
			if hasRT != tc.wantRefreshTk {
				t.Fatalf("refresh token %q, want one: %v", rt, tc.wantRefreshTk)
			}
			if hasRT {
				h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
				h.Set("Authorization", "Basic "+basic(cid, csecret))
				r := f.do(http.MethodPost, "/oauth/token", h, []byte("grant_type=refresh_token&refresh_token="+url.QueryEscape(rt)))
				tok, _ := r.json(t)["access_token"].(string)
				if r.status != 200 || f.do(http.MethodGet, "/documents", bearer(tok), nil).status != 200 {
					t.Errorf("refresh answer %d %s did not give a usable token", r.status, r.body)
				}
			}
		})
	}
}

func TestAPIAuth(t *testing.T) {
	f := newFixture(t, nil)
	expired, _ := f.token(cid, csecret, "username=alice&password=pw").json(t)["access_token"].(string)
	f.sim.Tokens.ExpireAll()
	fresh, _ := f.token(cid, csecret, "username=alice&password=pw").json(t)["access_token"].(string)
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	h.Set("Authorization", "Basic "+basic(cid, csecret))
	clientTok, _ := f.do(http.MethodPost, "/oauth/token?grant_type=client_credentials", h, nil).json(t)["access_token"].(string)

	wrongSecret := backend(uid)
	wrongSecret.Set("Authorization", "Basic "+basic(cid, "nope"))
	noUID := backend(uid)
	noUID.Del("X-User-Identifier")
	tests := []struct {
		name    string
		h       http.Header
		status  int
		message string
	}{
		{"backend mode", backend(uid), 200, ""},
		{"user token", bearer(fresh), 200, ""},
		{"nothing", http.Header{"Accept": {ginisim.MediaType}}, 401, "Full authentication"},
		{"wrong client secret", wrongSecret, 401, "Bad client credentials"},
		{"no user identifier", noUID, 401, "X-User-Identifier"},
		{"expired token", bearer(expired), 401, "Invalid access token"},
		{"client token", bearer(clientTok), 401, "not a user token"},
		{"no Accept", http.Header{"Authorization": {"Bearer " + fresh}}, 406, ginisim.MediaType},
		{"plain JSON Accept", http.Header{"Authorization": {"Bearer " + fresh}, "Accept": {"application/json"}}, 406, ginisim.MediaType},
		{"v1 among others", http.Header{"Authorization": {"Bearer " + fresh}, "Accept": {"application/json, application/vnd.gini.v1+json; q=0.9"}}, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(http.MethodGet, "/documents", tc.h, nil)
			m := a.json(t)
			if a.status != tc.status {
				t.Fatalf("status %d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.status == 200 {
				return
			}
			if msg, _ := m["message"].(string); !strings.Contains(msg, tc.message) || m["requestId"] == "" || m["requestId"] == nil {
				t.Errorf("error body %s, want Gini's {message, requestId} with %q", a.body, tc.message)
			}
		})
	}
}

func TestUploadRules(t *testing.T) {
	text := []byte("Rechnung Nr. 4711\nBetrag: 24,99 €\n")
	tests := []struct {
		name    string
		content []byte
		status  int
		class   string
	}{
		{"PDF", []byte("%PDF-1.4\n1 0 obj\n"), 201, "NATIVE"},
		{"PNG", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), 201, "SCANNED"},
		{"JPEG", []byte("\xff\xd8\xff\xe0\x00\x10JFIF"), 201, "SCANNED"},
		{"TIFF little-endian", []byte("II*\x00\x08\x00\x00\x00"), 201, "SCANNED"},
		{"TIFF big-endian", []byte("MM\x00*\x00\x00\x00\x08"), 201, "SCANNED"},
		{"GIF", []byte("GIF89a\x01\x00\x01\x00"), 201, "SCANNED"},
		{"UTF-8 text", text, 201, "TEXT"},
		{"animated GIF", []byte("GIF89a\x01\x00\x01\x00!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"), 415, ""},
		{"ZIP", []byte("PK\x03\x04\x14\x00\x00\x00"), 415, ""},
		{"UTF-16 text", []byte("\xff\xfeR\x00e\x00"), 415, ""},
		{"encrypted PDF", []byte("%PDF-1.4\ntrailer << /Encrypt 5 0 R >>"), 400, ""},
		{"empty", nil, 400, ""},
		{"too large", append([]byte("%PDF-1.4\n"), make([]byte, 2048)...), 400, ""},
		{"text too large", bytes.Repeat(text, 20), 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *ginisim.Config) { c.MaxBytes, c.MaxTextBytes = 2048, 512 })
			// The Content-Type claim is ignored: the bytes decide.
			h := backend(uid)
			h.Set("Content-Type", "application/pdf")
			id, a := f.upload(h, "?filename=x", tc.content)
			if a.status != tc.status {
				t.Fatalf("status %d %s, want %d", a.status, a.body, tc.status)
			}
			if tc.status != 201 {
				if m := a.json(t); m["message"] == "" || m["requestId"] == nil {
					t.Errorf("error body %s", a.body)
				}
				if n := len(f.sim.Ledger.All()); n != 0 {
					t.Errorf("%d uploads recorded", n)
				}
				return
			}
			m := f.do(http.MethodGet, "/documents/"+id, backend(uid), nil).json(t)
			if m["sourceClassification"] != tc.class || m["name"] != "x" || m["id"] != id {
				t.Errorf("document %v", m)
			}
			sum, _ := simkit.Digest(tc.content)
			if f.sim.Ledger.Count(sum) != 1 {
				t.Errorf("upload not in the ledger")
			}
		})
	}
}

func TestMultipartUpload(t *testing.T) {
	f := newFixture(t, nil)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("note", "ignored")
	fw, _ := mw.CreateFormFile("file", "scan.png")
	_, _ = fw.Write([]byte("\x89PNG\r\n\x1a\nrest"))
	_ = mw.Close()
	h := backend(uid)
	h.Set("Content-Type", mw.FormDataContentType())
	id, a := f.upload(h, "", body.Bytes())
	if a.status != 201 {
		t.Fatalf("status %d %s", a.status, a.body)
	}
	if m := f.do(http.MethodGet, "/documents/"+id, backend(uid), nil).json(t); m["name"] != "scan.png" {
		t.Errorf("name %v, want the part's file name", m["name"])
	}

	var none bytes.Buffer
	mw = multipart.NewWriter(&none)
	_ = mw.WriteField("note", "no file")
	_ = mw.Close()
	h.Set("Content-Type", mw.FormDataContentType())
	if _, a := f.upload(h, "", none.Bytes()); a.status != 400 {
		t.Errorf("multipart without file: %d %s", a.status, a.body)
	}
}

func TestProgress(t *testing.T) {
	f := newFixture(t, func(c *ginisim.Config) { c.PendingPolls = 2 })
	id, _ := f.upload(backend(uid), "?filename=a.pdf", []byte("%PDF-1.4 a"))
	// Listing does not move processing on; only looks at the document do.
	f.do(http.MethodGet, "/documents", backend(uid), nil)
	var got []string
	for range 4 {
		m := f.do(http.MethodGet, "/documents/"+id, backend(uid), nil).json(t)
		got = append(got, m["progress"].(string))
	}
	if want := "PENDING PENDING COMPLETED COMPLETED"; strings.Join(got, " ") != want {
		t.Errorf("progress %v, want %s", got, want)
	}
	ex := f.do(http.MethodGet, "/documents/"+id+"/extractions", backend(uid), nil)
	if ex.header.Get("Content-Type") != ginisim.MediaType {
		t.Errorf("Content-Type %q", ex.header.Get("Content-Type"))
	}
	amount := ex.json(t)["extractions"].(map[string]any)["amountToPay"].(map[string]any)
	rec := simkit.RecogniseContent("a.pdf", []byte("%PDF-1.4 a"))
	if amount["value"] != rec.Total+":EUR" || amount["entity"] != "amount" || amount["box"] == nil {
		t.Errorf("amountToPay %v", amount)
	}
	if a := f.do(http.MethodGet, "/documents/"+id+"/layout", backend(uid), nil); a.status != 200 || !bytes.Contains(a.body, []byte(`"wds"`)) {
		t.Errorf("layout %d %s", a.status, a.body)
	}

	if !f.sim.SetProgress(id, ginisim.Failed) || f.sim.SetProgress("nope", ginisim.Failed) {
		t.Fatal("SetProgress reports the wrong documents")
	}
	if m := f.do(http.MethodGet, "/documents/"+id, backend(uid), nil).json(t); m["progress"] != "ERROR" {
		t.Errorf("progress %v after SetProgress", m["progress"])
	}
	if m := f.do(http.MethodGet, "/documents/"+id+"/extractions", backend(uid), nil).json(t); len(m["extractions"].(map[string]any)) != 0 {
		t.Errorf("a failed document has extractions: %v", m)
	}
}

func TestListAndDelete(t *testing.T) {
	f := newFixture(t, nil)
	var ids []string
	for i := range 3 {
		id, _ := f.upload(backend(uid), fmt.Sprintf("?filename=%d.pdf", i), fmt.Appendf(nil, "%%PDF-1.4 %d", i))
		ids = append(ids, id)
	}
	f.upload(backend("someone-else"), "?filename=other.pdf", []byte("%PDF-1.4 other"))

	tests := []struct {
		query string
		want  []string // names, newest first
	}{
		{"", []string{"2.pdf", "1.pdf", "0.pdf"}},
		{"?limit=2", []string{"2.pdf", "1.pdf"}},
		{"?limit=2&offset=2", []string{"0.pdf"}},
		{"?offset=5", nil},
	}
	for _, tc := range tests {
		a := f.do(http.MethodGet, "/documents"+tc.query, backend(uid), nil)
		var list struct {
			TotalCount int `json:"totalCount"`
			Documents  []struct {
				Name         string `json:"name"`
				CreationDate int64  `json:"creationDate"`
			} `json:"documents"`
		}
		if err := json.Unmarshal(a.body, &list); err != nil || a.status != 200 {
			t.Fatalf("list%s: %d %s", tc.query, a.status, a.body)
		}
		var names []string
		for _, d := range list.Documents {
			names = append(names, d.Name)
			if d.CreationDate == 0 {
				t.Errorf("no creationDate")
			}
		}
		if list.TotalCount != 3 || strings.Join(names, ",") != strings.Join(tc.want, ",") {
			t.Errorf("list%s = %d %v, want 3 %v", tc.query, list.TotalCount, names, tc.want)
		}
	}
	if a := f.do(http.MethodGet, "/documents?limit=-1", backend(uid), nil); a.status != 400 {
		t.Errorf("negative limit: %d", a.status)
	}

	if a := f.do(http.MethodDelete, "/documents/"+ids[0], backend("someone-else"), nil); a.status != 404 {
		t.Errorf("deleting another user's document: %d", a.status)
	}
	if a := f.do(http.MethodDelete, "/documents/"+ids[0], backend(uid), nil); a.status != 204 {
		t.Errorf("delete: %d %s", a.status, a.body)
	}
	for _, p := range []string{"", "/extractions", "/layout"} {
		if a := f.do(http.MethodGet, "/documents/"+ids[0]+p, backend(uid), nil); a.status != 404 {
			t.Errorf("GET %s after delete: %d", p, a.status)
		}
	}
}

func TestFaultsComeFirst(t *testing.T) {
	f := newFixture(t, nil)
	f.sim.Faults.Add("list", simkit.Fault{Status: 503, Body: `{"message":"busy","requestId":"r1"}`, RetryAfter: "3"})
	a := f.do(http.MethodGet, "/documents", nil, nil) // no credentials: the fault still answers
	if a.status != 503 || a.header.Get("Retry-After") != "3" || f.sim.Requests("list") != 1 {
		t.Fatalf("fault answer %d %v", a.status, a.header)
	}
	if a := f.do(http.MethodGet, "/documents", backend(uid), nil); a.status != 200 {
		t.Errorf("after the fault: %d", a.status)
	}
}

func TestConcurrentUploads(t *testing.T) {
	f := newFixture(t, func(c *ginisim.Config) { c.PendingPolls = 1 })
	const n = 20
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.srv.URL+"/documents?filename=c.pdf",
				strings.NewReader(fmt.Sprintf("%%PDF-1.4 %d", i)))
			req.Header = backend(uid)
			res, err := f.srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			loc, _ := url.Parse(res.Header.Get("Location"))
			ids[i] = strings.TrimPrefix(loc.Path, "/documents/")
			res2, err := f.srv.Client().Do(mustGet(t, f.srv.URL+"/documents/"+ids[i]))
			if err == nil {
				res2.Body.Close()
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			t.Errorf("id %q empty or repeated", id)
		}
		seen[id] = true
	}
	if f.sim.Documents() != n || len(f.sim.Ledger.All()) != n {
		t.Errorf("%d documents, %d uploads; want %d", f.sim.Documents(), len(f.sim.Ledger.All()), n)
	}
}

func mustGet(t *testing.T, uri string) *http.Request {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = backend(uid)
	return req
}

// The simulator's documents outlive a restart on the same state: with their owner, progress and
// creation date; a deleted document stays deleted; and the order of the list goes on from the old
// documents (a new one lists first even when created in the same instant as an old one).
func TestStateSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gini", "documents.jsonl")
	start := func() *fixture {
		sim := ginisim.New(ginisim.Config{ClientID: cid, ClientSecret: csecret, PendingPolls: 1})
		if err := sim.KeepState(path); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(sim)
		t.Cleanup(srv.Close)
		return &fixture{t: t, sim: sim, srv: srv}
	}
	f := start()
	var ids []string
	for i := range 3 {
		id, _ := f.upload(backend(uid), fmt.Sprintf("?filename=%d.pdf", i), fmt.Appendf(nil, "%%PDF-1.4 %d", i))
		ids = append(ids, id)
	}
	if a := f.do(http.MethodDelete, "/documents/"+ids[0], backend(uid), nil); a.status != 204 {
		t.Fatalf("delete: %d %s", a.status, a.body)
	}
	f.sim.SetProgress(ids[1], ginisim.Failed)
	created := time.UnixMilli(1_700_000_000_000)
	f.sim.SetCreated(ids[1], created.Add(-time.Hour))
	f.sim.SetCreated(ids[2], created)
	if err := f.sim.CloseState(); err != nil {
		t.Fatal(err)
	}

	f = start()
	defer f.sim.CloseState()
	if n := f.sim.Documents(); n != 2 {
		t.Errorf("%d documents after the restart, want 2", n)
	}
	if a := f.do(http.MethodGet, "/documents/"+ids[0], backend(uid), nil); a.status != 404 {
		t.Errorf("the deleted document came back: %d %s", a.status, a.body)
	}
	if a := f.do(http.MethodGet, "/documents/"+ids[2], backend("someone-else"), nil); a.status != 404 {
		t.Errorf("the document changed owner: %d", a.status)
	}
	if m := f.do(http.MethodGet, "/documents/"+ids[1], backend(uid), nil).json(t); m["progress"] != ginisim.Failed {
		t.Errorf("forced progress after the restart: %v", m["progress"])
	}
	m := f.do(http.MethodGet, "/documents/"+ids[2], backend(uid), nil).json(t)
	if m["progress"] != ginisim.Pending || m["name"] != "2.pdf" || m["creationDate"] != float64(created.UnixMilli()) {
		t.Errorf("document after the restart: %v", m)
	}
	ex := f.do(http.MethodGet, "/documents/"+ids[2]+"/extractions", backend(uid), nil).json(t)
	want, _ := json.Marshal(ginisim.Extractions(simkit.RecogniseContent("2.pdf", []byte("%PDF-1.4 2"))))
	if got, _ := json.Marshal(ex); !bytes.Equal(got, want) {
		t.Errorf("extractions after the restart:\n got %s\nwant %s", got, want)
	}

	id, _ := f.upload(backend(uid), "?filename=new.pdf", []byte("%PDF-1.4 new"))
	if id == "" || slices.Contains(ids, id) {
		t.Fatalf("new document id %q", id)
	}
	f.sim.SetCreated(id, created)
	var list struct {
		Documents []struct {
			Name string `json:"name"`
		} `json:"documents"`
	}
	if err := json.Unmarshal(f.do(http.MethodGet, "/documents", backend(uid), nil).body, &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range list.Documents {
		names = append(names, d.Name)
	}
	if strings.Join(names, ",") != "new.pdf,2.pdf,1.pdf" {
		t.Errorf("list after the restart %v, want new.pdf,2.pdf,1.pdf", names)
	}
}

// A journal that cannot be made is an error that says what it is about.
func TestKeepStateFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := ginisim.New(ginisim.Config{}).KeepState(filepath.Join(file, "documents.jsonl"))
	if err == nil || !strings.Contains(err.Error(), "Gini sandbox") {
		t.Fatalf("KeepState under a file: %v", err)
	}
}

// FailFirstUploads: the first upload of some bytes ends in ERROR after its pending looks, the
// next upload of the same bytes completes, other bytes are failed once too.
func TestFailFirstUploads(t *testing.T) {
	f := newFixture(t, func(c *ginisim.Config) { c.PendingPolls = 1; c.FailFirstUploads = true })
	progress := func(id string) []string {
		var got []string
		for range 2 {
			got = append(got, f.do(http.MethodGet, "/documents/"+id, backend(uid), nil).json(t)["progress"].(string))
		}
		return got
	}
	first, _ := f.upload(backend(uid), "?filename=a.pdf", []byte("%PDF-1.4 a"))
	second, _ := f.upload(backend(uid), "?filename=a.pdf", []byte("%PDF-1.4 a"))
	other, _ := f.upload(backend(uid), "?filename=b.pdf", []byte("%PDF-1.4 b"))
	for id, want := range map[string]string{first: "PENDING ERROR", second: "PENDING COMPLETED", other: "PENDING ERROR"} {
		if got := strings.Join(progress(id), " "); got != want {
			t.Errorf("%s: progress %s, want %s", id, got, want)
		}
	}
}
