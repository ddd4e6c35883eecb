package console_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/ingest-dev/ingest/console"
	"github.com/ingest-dev/ingest/docindex"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/lease"
)

const apiKey = "console-test-key-0123456789abcdef"

// env is a console on a real embedded NATS with a real index, a fake retry and a clock the test
// moves.
type env struct {
	t       *testing.T
	bus     *events.Bus
	ix      *docindex.Index
	srv     *httptest.Server
	con     *console.Console
	now     atomic.Int64 // Unix ns
	mu      sync.Mutex
	retried []string // id/vendor the fake retry was called with
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, eventstest.Embedded(t))
}

func newEnvOn(t *testing.T, nc *nats.Conn) *env {
	t.Helper()
	e := &env{t: t, bus: eventstest.Bus(t, nc)}
	e.now.Store(time.Now().UnixNano())
	var err error
	e.ix, err = docindex.Open(context.Background(), docindex.Config{Bus: e.bus, Path: filepath.Join(t.TempDir(), "docs.db")})
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, e.ix.Run)
	e.con, e.srv = e.start("test-instance")
	return e
}

// start opens a console (another instance, or the same after a restart) over the env's bus.
func (e *env) start(self string) (*console.Console, *httptest.Server) {
	e.t.Helper()
	con, err := console.New(context.Background(), console.Config{
		Bus: e.bus, Index: e.ix, APIKeys: []string{"another-key-0123456789abcdef", apiKey},
		Retry: func(_ context.Context, id, vendor string) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.retried = append(e.retried, id+"/"+vendor)
			if vendor == "cradl" {
				return errors.New("cradl refuses: the document is gone")
			}
			return nil
		},
		Sources: []console.Source{{Kind: "http", Name: "api", Where: "POST /v1/documents"},
			{Kind: "imap", Name: "invoices", Where: "in@example.com/INBOX", Lease: "imap.invoices",
				Health:   func() error { return errors.New("login refused") },
				LastPass: func() time.Time { return time.Date(2026, 12, 3, 9, 30, 0, 0, time.UTC) }}},
		Vendors: []console.Vendor{{Name: "gini", Sandbox: true, BaseURL: "http://127.0.0.1:1", Concurrency: 4, Timeout: time.Minute},
			{Name: "laigo", RateLimit: 2, BaseURL: "https://api.example.com"}},
		Self: self,
		Now:  func() time.Time { return time.Unix(0, e.now.Load()) },
	})
	if err != nil {
		e.t.Fatal(err)
	}
	srv, err := httpapi.New(httpapi.Config{})
	if err != nil {
		e.t.Fatal(err)
	}
	con.Register(srv.Echo())
	ts := httptest.NewServer(srv.Echo())
	e.t.Cleanup(ts.Close)
	e.t.Cleanup(con.Close)
	return con, ts
}

// client is a browser: cookies kept, redirects not followed (the tests look at them).
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type answer struct {
	code int
	h    http.Header
	body string
}

func (e *env) do(c *http.Client, method, path string, form url.Values, hdr map[string]string) answer {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	if !strings.HasPrefix(path, "http://") {
		path = e.srv.URL + path
	}
	req, _ := http.NewRequest(method, path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, html string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no csrf field in %s", html)
	}
	return m[1]
}

// signIn signs c in and returns the session's CSRF token.
func (e *env) signIn(c *http.Client) string {
	e.t.Helper()
	a := e.do(c, "GET", "/ui/login", nil, nil)
	a = e.do(c, "POST", "/ui/login", url.Values{"csrf": {csrfOf(e.t, a.body)}, "key": {apiKey}, "next": {"/ui/"}}, nil)
	if a.code != http.StatusSeeOther || a.h.Get("Location") != "/ui/" {
		e.t.Fatalf("sign-in: %d %v %s", a.code, a.h, a.body)
	}
	a = e.do(c, "GET", "/ui/", nil, nil)
	if a.code != http.StatusOK {
		e.t.Fatalf("overview after sign-in: %d %s", a.code, a.body)
	}
	return csrfOf(e.t, a.body)
}

