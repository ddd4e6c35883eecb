package httpdrop_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/docapi"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/intake"
)

const apiKey = "test-key-0123456789abcdef"

type harness struct {
	t   testing.TB
	url string
	bus *events.Bus
}

func newHarness(t testing.TB, nc *nats.Conn, maxDoc int64) *harness {
	t.Helper()
	bus := eventstest.Bus(t, nc)
	in, err := intake.New(intake.Config{Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{ReadHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	drop, err := httpdrop.New(ctx, httpdrop.Config{
		Bus: bus, Intake: in, APIKeys: []string{"other-key-abcdefghijklmnop", apiKey},
		MaxDocumentBytes: maxDoc, MaxRequestBytes: 4 * maxDoc, MaxFiles: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	drop.Register(srv.Echo())
	docs, err := docapi.New(docapi.Config{Bus: bus, APIKeys: []string{"other-key-abcdefghijklmnop", apiKey}})
	if err != nil {
		t.Fatal(err)
	}
	docs.Register(srv.Echo())
	ts := httptest.NewServer(srv.Echo())
	t.Cleanup(ts.Close)
	return &harness{t: t, url: ts.URL, bus: bus}
}

// in returns the harness reporting to a subtest.
func (h *harness) in(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

func pdf(n int) []byte {
	b := bytes.Repeat([]byte("PDF body bytes. "), n/16+1)[:n]
	copy(b, "%PDF-1.7\n")
	return b
}

type file struct {
	name string
	body []byte
}

func multipartBody(t testing.TB, fields map[string]string, files ...file) (string, []byte) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, f.name))
		h.Set("Content-Type", "application/pdf") // a claim the server must not trust
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write(f.body)
	}
	w.Close()
	return w.FormDataContentType(), buf.Bytes()
}

type reply struct {
	status  int
	header  http.Header
	body    []byte
	problem httpapi.Problem
	resp    httpdrop.Response
}

func (h *harness) do(method, path, contentType string, body io.Reader, hdr map[string]string) reply {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := reply{status: res.StatusCode, header: res.Header, body: b}
	if res.StatusCode >= 400 {
		if ct := res.Header.Get("Content-Type"); ct != httpapi.ProblemContentType {
			h.t.Fatalf("error answered as %q, not problem+json: %s", ct, b)
		}
		if err := json.Unmarshal(b, &r.problem); err != nil || r.problem.Status != res.StatusCode || r.problem.Detail == "" {
			h.t.Fatalf("problem body %s (%v)", b, err)
		}
	} else if res.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(b, &r.resp); err != nil {
			h.t.Fatalf("202 body %s: %v", b, err)
		}
	}
	return r
}

func (h *harness) upload(fields map[string]string, files ...file) reply {
	ct, body := multipartBody(h.t, fields, files...)
	return h.do("POST", "/v1/documents", ct, bytes.NewReader(body), nil)
}

func (h *harness) events() []events.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := h.bus.JetStream().Stream(ctx, h.bus.Names().Stream())
	if err != nil {
		h.t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	var out []events.Event
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		ev, err := events.Decode(m.Data)
		if err != nil {
			h.t.Fatalf("stream holds a malformed event: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

func (h *harness) expectProblem(r reply, status int, mentions ...string) {
	h.t.Helper()
	if r.status != status {
		h.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	for _, m := range mentions {
		if !strings.Contains(r.problem.Detail, m) {
			h.t.Errorf("detail %q does not mention %q", r.problem.Detail, m)
		}
	}
}

func TestUploadEndToEnd(t *testing.T) {
	for name, connect := range map[string]func(testing.TB) *nats.Conn{"embedded": eventstest.Embedded, "external": eventstest.External} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, connect(t), 1<<20)
			data := pdf(100 << 10)
			r := h.upload(map[string]string{"customer": "ACME", "vendor": "gini"}, file{"invoice.pdf", data})
			if r.status != http.StatusAccepted || len(r.resp.Documents) != 1 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			doc := r.resp.Documents[0]
			sum := sha256.Sum256(data)
			if doc.SHA256 != hex.EncodeToString(sum[:]) || doc.Size != int64(len(data)) || doc.ContentType != "application/pdf" ||
				doc.StatusURL != "/v1/documents/"+doc.ID || r.header.Get("Location") != doc.StatusURL {
				t.Fatalf("accepted %+v, Location %q", doc, r.header.Get("Location"))
			}

			// The event is on the stream: the 202 came after its PubAck.
			evs := h.events()
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1", len(evs))
			}
			ev := evs[0]
			if ev.Type != "ingest.document.received" || ev.Subject != doc.ID || ev.SpecVersion != "1.0" ||
				ev.Source != "/sources/http/api" || ev.ID == "" || ev.Time.IsZero() {
				t.Fatalf("event %+v", ev)
			}
			var data2 events.ReceivedData
			if err := ev.DecodeData(&data2); err != nil {
				t.Fatal(err)
			}
			if data2.Filename != "invoice.pdf" || data2.SHA256 != doc.SHA256 || data2.Metadata["customer"] != "ACME" ||
				len(data2.Vendors) != 1 || data2.Vendors[0] != "gini" || data2.ObjectKey == "" || data2.Source.Kind != "http" {
				t.Fatalf("event data %+v", data2)
			}

			// Content round-trips byte for byte.
			c := h.do("GET", "/v1/documents/"+doc.ID+"/content", "", nil, nil)
			if c.status != http.StatusOK || !bytes.Equal(c.body, data) || c.header.Get("Content-Type") != "application/pdf" ||
				c.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(c.header.Get("Content-Disposition"), "invoice.pdf") {
				t.Fatalf("content: status %d, %d bytes, headers %v", c.status, len(c.body), c.header)
			}

			// Status shows it.
			s := h.do("GET", "/v1/documents/"+doc.ID, "", nil, nil)
			var st events.Document
			if err := json.Unmarshal(s.body, &st); err != nil || s.status != 200 {
				t.Fatalf("status %d %s", s.status, s.body)
			}
			if st.Status != events.StatusReceived || st.Filename != "invoice.pdf" || st.Size != int64(len(data)) ||
				st.Source.Name != "api" || len(st.History) != 1 {
				t.Fatalf("state %+v", st)
			}
		})
	}
}

