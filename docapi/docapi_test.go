package docapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/docapi"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/httpapi"
)

const apiKey = "docapi-test-key-0123456789abcdef"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type fixture struct {
	t   *testing.T
	bus *events.Bus
	ts  *httptest.Server
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	srv, err := httpapi.New(httpapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	api, err := docapi.New(docapi.Config{Bus: bus, APIKeys: []string{apiKey}})
	if err != nil {
		t.Fatal(err)
	}
	api.Register(srv.Echo())
	ts := httptest.NewServer(srv.Echo())
	t.Cleanup(ts.Close)
	return &fixture{t: t, bus: bus, ts: ts, now: time.Now().UTC()}
}

func (f *fixture) record(k events.Kind, qualifier, id, doc string, data any) {
	f.t.Helper()
	subject, err := f.bus.Names().Subject(k, qualifier)
	if err != nil {
		f.t.Fatal(err)
	}
	f.now = f.now.Add(time.Millisecond)
	ev, err := events.NewEvent(k, id, "/test", doc, f.now, data)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, _, err := f.bus.Record(ctxT(f.t), subject, ev); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) put(key string, data []byte) events.BlobInfo {
	f.t.Helper()
	info, err := f.bus.Blobs().Put(ctxT(f.t), key, bytes.NewReader(data), nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return info
}

func (f *fixture) get(path string) (int, http.Header, []byte) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.ts.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, body
}

// problem checks a problem+json answer with status want whose detail contains each of words.
func (f *fixture) problem(path string, want int, words ...string) {
	f.t.Helper()
	code, h, body := f.get(path)
	var p httpapi.Problem
	if code != want || h.Get("Content-Type") != httpapi.ProblemContentType || json.Unmarshal(body, &p) != nil {
		f.t.Fatalf("%s: %d %s %s, want %d problem+json", path, code, h.Get("Content-Type"), body, want)
	}
	for _, w := range words {
		if !strings.Contains(p.Detail, w) {
			f.t.Errorf("%s: detail %q does not say %q", path, p.Detail, w)
		}
	}
}

// oddName is a result file name with characters that must be escaped in a URL.
const oddName = "report 100% «ok».txt"

const (
	docDone    = "01930000-0000-7000-8000-000000000001" // gini and laigo completed, documine failed
	docWaiting = "01930000-0000-7000-8000-000000000002" // submitted to gini, nothing back
)

// a document with results from three vendors: two have a result.zip, one failed.
func (f *fixture) documents() (zip []byte) {
	f.record(events.Received, "http", docDone+".received", docDone, events.ReceivedData{DocumentID: docDone,
		Source: events.SourceRef{Kind: "http", Name: "api"}, Filename: "scan.pdf", ContentType: "application/pdf",
		Vendors: []string{"gini", "laigo", "documine"}, ReceivedAt: f.now})
	for _, v := range []string{"gini", "laigo", "documine"} {
		f.record(events.Submitted, v, docDone+".submitted."+v, docDone, events.SubmittedData{DocumentID: docDone, Vendor: v, VendorRef: "ref-" + v})
	}
	zip = make([]byte, 3<<20+17) // several Object Store chunks
	_, _ = rand.Read(zip)
	odd := f.put("results/"+docDone+"/gini/odd", []byte("odd name"))
	for _, v := range []string{"gini", "laigo"} {
		data := []byte("zip of " + v)
		if v == "laigo" {
			data = zip
		}
		key := "results/" + docDone + "/" + v + "/result.zip"
		info := f.put(key, data)
		conf := 0.97
		d := events.CompletedData{DocumentID: docDone, Vendor: v,
			VendorRef: "ref-" + v, Text: "text by " + v, CompletedAt: f.now,
			Fields:    []events.Field{{Name: "total", Value: "24.99", Currency: "EUR", Confidence: &conf}, {Name: "vendor", Value: v}},
			Artifacts: []events.Artifact{{Name: "result.zip", ContentType: "application/zip", ObjectKey: key, Size: info.Size}}}
		if v == "gini" {
			d.Artifacts = append(d.Artifacts, events.Artifact{Name: oddName, ContentType: "text/plain; charset=utf-8", ObjectKey: odd.Key, Size: odd.Size})
		}
		f.record(events.Completed, v, docDone+".completed."+v, docDone, d)
	}
	f.record(events.Failed, "documine", docDone+".failed.documine", docDone, events.FailedData{DocumentID: docDone, Vendor: "documine",
		VendorRef: "ref-documine", Error: "the file is encrypted", Permanent: true, Attempts: 2, FailedAt: f.now})

	f.record(events.Received, "http", docWaiting+".received", docWaiting, events.ReceivedData{DocumentID: docWaiting,
		Filename: "wait.pdf", Vendors: []string{"gini"}, ReceivedAt: f.now})
	f.record(events.Submitted, "gini", docWaiting+".submitted.gini", docWaiting, events.SubmittedData{DocumentID: docWaiting, Vendor: "gini"})
	return zip
}

func TestResults(t *testing.T) {
	f := newFixture(t)
	f.documents()
	c := &docapi.Client{BaseURL: f.ts.URL, APIKey: apiKey}

	r, err := c.Results(ctxT(t), docDone)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != docDone || r.Status != events.StatusFailed || len(r.Results) != 3 || len(r.Pending) != 0 {
		t.Fatalf("results %+v", r)
	}
	g := r.Results["gini"]
	if g.Status != events.StatusCompleted || g.VendorRef != "ref-gini" || g.Text != "text by gini" || g.CompletedAt.IsZero() ||
		len(g.Fields) != 2 || g.Fields[0].Currency != "EUR" || *g.Fields[0].Confidence != 0.97 ||
		len(g.Artifacts) != 2 || g.Artifacts[0].URL != "/v1/documents/"+docDone+"/artifacts/result.zip?vendor=gini" {
		t.Fatalf("gini: %+v", g)
	}
	if l := r.Results["laigo"]; len(l.Artifacts) != 1 || l.Artifacts[0].Size != 3<<20+17 {
		t.Fatalf("laigo: %+v", l)
	}
	d := r.Results["documine"]
	if d.Status != events.StatusFailed || len(d.Failures) != 1 || d.Failures[0].Error != "the file is encrypted" ||
		!d.Failures[0].Permanent || d.Failures[0].Attempts != 2 || len(d.Fields) != 0 {
		t.Fatalf("documine: %+v", d)
	}

	// No results yet: 200, an empty results object, the vendor still at work.
	code, _, body := f.get("/v1/documents/" + docWaiting + "/results")
	if code != 200 || !strings.Contains(string(body), `"results":{}`) || !strings.Contains(string(body), `"pending":["gini"]`) ||
		!strings.Contains(string(body), `"status":"submitted"`) {
		t.Fatalf("no results yet: %d %s", code, body)
	}

	f.problem("/v1/documents/01930000-0000-7000-8000-00000000ffff/results", 404, "no document")
	f.problem("/v1/documents/..%2F..%2Fetc/results", 404, "no document")
	f.problem("/v1/documents/"+docDone+"/results?fields=all", 400, "fields")
	var p *httpapi.Problem
	if _, err := c.Results(ctxT(t), "nope"); !errors.As(err, &p) || p.Status != 404 {
		t.Fatalf("client on an unknown id: %v", err)
	}

	// Events gone from the stream (aged out): what the state knows, and a note saying so.
	f.forget(events.Failed, "documine", docDone+".failed.documine")
	f.forget(events.Completed, "gini", docDone+".completed.gini")
	r, err = c.Results(ctxT(t), docDone)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Results["documine"]; len(d.Failures) != 1 || d.Failures[0].Error != "the file is encrypted" || d.Unavailable == "" {
		t.Fatalf("documine without its event: %+v", d)
	}
	if g := r.Results["gini"]; g.Status != events.StatusCompleted || g.VendorRef != "ref-gini" || len(g.Fields) != 0 || !strings.Contains(g.Unavailable, "max_age") {
		t.Fatalf("gini without its event: %+v", g)
	}
	f.problem("/v1/documents/"+docDone+"/artifacts/result.zip?vendor=gini", 410, "gini", "no longer")
}

// forget deletes an event from the stream, as max_age does.
func (f *fixture) forget(k events.Kind, vendor, id string) {
	f.t.Helper()
	subject, _ := f.bus.Names().Subject(k, vendor)
	ev, err := f.bus.FindEvent(ctxT(f.t), subject, events.HistoryEntry{EventID: id, Time: f.now})
	if err != nil {
		f.t.Fatal(err)
	}
	stream, err := f.bus.JetStream().Stream(ctxT(f.t), f.bus.Names().Stream())
	if err != nil {
		f.t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctxT(f.t), ev.Sequence); err != nil {
		f.t.Fatal(err)
	}
}

func TestArtifacts(t *testing.T) {
	f := newFixture(t)
	zip := f.documents()
	base := "/v1/documents/" + docDone + "/artifacts/"

	code, h, body := f.get(base + "result.zip?vendor=laigo")
	if code != 200 || !bytes.Equal(body, zip) || h.Get("Content-Type") != "application/zip" ||
		h.Get("Content-Length") != strconv.Itoa(len(zip)) || h.Get("Content-Disposition") != `attachment; filename=result.zip` ||
		h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("laigo's zip: %d %v (%d bytes)", code, h, len(body))
	}
	// A name that needs escaping, found whichever way the client escaped it.
	for _, p := range []string{url.PathEscape(oddName), strings.ReplaceAll(url.PathEscape(oddName), "%20", "+"), "report%20100%25%20%C2%ABok%C2%BB.txt"} {
		code, h, body = f.get(base + p)
		if strings.Contains(p, "+") {
			if code != 404 {
				t.Fatalf("%s: %d (a + in a path is a +)", p, code)
			}
			continue
		}
		if code != 200 || string(body) != "odd name" || h.Get("Content-Type") != "text/plain; charset=utf-8" ||
			!strings.Contains(h.Get("Content-Disposition"), "filename*=utf-8''report%20100%25%20%C2%ABok%C2%BB.txt") {
			t.Fatalf("%s: %d %v %q", p, code, h, body)
		}
	}
	// Two vendors have result.zip: which one must be said.
	f.problem(base+"result.zip", 409, "gini", "laigo", "?vendor=")

	c := &docapi.Client{BaseURL: f.ts.URL, APIKey: apiKey}
	var buf bytes.Buffer
	name, n, err := c.Download(ctxT(t), docapi.ArtifactPath(docDone, "result.zip", "gini"), &buf)
	if err != nil || name != "result.zip" || n != int64(len("zip of gini")) || buf.String() != "zip of gini" {
		t.Fatalf("download gini's: %q %d %q %v", name, n, buf.String(), err)
	}

	for _, c := range []struct {
		path  string
		code  int
		words []string
	}{
		{base + "nothing.zip", 404, []string{"nothing.zip"}},
		{base + "result.zip?vendor=documine", 404, []string{"documine"}}, // failed: no results
		{base + "result.zip?vendor=cradl", 404, []string{"cradl"}},
		{base + "result.zip?vendor=Bad%20Vendor", 400, []string{"vendor"}},
		{base + "result.zip?vendor=laigo&vendor=gini", 400, []string{"vendor"}},
		{base + "result.zip?download=1", 400, []string{"download"}},
		{base + "..%2F..%2Fcontent", 400, []string{"name"}},
		{base + "..%2Fresult.zip", 400, []string{"name"}},
		{base + "..", 404, nil},
		{base + "%2E%2E", 404, nil},
		{base + "result%00.zip", 400, []string{"name"}},
		{base + "result%0A.zip", 400, []string{"name"}},
		{base + strings.Repeat("a", 300), 400, []string{"name"}},
		{base + "%ff%fe", 400, []string{"name"}},
		{"/v1/documents/01930000-0000-7000-8000-00000000ffff/artifacts/result.zip", 404, []string{"no document"}},
	} {
		f.problem(c.path, c.code, c.words...)
	}
	// Paths echo does not route to the handler at all are no read either.
	if code, _, body := f.get(base + "../../content"); code == 200 {
		t.Fatalf("../../content: %d %.100s", code, body)
	}
}