// record publishes a document event and folds it into the state, as producers do.
func (e *env) record(k events.Kind, qualifier, id string, at time.Time, data any) {
	e.t.Helper()
	subject, err := e.bus.Names().Subject(k, qualifier)
	if err != nil {
		e.t.Fatal(err)
	}
	ev, err := events.NewEvent(k, id+"."+string(k)+"."+qualifier, "/test", id, at, data)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := e.bus.Record(context.Background(), subject, ev); err != nil {
		e.t.Fatal(err)
	}
}

const hostileName = `<script>alert(1)</script>.pdf`

// addDocument stores a PDF with a hostile name and metadata, completed at gini (with fields)
// and failed at laigo.
func (e *env) addDocument() (string, []byte) {
	e.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	content := append([]byte("%PDF-1.7\n"), bytes.Repeat([]byte("x"), 300<<10)...)
	info, err := e.bus.Blobs().Put(context.Background(), "documents/"+id, bytes.NewReader(content), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	at := time.Now().UTC()
	e.record(events.Received, "http", id, at, events.ReceivedData{DocumentID: id, Source: events.SourceRef{Kind: "http", Name: "api"},
		Filename: hostileName, ContentType: "application/pdf", Size: info.Size, SHA256: info.SHA256, ObjectKey: info.Key,
		Metadata: map[string]string{"note": `"><img src=x onerror=alert(2)>`}, Vendors: []string{"gini", "laigo"}, ReceivedAt: at})
	conf := 0.97
	for _, v := range []string{"gini", "laigo"} {
		e.record(events.Submitted, v, id, at.Add(time.Second), events.SubmittedData{DocumentID: id, Vendor: v, VendorRef: "ref-" + v})
	}
	e.record(events.Completed, "gini", id, at.Add(2*time.Second), events.CompletedData{DocumentID: id, Vendor: "gini", VendorRef: "ref-gini",
		Fields: []events.Field{{Name: "total", Value: "24.99", Currency: "EUR", Confidence: &conf},
			{Name: "supplier", Value: `ACME <b>&</b> Sons`}}})
	e.record(events.Failed, "laigo", id, at.Add(3*time.Second), events.FailedData{DocumentID: id, Vendor: "laigo",
		Error: "the vendor said <no>", Permanent: true})
	return id, content
}

func (e *env) indexed(id string) {
	e.t.Helper()
	eventstest.WaitFor(e.t, 10*time.Second, "the index to have the document", func() bool {
		p, err := e.ix.List(context.Background(), docindex.Query{Q: "alert"})
		if err != nil {
			return false
		}
		for _, raw := range p.Documents {
			if bytes.Contains(raw, []byte(id)) && bytes.Contains(raw, []byte(`"failed"`)) {
				return true
			}
		}
		return false
	})
}

func TestSignedOutVisitorsGetNothing(t *testing.T) {
	e := newEnv(t)
	id, _ := e.addDocument()
	c := e.client()
	for _, tc := range []struct {
		method, path string
		want         int
		location     string
	}{
		{"GET", "/ui/", http.StatusSeeOther, "/ui/login?next=%2Fui%2F"},
		{"GET", "/ui", http.StatusMovedPermanently, "/ui/"},
		{"GET", "/ui/documents?status=failed", http.StatusSeeOther, "/ui/login?next=%2Fui%2Fdocuments%3Fstatus%3Dfailed"},
		{"GET", "/ui/documents/" + id, http.StatusSeeOther, ""},
		{"GET", "/ui/documents/" + id + "/content", http.StatusSeeOther, ""},
		{"GET", "/ui/sources", http.StatusSeeOther, ""},
		{"GET", "/ui/vendors", http.StatusSeeOther, ""},
		{"GET", "/ui/events", http.StatusUnauthorized, ""},
		{"GET", "/ui/no-such-page", http.StatusUnauthorized, ""},
		{"POST", "/ui/logout", http.StatusUnauthorized, ""},
		{"POST", "/ui/documents/" + id + "/retry", http.StatusUnauthorized, ""},
		{"GET", "/ui/static/console.css", http.StatusOK, ""}, // the sign-in page's style
		{"GET", "/ui/static/../templates/layout.html", http.StatusNotFound, ""},
	} {
		a := e.do(c, tc.method, tc.path, url.Values{}, nil)
		if a.code != tc.want || (tc.location != "" && a.h.Get("Location") != tc.location) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, a.code, a.h.Get("Location"), tc.want, tc.location)
		}
		if tc.method == "GET" && strings.Contains(a.body, id) {
			t.Errorf("%s %s: the answer names the document", tc.method, tc.path)
		}
	}
	// A made-up cookie is no session.
	u, _ := url.Parse(e.srv.URL + "/ui/")
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "ingest_session", Value: strings.Repeat("A", 43), Path: "/ui"}})
	if a := e.do(c, "GET", "/ui/", nil, nil); a.code != http.StatusSeeOther {
		t.Errorf("forged cookie: %d", a.code)
	}
	if e.retriedCalls() != 0 {
		t.Error("retry called without a session")
	}
}