func TestSeveralFilesOneRequest(t *testing.T) {
	h := newHarness(t, eventstest.Embedded(t), 1<<20)
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 100)...)
	r := h.upload(nil, file{"a.pdf", pdf(1000)}, file{"b.png", png}, file{"c.txt", []byte("hello\n")})
	if r.status != 202 || len(r.resp.Documents) != 3 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	want := []string{"application/pdf", "image/png", "text/plain; charset=utf-8"}
	for i, d := range r.resp.Documents {
		if d.ContentType != want[i] {
			t.Errorf("file %d: %s, want %s", i, d.ContentType, want[i])
		}
	}
	if n := len(h.events()); n != 3 {
		t.Fatalf("%d events", n)
	}
	// More than max_files (3) is refused, and nothing of it is kept.
	r = h.upload(nil, file{"1.pdf", pdf(100)}, file{"2.pdf", pdf(100)}, file{"3.pdf", pdf(100)}, file{"4.pdf", pdf(100)})
	h.expectProblem(r, 400, "more than 3 files")
	if n := len(h.events()); n != 3 {
		t.Fatalf("refused request published: %d events", n)
	}
}

func TestRawBodyUpload(t *testing.T) {
	h := newHarness(t, eventstest.Embedded(t), 1<<20)
	q := url.Values{"filename": {"scan.pdf"}, "ticket": {"T-7"}, "route": {"invoices"}}
	r := h.do("POST", "/v1/documents?"+q.Encode(), "application/x-www-form-urlencoded", bytes.NewReader(pdf(5000)), nil)
	if r.status != 202 || r.resp.Documents[0].Filename != "scan.pdf" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var d events.ReceivedData
	h.events()[0].DecodeData(&d)
	if d.Metadata["ticket"] != "T-7" || d.Route != "invoices" || d.Metadata["filename"] != "" {
		t.Fatalf("data %+v", d)
	}
	// Without a name, one is made from the id and the sniffed type.
	r = h.do("POST", "/v1/documents", "", strings.NewReader("just some text\n"), nil)
	if r.status != 202 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if got := r.resp.Documents[0]; got.Filename != "document-"+got.ID+".txt" {
		t.Fatalf("generated name %q", got.Filename)
	}
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t, eventstest.Embedded(t), 1<<20)
	for name, auth := range map[string]string{
		"missing":       "",
		"wrong key":     "Bearer not-the-key-0123456789",
		"wrong scheme":  "Basic " + apiKey,
		"empty bearer":  "Bearer ",
		"key as prefix": "Bearer " + apiKey + "x",
	} {
		t.Run(name, func(t *testing.T) {
			h := h.in(t)
			ct, body := multipartBody(t, nil, file{"a.pdf", pdf(100)})
			hdr := map[string]string{"Authorization": auth}
			r := h.do("POST", "/v1/documents", ct, bytes.NewReader(body), hdr)
			h.expectProblem(r, 401)
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
			h.expectProblem(h.do("GET", "/v1/documents/x", "", nil, hdr), 401)
		})
	}
	if n := len(h.events()); n != 0 {
		t.Fatalf("unauthenticated uploads published %d events", n)
	}
}