func TestRejected(t *testing.T) {
	f := newFixture(t)
	f.documents()
	raw := []byte("From: x\r\n\r\n<html>not a document</html>")
	var ids []string
	for i := range 5 {
		id := "01930000-0000-7000-8000-0000000001" + strconv.Itoa(10+i)
		d := events.RejectedData{DocumentID: id, Source: events.SourceRef{Kind: "imap", Name: "invoices"}, Filename: "mail-" + strconv.Itoa(i) + ".eml",
			Reason: "malformed", Detail: "the mail's MIME structure is broken", RejectedAt: f.now, ContentType: "text/html"}
		if i%2 == 0 {
			info := f.put("rejected/"+id, raw)
			d.ObjectKey, d.Size = info.Key, info.Size
		}
		f.record(events.Rejected, "imap", id+".rejected", id, d)
		ids = append(ids, id)
	}
	c := &docapi.Client{BaseURL: f.ts.URL, APIKey: apiKey}
	var got []docapi.RejectedInput
	cursor := ""
	for range 10 {
		page, err := c.Rejected(ctxT(t), 2, cursor)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page.Rejected...)
		if page.NextCursor == nil {
			break
		}
		cursor = *page.NextCursor
	}
	if len(got) != 5 {
		t.Fatalf("got %d rejected inputs: %+v", len(got), got)
	}
	for i, in := range got {
		j := 4 - i // newest first
		if in.ID != ids[j] || in.Reason != "malformed" || in.Source.Name != "invoices" || in.RawKept != (j%2 == 0) ||
			in.RawKept && (in.ContentURL != "/v1/rejected/"+ids[j]+"/content" || in.Size != int64(len(raw))) || in.RejectedAt.IsZero() {
			t.Fatalf("rejected %d: %+v", i, in)
		}
	}

	code, h, body := f.get("/v1/rejected/" + ids[0] + "/content")
	if code != 200 || !bytes.Equal(body, raw) || h.Get("Content-Type") != "application/octet-stream" ||
		h.Get("Content-Disposition") != "attachment; filename=mail-0.eml" {
		t.Fatalf("raw bytes: %d %v %q", code, h, body)
	}
	f.problem("/v1/rejected/"+ids[1]+"/content", 404, "no raw bytes")
	f.problem("/v1/rejected/"+docDone+"/content", 404, "no rejected input") // a document, not a rejection
	f.problem("/v1/rejected/nope/content", 404, "no rejected input")
	f.problem("/v1/rejected?limit=0", 400, "limit")
	f.problem("/v1/rejected?limit=501", 400, "limit")
	f.problem("/v1/rejected?limit=x", 400, "limit")
	f.problem("/v1/rejected?cursor=abc", 400, "cursor")
	f.problem("/v1/rejected?cursor=1&cursor=2", 400, "cursor")
	f.problem("/v1/rejected?status=x", 400, "status")

	// Without the API key: nothing.
	res, err := http.Get(f.ts.URL + "/v1/rejected")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("no API key: %d", res.StatusCode)
	}
}