func (e *env) retriedCalls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.retried)
}

func TestSignIn(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name     string
		key      string
		csrf     func(form string) string // the form field
		noCookie bool
		origin   string
		want     int
		location string
	}{
		{name: "right key", key: apiKey, want: http.StatusSeeOther, location: "/ui/documents"},
		{name: "the other key", key: "another-key-0123456789abcdef", want: http.StatusSeeOther, location: "/ui/documents"},
		{name: "wrong key", key: apiKey + "x", want: http.StatusUnauthorized},
		{name: "no key", key: "", want: http.StatusUnauthorized},
		{name: "prefix of a key", key: apiKey[:10], want: http.StatusUnauthorized},
		{name: "no csrf field", key: apiKey, csrf: func(string) string { return "" }, want: http.StatusForbidden},
		{name: "wrong csrf field", key: apiKey, csrf: func(f string) string { return f + "x" }, want: http.StatusForbidden},
		{name: "no csrf cookie", key: apiKey, noCookie: true, want: http.StatusForbidden},
		{name: "posted from elsewhere", key: apiKey, origin: "https://evil.example", want: http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.client()
			a := e.do(c, "GET", "/ui/login?next=%2Fui%2Fdocuments", nil, nil)
			if a.code != http.StatusOK || !strings.Contains(a.body, `name="key"`) {
				t.Fatalf("login page: %d %s", a.code, a.body)
			}
			token := csrfOf(t, a.body)
			if tc.csrf != nil {
				token = tc.csrf(token)
			}
			if tc.noCookie {
				c.Jar, _ = cookiejar.New(nil)
			}
			hdr := map[string]string{}
			if tc.origin != "" {
				hdr["Origin"] = tc.origin
			}
			a = e.do(c, "POST", "/ui/login", url.Values{"csrf": {token}, "key": {tc.key}, "next": {"/ui/documents"}}, hdr)
			if a.code != tc.want || a.h.Get("Location") != tc.location {
				t.Fatalf("%d %q, want %d %q: %s", a.code, a.h.Get("Location"), tc.want, tc.location, a.body)
			}
			signedIn := e.do(c, "GET", "/ui/", nil, nil).code == http.StatusOK
			if signedIn != (tc.want == http.StatusSeeOther) {
				t.Fatalf("signed in: %v", signedIn)
			}
			if tc.want == http.StatusUnauthorized && (!strings.Contains(a.body, "not a valid API key") || !strings.Contains(a.body, `name="csrf"`)) {
				t.Fatalf("a wrong key gets the form again with an error: %s", a.body)
			}
			if tc.want != http.StatusSeeOther {
				return
			}
			var session *http.Cookie
			for _, ck := range a.cookies() {
				if ck.Name == "ingest_session" {
					session = ck
				}
			}
			if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/ui" ||
				session.Secure || session.MaxAge != int((12*time.Hour)/time.Second) {
				t.Fatalf("session cookie %+v", session)
			}
		})
	}
}