func TestBadInput(t *testing.T) {
	h := newHarness(t, eventstest.Embedded(t), 64<<10)
	ct, good := multipartBody(t, map[string]string{"note": "x"}, file{"a.pdf", pdf(30 << 10)})
	zipBytes := append([]byte("PK\x03\x04"), make([]byte, 200)...)
	noFileCT, noFile := multipartBody(t, map[string]string{"a": "b"})
	emptyCT, empty := multipartBody(t, nil, file{"e.pdf", nil})
	cases := []struct {
		name     string
		ct       string
		body     []byte
		hdr      map[string]string
		status   int
		mentions []string
	}{
		{"empty body", "application/pdf", nil, nil, 400, []string{"empty"}},
		{"truncated multipart", ct, good[:len(good)/2], nil, 400, []string{"cut off"}},
		{"multipart without closing boundary", ct, good[:len(good)-10], nil, 400, nil},
		{"multipart garbage", ct, []byte("this is not multipart at all"), nil, 400, []string{"multipart"}},
		{"multipart without boundary", "multipart/form-data", good, nil, 400, []string{"boundary"}},
		{"multipart/mixed", "multipart/mixed; boundary=x", good, nil, 400, []string{"multipart/mixed"}},
		{"no file part", noFileCT, noFile, nil, 400, []string{"named file"}},
		{"zip", "application/pdf", zipBytes, nil, 415, []string{"application/zip", "accepted are PDF"}},
		{"html", "text/plain", []byte("<html><body>invoice</body></html>"), nil, 415, []string{"text/html"}},
		{"empty file part", emptyCT, empty, nil, 400, []string{"file 1", "empty"}},
		{"oversize raw body", "application/pdf", pdf(64<<10 + 1), nil, 413, []string{"64 KiB"}},
		{"bad vendor", "application/pdf", pdf(100), nil, 400, []string{"vendor"}},
		{"bad idempotency key", "application/pdf", pdf(100), map[string]string{"Idempotency-Key": "has spaces in it"}, 400, []string{"Idempotency-Key"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := h.in(t)
			path := "/v1/documents"
			if c.name == "bad vendor" {
				path += "?vendor=Gini!"
			}
			r := h.do("POST", path, c.ct, bytes.NewReader(c.body), c.hdr)
			h.expectProblem(r, c.status, c.mentions...)
			if c.status == 413 && r.problem.Limit != 64<<10 {
				t.Errorf("limit_bytes %d", r.problem.Limit)
			}
		})
	}
	if n := len(h.events()); n != 0 {
		t.Fatalf("bad input published %d events", n)
	}
	// The service is still fine.
	if r := h.upload(nil, file{"ok.pdf", pdf(100)}); r.status != 202 {
		t.Fatalf("after bad input: %d %s", r.status, r.body)
	}
}

