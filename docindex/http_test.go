package docindex_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/docapi"
	"github.com/ingest-dev/ingest/docindex"
	"github.com/ingest-dev/ingest/httpapi"
)

const apiKey = "test-key-0123456789abcdef0123456789"

func serve(t *testing.T, f *fixture, ix *docindex.Index) *httptest.Server {
	t.Helper()
	srv, err := httpapi.New(httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	api, err := docapi.New(docapi.Config{Bus: f.bus, APIKeys: []string{apiKey}, Index: ix})
	if err != nil {
		t.Fatal(err)
	}
	api.Register(srv.Echo())
	ts := httptest.NewServer(srv.Echo())
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, ts *httptest.Server, path string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

func TestHTTPListEqualsGetByID(t *testing.T) {
	f := newFixture(t)
	n := corpus(f)
	ix := f.open(filepath.Join(t.TempDir(), "documents.db"))
	run(t, ix)
	f.caughtUp(ix)
	ts := serve(t, f, ix)

	code, _, body := get(t, ts, "/v1/documents?limit=2")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	var page struct {
		Documents  []json.RawMessage `json:"documents"`
		NextCursor *string           `json:"next_cursor"`
		Counts     map[string]map[string]int
		Index      docindex.Progress `json:"index"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Documents) != 2 || page.NextCursor == nil || page.Counts["status"]["completed"] != 1 || !page.Index.CaughtUp {
		t.Fatalf("page: %s", body)
	}
	code, _, body = get(t, ts, "/v1/documents?cursor="+url.QueryEscape(*page.NextCursor)+"&limit=500")
	var rest struct {
		Documents  []json.RawMessage `json:"documents"`
		NextCursor *string           `json:"next_cursor"`
	}
	if err := json.Unmarshal(body, &rest); code != http.StatusOK || err != nil || len(rest.Documents) != 3 || rest.NextCursor != nil {
		t.Fatalf("second page %d: %s", code, body)
	}
	for _, raw := range append(page.Documents, rest.Documents...) {
		var d struct{ ID string }
		_ = json.Unmarshal(raw, &d)
		code, _, one := get(t, ts, "/v1/documents/"+d.ID)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", d.ID, code)
		}
		if !jsonEqual(t, raw, one) {
			t.Errorf("list has\n%s\nGET by id has\n%s", raw, one)
		}
	}
	code, _, body = get(t, ts, "/v1/documents?vendor=gini&source=imap%2Finvoices&status=completed&since=2025-03-01T00:00:00Z&until=1h&q=invoice")
	if code != http.StatusOK || !strings.Contains(string(body), n["mail-gini-done"]) {
		t.Errorf("combined filters: %d %s", code, body)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

func TestHTTPHostileParameters(t *testing.T) {
	f := newFixture(t)
	f.add(doc{kind: "http", name: "api", filename: "a.pdf"})
	ix := f.open(filepath.Join(t.TempDir(), "documents.db"))
	run(t, ix)
	f.caughtUp(ix)
	ts := serve(t, f, ix)
	for _, tc := range []struct {
		query, detail string
	}{
		{"cursor=not-a-cursor!", "cursor"},
		{"cursor=" + url.QueryEscape("MTIzfCcgT1IgMT0xLS0"), "cursor"}, // "123|' OR 1=1--"
		{"limit=100000", "limit"},
		{"limit=0", "limit"},
		{"limit=-5", "limit"},
		{"limit=ten", "limit"},
		{"since=yesterday", "since"},
		{"until=2025-13-45T00:00:00Z", "until"},
		{"since=-2h", "since"},
		{"status=done", "status"},
		{"status=", "status"},
		{"vendor=Gini%27%3B--", "vendor"},
		{"source=imap%2F..%2Fetc", "source"},
		{"route=a%20b", "route"},
		{"q=" + strings.Repeat("x", 201), "q"},
		{"q=%FF%FE", "q"},
		{"q=pd", "at least 3 characters"},
		{"status=failed&status=completed", "once"},
		{"order=id", "unknown parameter"},
	} {
		code, h, body := get(t, ts, "/v1/documents?"+tc.query)
		if code != http.StatusBadRequest || h.Get("Content-Type") != httpapi.ProblemContentType {
			t.Errorf("%s: %d %s %s", tc.query, code, h.Get("Content-Type"), body)
			continue
		}
		var p httpapi.Problem
		if err := json.Unmarshal(body, &p); err != nil || !strings.Contains(p.Detail, tc.detail) {
			t.Errorf("%s: detail %q should mention %q", tc.query, p.Detail, tc.detail)
		}
	}
	// Safe, not refused: SQL and FTS syntax in q are plain text to search for.
	for _, q := range []string{`x'); DROP TABLE docs;--`, `abc" AND "def`, `NEAR(xyz, abc)`, `***`, `%%%`, `___`, `"""`} {
		code, _, body := get(t, ts, "/v1/documents?q="+url.QueryEscape(q))
		if code != http.StatusOK || !strings.Contains(string(body), `"documents":[]`) {
			t.Errorf("q=%s: %d %s", q, code, body)
		}
	}
	if code, _, _ := get(t, ts, "/v1/documents"); code != http.StatusOK {
		t.Errorf("the table is still there: %d", code)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/documents", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without an API key: %d", resp.StatusCode)
	}
}