func (a answer) cookies() []*http.Cookie {
	return (&http.Response{Header: a.h}).Cookies()
}

func TestSignInGoesBackOnlyToTheConsole(t *testing.T) {
	e := newEnv(t)
	for next, want := range map[string]string{
		"/ui/documents?status=failed": "/ui/documents?status=failed",
		"//evil.example/":             "/ui/",
		"/ui//evil.example":           "/ui/",
		"https://evil.example/ui/":    "/ui/",
		"/ui/\\evil":                  "/ui/",
		"/other":                      "/ui/",
		"/ui/login":                   "/ui/",
	} {
		c := e.client()
		a := e.do(c, "GET", "/ui/login", nil, nil)
		a = e.do(c, "POST", "/ui/login", url.Values{"csrf": {csrfOf(t, a.body)}, "key": {apiKey}, "next": {next}}, nil)
		if a.code != http.StatusSeeOther || a.h.Get("Location") != want {
			t.Errorf("next %q: %d → %q, want %q", next, a.code, a.h.Get("Location"), want)
		}
	}
}

func TestPagesCarryTheSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	id, _ := e.addDocument()
	e.indexed(id)
	c := e.client()
	e.signIn(c)
	for _, path := range []string{"/ui/login", "/ui/", "/ui/documents", "/ui/documents/" + id, "/ui/sources", "/ui/vendors"} {
		a := e.do(c, "GET", path, nil, nil)
		csp := a.h.Get("Content-Security-Policy")
		if path != "/ui/login" && a.code != http.StatusOK {
			t.Errorf("%s: %d %s", path, a.code, a.body)
		}
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			a.h.Get("X-Frame-Options") != "DENY" || a.h.Get("Cache-Control") != "no-store" || a.h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", path, a.h)
		}
		// No inline script: every <script> loads the console's file.
		if a.code == http.StatusOK && (strings.Contains(a.body, "<script>") || strings.Count(a.body, "<script") != 1) {
			t.Errorf("%s: inline script in %s", path, a.body)
		}
	}
}

func TestEveryPostNeedsTheSessionsToken(t *testing.T) {
	e := newEnv(t)
	id, _ := e.addDocument()
	c := e.client()
	token := e.signIn(c)
	other := e.client()
	otherToken := e.signIn(other) // another session's token is no good here
	for _, tc := range []struct {
		name, path string
		form       url.Values
		hdr        map[string]string
		want       int
	}{
		{"retry without a token", "/ui/documents/" + id + "/retry", url.Values{"vendor": {"laigo"}}, nil, http.StatusForbidden},
		{"retry with a wrong token", "/ui/documents/" + id + "/retry", url.Values{"vendor": {"laigo"}, "csrf": {token + "x"}}, nil, http.StatusForbidden},
		{"retry with another session's token", "/ui/documents/" + id + "/retry", url.Values{"vendor": {"laigo"}, "csrf": {otherToken}}, nil, http.StatusForbidden},
		{"retry from another site", "/ui/documents/" + id + "/retry", url.Values{"vendor": {"laigo"}, "csrf": {token}},
			map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"sign-out without a token", "/ui/logout", url.Values{}, nil, http.StatusForbidden},
		{"a post elsewhere without a token", "/ui/anything", url.Values{}, nil, http.StatusForbidden},
		{"a post elsewhere with the token", "/ui/anything", url.Values{"csrf": {token}}, nil, http.StatusNotFound},
		{"a form that is not url-encoded", "/ui/logout", nil, map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, http.StatusBadRequest},
		{"retry with a bad vendor", "/ui/documents/" + id + "/retry", url.Values{"vendor": {"<b>"}, "csrf": {token}}, nil, http.StatusBadRequest},
		{"retry of a bad id", "/ui/documents/..%2F..%2Fetc/retry", url.Values{"vendor": {"laigo"}, "csrf": {token}}, nil, http.StatusNotFound},
		{"retry the vendor refuses", "/ui/documents/" + id + "/retry", url.Values{"vendor": {"cradl"}, "csrf": {token}}, nil, http.StatusConflict},
		{"retry with the token in the header", "/ui/documents/" + id + "/retry", url.Values{"vendor": {"laigo"}},
			map[string]string{"X-CSRF-Token": token}, http.StatusSeeOther},
		{"retry", "/ui/documents/" + id + "/retry", url.Values{"vendor": {"laigo"}, "csrf": {token}}, nil, http.StatusSeeOther},
	} {
		a := e.do(c, "POST", tc.path, tc.form, tc.hdr)
		if a.code != tc.want {
			t.Errorf("%s: %d, want %d: %s", tc.name, a.code, tc.want, a.body)
		}
	}
	e.mu.Lock()
	got := strings.Join(e.retried, ",")
	e.mu.Unlock()
	if want := id + "/cradl," + id + "/laigo," + id + "/laigo"; got != want {
		t.Errorf("retries %s, want %s", got, want)
	}
	// Signing out ends the session here, not the other one.
	if a := e.do(c, "POST", "/ui/logout", url.Values{"csrf": {token}}, nil); a.code != http.StatusSeeOther || a.h.Get("Location") != "/ui/login" {
		t.Fatalf("sign-out: %d %v", a.code, a.h)
	}
	if a := e.do(c, "GET", "/ui/", nil, nil); a.code != http.StatusSeeOther {
		t.Errorf("after sign-out: %d", a.code)
	}
	if a := e.do(other, "GET", "/ui/", nil, nil); a.code != http.StatusOK {
		t.Errorf("the other session after this one signed out: %d", a.code)
	}
}