func TestOneBadFileRefusesTheWholeRequest(t *testing.T) {
	h := newHarness(t, eventstest.Embedded(t), 1<<20)
	r := h.upload(nil, file{"good.pdf", pdf(2000)}, file{"bad.zip", append([]byte("PK\x03\x04"), make([]byte, 50)...)})
	h.expectProblem(r, 415, "file 2 (bad.zip)", "application/zip")
	if n := len(h.events()); n != 0 {
		t.Fatalf("%d events", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obs, _ := h.bus.JetStream().ObjectStore(ctx, h.bus.Names().DocumentsBucket())
	if list, err := obs.List(ctx); err == nil && len(list) > 0 {
		t.Fatalf("the good file of a refused request is still stored: %v", list[0].Name)
	} else if err != nil && err != jetstream.ErrNoObjectsFound {
		t.Fatal(err)
	}
}

// endless is a body that never ends: a server that buffered before checking would never answer.
type endless struct{ sent atomic.Int64 }

func (e *endless) Read(p []byte) (int, error) {
	if e.sent.Load() == 0 && len(p) >= 9 {
		copy(p, "%PDF-1.7\n")
	}
	e.sent.Add(int64(len(p)))
	return len(p), nil
}

func TestSizeLimitIsEnforcedWhileStreaming(t *testing.T) {
	h := newHarness(t, eventstest.Embedded(t), 256<<10)
	// Chunked transfer: no Content-Length to refuse up front.
	r := h.do("POST", "/v1/documents?filename=huge.pdf", "application/pdf", &endless{}, nil)
	h.expectProblem(r, 413, "256 KiB")

	// The same inside a multipart part.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, _ := mw.CreateFormFile("file", "huge.pdf")
		_, err := io.Copy(fw, &endless{})
		pw.CloseWithError(err)
	}()
	r = h.do("POST", "/v1/documents", mw.FormDataContentType(), pr, nil)
	h.expectProblem(r, 413, "file 1 (huge.pdf)", "256 KiB")

	// A declared Content-Length over the request limit is refused before reading.
	req, _ := http.NewRequest("POST", h.url+"/v1/documents", &endless{})
	req.ContentLength = 10 << 30
	req.Header.Set("Authorization", "Bearer "+apiKey)
	res, err := http.DefaultClient.Do(req)
	if err == nil {
		res.Body.Close()
		if res.StatusCode != 413 {
			t.Fatalf("10 GiB Content-Length: %d", res.StatusCode)
		}
	}
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t, eventstest.Embedded(t), 1<<20)
	hdr := map[string]string{"Idempotency-Key": "order-4711"}
	send := func(fields map[string]string, f file) reply {
		ct, body := multipartBody(t, fields, f) // a new boundary every time, as curl does
		return h.do("POST", "/v1/documents", ct, bytes.NewReader(body), hdr)
	}
	first := send(map[string]string{"k": "v"}, file{"a.pdf", pdf(3000)})
	again := send(map[string]string{"k": "v"}, file{"a.pdf", pdf(3000)})
	if first.status != 202 || again.status != 202 {
		t.Fatalf("%d %d", first.status, again.status)
	}
	if first.resp.Documents[0].ID != again.resp.Documents[0].ID || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat got %+v, first %+v", again.resp, first.resp)
	}
	if n := len(h.events()); n != 1 {
		t.Fatalf("%d events for one idempotent request", n)
	}
	// The same key for other content is a client error.
	h.expectProblem(send(map[string]string{"k": "v"}, file{"a.pdf", pdf(3001)}), 422, "different request")
	h.expectProblem(send(map[string]string{"k": "other"}, file{"a.pdf", pdf(3000)}), 422)
	// Keys are per client: the other API key may use the same one.
	ct, body := multipartBody(t, nil, file{"b.pdf", pdf(10)})
	r := h.do("POST", "/v1/documents", ct, bytes.NewReader(body), map[string]string{"Idempotency-Key": "order-4711", "Authorization": "Bearer other-key-abcdefghijklmnop"})
	if r.status != 202 || r.resp.Documents[0].ID == first.resp.Documents[0].ID {
		t.Fatalf("other client: %d %s", r.status, r.body)
	}
	// A failed request frees its key.
	h.expectProblem(send(nil, file{"z.zip", []byte("PK\x03\x04....")}), 415)
	hdr["Idempotency-Key"] = "order-4712"
	h.expectProblem(send(nil, file{"z.zip", []byte("PK\x03\x04....")}), 415)
	if r := send(nil, file{"ok.pdf", pdf(10)}); r.status != 202 {
		t.Fatalf("key not released after a failure: %d %s", r.status, r.body)
	}
}