func TestSessionsLastTheirTimeOnEveryInstance(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.signIn(c)
	// Another instance (or this one restarted) knows the session: it is in the bucket.
	_, srv2 := e.start("test-instance-2")
	req, _ := http.NewRequest("GET", srv2.URL+"/ui/", nil)
	u, _ := url.Parse(e.srv.URL + "/ui/")
	for _, ck := range c.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("the session on another instance: %d", res.StatusCode)
	}
	e.now.Add(int64(11 * time.Hour))
	if a := e.do(c, "GET", "/ui/", nil, nil); a.code != http.StatusOK {
		t.Fatalf("after 11 h: %d", a.code)
	}
	e.now.Add(int64(time.Hour))
	if a := e.do(c, "GET", "/ui/vendors", nil, nil); a.code != http.StatusSeeOther || !strings.HasPrefix(a.h.Get("Location"), "/ui/login") {
		t.Fatalf("after 12 h: %d %v", a.code, a.h)
	}
	if a := e.do(c, "GET", "/ui/events", nil, nil); a.code != http.StatusUnauthorized {
		t.Fatalf("events after 12 h: %d", a.code)
	}
}

func TestHostileInputIsRefusedOrEscaped(t *testing.T) {
	e := newEnv(t)
	id, _ := e.addDocument()
	e.indexed(id)
	c := e.client()
	e.signIn(c)
	for _, tc := range []struct {
		path string
		want int
		says string
	}{
		{"/ui/documents?status=%3Cscript%3E", http.StatusBadRequest, "status &#34;&lt;script&gt;&#34; is not one of"},
		{"/ui/documents?%3Cscript%3E=1", http.StatusBadRequest, "unknown parameter &#34;&lt;script&gt;&#34;"},
		{"/ui/documents?limit=100000", http.StatusBadRequest, "limit"},
		{"/ui/documents?cursor=%27%20OR%201%3D1", http.StatusBadRequest, "cursor"},
		{"/ui/documents?q=ab", http.StatusBadRequest, "too short"},
		{"/ui/documents?since=yesterday", http.StatusBadRequest, "since"},
		{"/ui/documents?status=failed&status=completed", http.StatusBadRequest, "given 2 times"},
		{"/ui/documents?vendor=GINI%00", http.StatusBadRequest, "vendor"},
		{"/ui/documents?q=" + url.QueryEscape(`"OR 1=1 --"`), http.StatusOK, "No documents match"},
		{"/ui/documents?q=alert&status=&vendor=", http.StatusOK, "&lt;script&gt;alert(1)&lt;/script&gt;.pdf"},
		{"/ui/documents/..%2F..%2Fetc%2Fpasswd", http.StatusNotFound, "no document"},
		{"/ui/documents/%3Cscript%3E", http.StatusNotFound, "no document"},
		{"/ui/documents/" + id + "/artifacts/gini/99", http.StatusNotFound, "no such result file"},
		{"/ui/documents/" + id + "/artifacts/%3Cx%3E/0", http.StatusNotFound, "no such result file"},
		{"/ui/documents/" + id + "/artifacts/gini/-1", http.StatusNotFound, "no such result file"},
	} {
		a := e.do(c, "GET", tc.path, nil, nil)
		if a.code != tc.want || !strings.Contains(a.body, tc.says) {
			t.Errorf("%s: %d, want %d with %q: %s", tc.path, a.code, tc.want, tc.says, a.body)
		}
		if strings.Contains(a.body, "<script>") {
			t.Errorf("%s: a <script> in the page", tc.path)
		}
	}

	// What html/template writes for the filename and metadata: entities, never markup.
	a := e.do(c, "GET", "/ui/documents/"+id, nil, nil)
	for _, want := range []string{
		`<h1 id="filename">&lt;script&gt;alert(1)&lt;/script&gt;.pdf</h1>`,
		`<td>&#34;&gt;&lt;img src=x onerror=alert(2)&gt;</td>`,
		`title="&lt;script&gt;alert(1)&lt;/script&gt;.pdf"`,
		`<td>ACME &lt;b&gt;&amp;&lt;/b&gt; Sons</td>`,
		`the vendor said &lt;no&gt;`,
	} {
		if !strings.Contains(a.body, want) {
			t.Errorf("detail page lacks %s", want)
		}
	}
	for _, bad := range []string{"<script>alert", "<img src=x", "<b>&</b>", "<no>"} {
		if strings.Contains(a.body, bad) {
			t.Errorf("detail page has %q unescaped", bad)
		}
	}
}

func TestDocumentDetail(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { testDocumentDetail(t, newEnv(t)) })
	// Results are found by time with an ordered consumer; sessions and states are KV: all of it
	// must work on Debian's NATS 2.9 too.
	t.Run("external NATS 2.9", func(t *testing.T) { testDocumentDetail(t, newEnvOn(t, eventstest.External(t))) })
}

func testDocumentDetail(t *testing.T, e *env) {
	id, content := e.addDocument()
	c := e.client()
	token := e.signIn(c)
	a := e.do(c, "GET", "/ui/documents/"+id, nil, nil)
	if a.code != http.StatusOK {
		t.Fatalf("%d %s", a.code, a.body)
	}
	for _, want := range []string{
		`id="fields-gini"`, `<td>total</td><td>24.99 EUR</td>`, `0.97`, `<code>ref-gini</code>`,
		`<iframe class="preview" id="preview" src="/ui/documents/` + id + `/content"`,
		`href="/ui/documents/` + id + `/content?download=1"`,
		`<button type="submit" id="retry-laigo">`, `name="csrf" value="` + token + `"`,
		`data-live="document:` + id + `"`,
	} {
		if !strings.Contains(a.body, want) {
			t.Errorf("detail page lacks %s", want)
		}
	}
	if strings.Contains(a.body, `id="retry-gini"`) {
		t.Error("a retry button for a vendor that completed")
	}
	for _, tc := range []struct{ query, disposition, frame string }{
		{"", `inline; filename="<script>alert(1)</script>.pdf"`, "SAMEORIGIN"},
		{"?download=1", `attachment; filename="<script>alert(1)</script>.pdf"`, "DENY"},
	} {
		a := e.do(c, "GET", "/ui/documents/"+id+"/content"+tc.query, nil, nil)
		if a.code != http.StatusOK || a.body != string(content) || a.h.Get("Content-Type") != "application/pdf" ||
			a.h.Get("Content-Disposition") != tc.disposition || a.h.Get("X-Frame-Options") != tc.frame ||
			!strings.Contains(a.h.Get("Content-Security-Policy"), "frame-ancestors 'self'") {
			t.Errorf("content%s: %d, %d bytes, %v", tc.query, a.code, len(a.body), a.h)
		}
	}
	if a := e.do(c, "GET", "/ui/documents/"+id+"?retried=laigo", nil, nil); !strings.Contains(a.body, "A new attempt at laigo was requested.") {
		t.Error("no word of the retry")
	}
	// A slot in a retried round says which round; a first round says nothing.
	if strings.Contains(a.body, `id="round-`) {
		t.Error("a round shown for a first round")
	}
	e.record(events.Retried, "laigo", id, time.Now().UTC(), events.RetriedData{DocumentID: id, Vendor: "laigo", Round: 1, RequestedAt: time.Now()})
	if a := e.do(c, "GET", "/ui/documents/"+id, nil, nil); !strings.Contains(a.body, `<tr id="round-laigo"><th>Round</th><td>1 (after a retry)</td></tr>`) ||
		strings.Contains(a.body, `id="round-gini"`) {
		t.Error("laigo's round 1 not shown, or gini's round 0 shown")
	}
}