func TestIdempotencyKeyWhileInFlight(t *testing.T) {
	nc := eventstest.Embedded(t)
	h := newHarness(t, nc, 1<<20)
	pr, pw := io.Pipe()
	done := make(chan reply)
	go func() {
		done <- h.do("POST", "/v1/documents?filename=slow.pdf", "application/pdf", pr, map[string]string{"Idempotency-Key": "slow-1"})
	}()
	pw.Write(pdf(1000)) // the first request is under way, its body not finished
	// Its claim must be in the store before the repeat is sent: on a busy machine the repeat
	// could otherwise be the first to claim the key (and rightly get 202).
	js, _ := jetstream.New(nc)
	eventstest.WaitFor(t, 10*time.Second, "the first request's claim in the idempotency bucket", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, h.bus.Names().Bucket("idempotency"))
		if err != nil {
			return false
		}
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return false
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		return n == 1
	})
	second := h.do("POST", "/v1/documents?filename=slow.pdf", "application/pdf", bytes.NewReader(pdf(1000)), map[string]string{"Idempotency-Key": "slow-1"})
	if second.status != http.StatusConflict {
		t.Fatalf("a repeat while the first is in flight: %d %s, want 409", second.status, second.body)
	}
	if second.header.Get("Retry-After") == "" {
		t.Error("409 without Retry-After")
	}
	pw.Close()
	if first := <-done; first.status != 202 {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
}

func TestDocumentLookups(t *testing.T) {
	h := newHarness(t, eventstest.Embedded(t), 1<<20)
	for _, id := range []string{"0192aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee", "..%2F..%2Fetc%2Fpasswd", "a.b", strings.Repeat("x", 300)} {
		h.expectProblem(h.do("GET", "/v1/documents/"+id, "", nil, nil), 404, "no document")
		h.expectProblem(h.do("GET", "/v1/documents/"+id+"/content", "", nil, nil), 404)
	}
	h.expectProblem(h.do("GET", "/v1/nothing", "", nil, nil), 404, "no endpoint")
	h.expectProblem(h.do("DELETE", "/v1/documents", "", nil, nil), 404, "DELETE")
}

func TestHostileFilenames(t *testing.T) {
	h := newHarness(t, eventstest.Embedded(t), 1<<20)
	cases := map[string]string{
		"../../etc/passwd":                    "passwd",
		"..\\..\\windows\\system32\\evil.pdf": "evil.pdf",
		"nul\x00byte.pdf":                     "nulbyte.pdf",
		"rtl\u202efdp.exe":                    "rtlfdp.exe",
		strings.Repeat("long", 512) + ".pdf":  "",
		"\"quoted\"; filename=other.pdf":      "\"quoted\"; filename=other.pdf",
		"%2e%2e%2f%2e%2e%2fescaped.pdf":       "%2e%2e%2f%2e%2e%2fescaped.pdf",
		"<script>alert(1)</script>.pdf":       "script>.pdf",
	}
	for sent, want := range cases {
		r := h.do("POST", "/v1/documents?filename="+url.QueryEscape(sent), "application/pdf", bytes.NewReader(pdf(500)), nil)
		if r.status != 202 {
			t.Fatalf("%q: %d %s", sent, r.status, r.body)
		}
		got := r.resp.Documents[0].Filename
		if want != "" && got != want {
			t.Errorf("%q stored as %q, want %q", sent, got, want)
		}
		if len(got) > 200 || strings.ContainsAny(got, "/\\\x00") {
			t.Errorf("%q stored as unsafe %q", sent, got)
		}
		c := h.do("GET", "/v1/documents/"+r.resp.Documents[0].ID+"/content", "", nil, nil)
		if c.status != 200 || strings.ContainsAny(c.header.Get("Content-Disposition"), "\r\n") {
			t.Errorf("%q: content %d, disposition %q", sent, c.status, c.header.Get("Content-Disposition"))
		}
	}
}

func TestMetadataLimits(t *testing.T) {
	h := newHarness(t, eventstest.Embedded(t), 1<<20)
	cases := []struct {
		fields  map[string]string
		mention string
	}{
		{map[string]string{"bad key!": "v"}, "field name"},
		{map[string]string{"k": strings.Repeat("v", 5000)}, "longer than 4096"},
		{map[string]string{"k": "\xff\xfe"}, "UTF-8"},
		{map[string]string{"route": "Not Valid"}, "route"},
	}
	for _, c := range cases {
		h.expectProblem(h.upload(c.fields, file{"a.pdf", pdf(100)}), 400, c.mention)
	}
	many := map[string]string{}
	for i := range 65 {
		many[fmt.Sprintf("f%d", i)] = "v"
	}
	h.expectProblem(h.upload(many, file{"a.pdf", pdf(100)}), 400)
	if n := len(h.events()); n != 0 {
		t.Fatalf("%d events", n)
	}
}