func TestListsAndCounts(t *testing.T) {
	e := newEnv(t)
	id, _ := e.addDocument()
	e.indexed(id)
	c := e.client()
	e.signIn(c)
	checks := map[string][]string{
		"/ui/": {`<p class="big" id="total">1</p>`, `<span class="status s-failed">failed</span></a></th><td>1</td>`,
			`href="/ui/documents?vendor=gini">gini</a></th><td>1</td>`, `<h2>Received in the last 24 hours: 1</h2>`,
			`<title>`, `href="/ui/documents/` + id + `"`},
		"/ui/documents?status=failed&limit=1": {`data-id="` + id + `"`, `1 matching`},
		"/ui/documents?status=completed":      {`No documents match.`},
		"/ui/sources": {`http/api`, `every instance`, `imap/invoices`, `nobody (no instance holds its lease right now)`,
			`not reported yet by the instance that holds it`, `>1</a>`, `<td>` + time.Now().UTC().Format("2006-01-02")},
		"/ui/vendors": {`<span class="status s-received">sandbox</span>`, `<span class="status s-completed">real</span>`, `2/s`,
			`href="/ui/documents?vendor=laigo&amp;status=failed&amp;since=24h">1</a>`},
	}
	for path, wants := range checks {
		a := e.do(c, "GET", path, nil, nil)
		for _, want := range wants {
			if a.code != http.StatusOK || !strings.Contains(a.body, want) {
				t.Errorf("%s: %d, lacks %s", path, a.code, want)
			}
		}
	}
}

// The pagination link keeps the filters and the cursor works.
func TestDocumentsPages(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for range 3 {
		id, _ := e.addDocument()
		ids = append(ids, id)
	}
	e.indexed(ids[2])
	eventstest.WaitFor(t, 10*time.Second, "all three indexed", func() bool {
		p, err := e.ix.List(context.Background(), docindex.Query{})
		return err == nil && len(p.Documents) == 3
	})
	c := e.client()
	e.signIn(c)
	seen := map[string]bool{}
	path := "/ui/documents?status=failed&limit=2"
	for page := 0; path != ""; page++ {
		a := e.do(c, "GET", path, nil, nil)
		if a.code != http.StatusOK || page > 2 {
			t.Fatalf("%s: %d", path, a.code)
		}
		for _, m := range regexp.MustCompile(`data-id="([^"]+)"`).FindAllStringSubmatch(a.body, -1) {
			seen[m[1]] = true
		}
		path = ""
		if m := regexp.MustCompile(`href="([^"]+)" id="next"`).FindStringSubmatch(a.body); m != nil {
			path = strings.ReplaceAll(m[1], "&amp;", "&")
			if !strings.Contains(path, "status=failed") || !strings.Contains(path, "limit=2") {
				t.Fatalf("next page link drops the filters: %s", path)
			}
		}
	}
	if len(seen) != 3 {
		t.Fatalf("paged through %d documents, want 3", len(seen))
	}
}

func TestEventStream(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.signIn(c)
	req, _ := http.NewRequest("GET", e.srv.URL+"/ui/events", nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %v", res.StatusCode, res.Header)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended before %q", want)
				}
				if strings.Contains(l, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q on the stream", want)
			}
		}
	}
	next("event: ready")
	id, _ := e.addDocument()
	next(`data: {"id":"` + id + `","kind":"received"}`)
	next(`data: {"id":"` + id + `","kind":"completed","vendor":"gini"}`)
	// The service stops: the stream ends at once, not at the end of the HTTP drain.
	e.con.Close()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the event stream did not end when the console closed")
		}
	}
}

// The instance that watches a mailbox says how it is doing; every instance shows it.
func TestSourceStateSeenFromEveryInstance(t *testing.T) {
	e := newEnv(t)
	leases, err := lease.New(context.Background(), lease.Config{Bus: e.bus, Owner: "test-instance"})
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	eventstest.Run(t, func(ctx context.Context) error {
		leases.Run(ctx, "imap.invoices", func(ctx context.Context) { close(held); <-ctx.Done() })
		return nil
	})
	<-held
	eventstest.Run(t, e.con.Run) // reports at once, then every 10 s
	_, other := e.start("test-instance-2")
	c := e.client()
	e.signIn(c)
	eventstest.WaitFor(t, 10*time.Second, "the other instance to show the mailbox failing", func() bool {
		a := e.do(c, "GET", other.URL+"/ui/sources", nil, nil)
		return a.code == http.StatusOK && strings.Contains(a.body, `failing since`) &&
			strings.Contains(a.body, `<span class="error">login refused</span>`) && strings.Contains(a.body, "as test-instance reported at") &&
			strings.Contains(a.body, `<td id="last-pass-imap-invoices">2026-12-03 09:30:00Z</td>`)
	})
	a := e.do(c, "GET", "/ui/sources", nil, nil)
	if !strings.Contains(a.body, "test-instance (this instance)") || !strings.Contains(a.body, `failing since`) {
		t.Fatalf("the holder's own page: %s", a.body)
	}
}

// Wrong keys at sign-in are limited per address: ten, then one every six seconds; while an
// address waits, not even the right key is looked at (429 with Retry-After).
func TestWrongKeysAtSignInAreLimited(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	post := func(key string) answer {
		t.Helper()
		a := e.do(c, "GET", "/ui/login", nil, nil)
		return e.do(c, "POST", "/ui/login", url.Values{"csrf": {csrfOf(t, a.body)}, "key": {key}}, nil)
	}
	for i := range 10 {
		if a := post(fmt.Sprintf("guess-%d", i)); a.code != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d, want 401", i, a.code)
		}
	}
	a := post(apiKey)
	if a.code != http.StatusTooManyRequests || a.h.Get("Retry-After") != "6" || !strings.Contains(a.body, "Too many wrong keys") {
		t.Fatalf("the right key after ten wrong ones: %d Retry-After %q: %s", a.code, a.h.Get("Retry-After"), a.body)
	}
	e.now.Add(int64(6 * time.Second))
	if a := post("guess-10"); a.code != http.StatusUnauthorized {
		t.Fatalf("a wrong key once the wait is over: %d, want 401", a.code)
	}
	if a := post(apiKey); a.code != http.StatusTooManyRequests {
		t.Fatalf("the right key right after: %d, want 429", a.code)
	}
	e.now.Add(int64(6 * time.Second))
	if a := post(apiKey); a.code != http.StatusSeeOther {
		t.Fatalf("the right key once the wait is over: %d, want 303", a.code)
	}
}
