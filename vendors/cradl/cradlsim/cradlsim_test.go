package cradlsim_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/ingest-dev/ingest/vendors/cradl/cradlsim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

const (
	cid, csecret = "client", "secret"
	wid          = "las:workflow:1"
	wmail        = "flow@cradl.example"
)

type fixture struct {
	t   *testing.T
	sim *cradlsim.Server
	srv *httptest.Server
	tok string
}

func newFixture(t *testing.T, edit func(*cradlsim.Config)) *fixture {
	t.Helper()
	cfg := cradlsim.Config{ClientID: cid, ClientSecret: csecret, WorkflowID: wid, WorkflowEmail: wmail}
	if edit != nil {
		edit(&cfg)
	}
	sim, err := cradlsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	f := &fixture{t: t, sim: sim, srv: srv}
	tok, _ := f.token(url.Values{"grant_type": {"client_credentials"}}, true).json(t)["access_token"].(string)
	if tok == "" {
		t.Fatal("no token")
	}
	f.tok = tok
	return f
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

func (a answer) message(t *testing.T) string {
	t.Helper()
	s, _ := a.json(t)["message"].(string)
	return s
}

func (f *fixture) do(method, path, tok string, body any) answer {
	f.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	target := path
	if !strings.HasPrefix(path, "http") {
		target = f.srv.URL + path
	}
	req, err := http.NewRequestWithContext(f.t.Context(), method, target, r)
	if err != nil {
		f.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, b}
}

func (f *fixture) api(method, path string, body any) answer { return f.do(method, path, f.tok, body) }

func (f *fixture) token(form url.Values, basic bool) answer {
	f.t.Helper()
	req, _ := http.NewRequestWithContext(f.t.Context(), http.MethodPost, f.srv.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(cid, csecret)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, b}
}

func TestToken(t *testing.T) {
	f := newFixture(t, nil)
	cc := url.Values{"grant_type": {"client_credentials"}}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {cid}, "client_secret": {csecret}, "audience": {cradlsim.Audience}}
	tests := []struct {
		name    string
		form    url.Values
		basic   bool
		status  int
		message string
	}{
		{"basic", cc, true, 200, ""},
		{"form with audience", form, false, 200, ""},
		{"form without audience", url.Values{"grant_type": {"client_credentials"}, "client_id": {cid}, "client_secret": {csecret}}, false, 400, ""},
		{"wrong secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {cid}, "client_secret": {"x"}, "audience": {cradlsim.Audience}}, false, 403, "Forbidden"},
		{"other grant", url.Values{"grant_type": {"password"}}, true, 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := f.token(tc.form, tc.basic)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			m := a.json(t)
			if tc.status == 200 && (m["token_type"] != "Bearer" || m["expires_in"] != 3600.0 || m["refresh_token"] != nil) {
				t.Errorf("token answer = %v", m)
			}
			if tc.message != "" && m["message"] != tc.message {
				t.Errorf("message = %v, want %q", m["message"], tc.message)
			}
		})
	}
	// The fixture's own token, then the two accepted here.
	if got := f.sim.TokenRequests(); len(got) != 3 || got[2].Style != "form" || got[2].Audience != cradlsim.Audience {
		t.Errorf("token requests = %+v", got)
	}
	if a := f.do("GET", "/workflows/"+wid, "nope", nil); a.status != 401 || a.message(t) != "Unauthorized" {
		t.Errorf("bad token: %d %s", a.status, a.body)
	}
	f.sim.Tokens.ExpireAll()
	if a := f.api("GET", "/workflows/"+wid, nil); a.status != 401 {
		t.Errorf("expired token: %d", a.status)
	}
}

func TestDocuments(t *testing.T) {
	f := newFixture(t, func(c *cradlsim.Config) { c.MaxInlineBytes, c.MaxBytes = 30, 100 })
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name    string
		body    any
		status  int
		message string
	}{
		{"inline", map[string]any{"content": b64("%PDF-1.7 x"), "contentType": "application/pdf", "name": "a.pdf"}, 200, ""},
		{"inline too large", map[string]any{"content": b64(strings.Repeat("x", 31)), "contentType": "application/pdf"}, 413, "fileUrl"},
		{"not base64", map[string]any{"content": "%%%", "contentType": "application/pdf"}, 400, "base64"},
		{"empty", map[string]any{"content": "", "contentType": "application/pdf"}, 400, "empty"},
		{"text", map[string]any{"content": b64("hi"), "contentType": "text/plain"}, 415, "text/plain"},
		{"not JSON", []byte("{"), 400, "Invalid JSON"},
		{"no content: fileUrl", map[string]any{"contentType": "image/png", "name": "b.png"}, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := f.api("POST", "/documents", tc.body)
			if a.status != tc.status || (tc.message != "" && !strings.Contains(a.message(t), tc.message)) {
				t.Fatalf("answer %d %s, want %d %q", a.status, a.body, tc.status, tc.message)
			}
			if a.status == 200 {
				m := a.json(t)
				if id, _ := m["documentId"].(string); !strings.HasPrefix(id, "las:document:") || m["fileUrl"] == "" {
					t.Errorf("answer = %v", m)
				}
			}
		})
	}
	if n := len(f.sim.Ledger.All()); n != 1 {
		t.Errorf("ledger has %d uploads, want 1 (the inline one)", n)
	}
	doc := f.api("POST", "/documents", map[string]any{"contentType": "application/pdf", "name": "c.pdf"}).json(t)
	fileURL := doc["fileUrl"].(string)
	if a := f.do("PUT", fileURL, "", []byte("%PDF")); a.status != 401 {
		t.Errorf("PUT without the token: %d", a.status)
	}
	if a := f.api("PUT", fileURL, bytes.Repeat([]byte("x"), 101)); a.status != 413 {
		t.Errorf("PUT too large: %d", a.status)
	}
	if a := f.api("POST", "/predictions", map[string]any{"documentId": doc["documentId"], "modelId": "m"}); a.status != 400 || !strings.Contains(a.message(t), "no content") {
		t.Errorf("prediction before the PUT: %d %s", a.status, a.body)
	}
	if a := f.api("PUT", fileURL, []byte("%PDF-1.7 big one")); a.status != 200 {
		t.Fatalf("PUT: %d %s", a.status, a.body)
	}
	up := f.sim.Ledger.All()
	sum, _ := simkit.Digest([]byte("%PDF-1.7 big one"))
	if len(up) != 2 || up[1].SHA256 != sum || up[1].Filename != "c.pdf" || up[1].Ref != doc["documentId"] {
		t.Errorf("ledger = %+v", up)
	}
}

func TestPredictionPages(t *testing.T) {
	f := newFixture(t, func(c *cradlsim.Config) { c.ModelID, c.MonthlyQuota = "model-1", 2 })
	content := []byte("%PDF first\fsecond")
	doc := f.api("POST", "/documents", map[string]any{"content": base64.StdEncoding.EncodeToString(content), "contentType": "application/pdf", "name": "two.pdf"}).json(t)
	p0 := f.api("POST", "/predictions", map[string]any{"documentId": doc["documentId"], "modelId": "model-1"}).json(t)
	if p0["nextPage"] != 1.0 || p0["status"] != "succeeded" || len(p0["predictions"].([]any)) != 6 {
		t.Fatalf("page 0 = %v", p0)
	}
	p1 := f.api("POST", "/predictions", map[string]any{"documentId": doc["documentId"], "modelId": "model-1", "preprocessConfig": map[string]any{"startPage": 1}}).json(t)
	if p1["nextPage"] != nil {
		t.Errorf("page 1 nextPage = %v, want null", p1["nextPage"])
	}
	rec := simkit.RecogniseContent("two.pdf", []byte("second"))
	if first := p1["predictions"].([]any)[0].(map[string]any); first["value"] != rec.InvoiceNumber || first["page"] != 1.0 {
		t.Errorf("page 1 first prediction = %v", first)
	}
	got := f.api("GET", "/predictions/"+p0["predictionId"].(string), nil).json(t)
	if got["predictionId"] != p0["predictionId"] {
		t.Errorf("GET prediction = %v", got)
	}
	for _, tc := range []struct {
		body    map[string]any
		status  int
		message string
	}{
		{map[string]any{"documentId": doc["documentId"], "modelId": "model-1", "preprocessConfig": map[string]any{"startPage": 2}}, 400, "out of range"},
		{map[string]any{"documentId": doc["documentId"], "modelId": "other"}, 404, "Model other not found"},
		{map[string]any{"documentId": "las:document:none", "modelId": "model-1"}, 404, "not found"},
		{map[string]any{"documentId": doc["documentId"], "modelId": "model-1"}, 429, "Limit Exceeded"},
	} {
		if a := f.api("POST", "/predictions", tc.body); a.status != tc.status || !strings.Contains(a.message(t), tc.message) {
			t.Errorf("%v: %d %s, want %d %q", tc.body, a.status, a.body, tc.status, tc.message)
		}
	}
	if a := f.api("GET", "/predictions/las:prediction:none", nil); a.status != 404 {
		t.Errorf("unknown prediction: %d", a.status)
	}
}

// startExecution uploads a document and starts an execution on it.
func (f *fixture) startExecution(name string) string {
	f.t.Helper()
	doc := f.api("POST", "/documents", map[string]any{"content": base64.StdEncoding.EncodeToString([]byte("%PDF " + name)), "contentType": "application/pdf", "name": name}).json(f.t)
	a := f.api("POST", "/workflows/"+wid+"/executions", map[string]any{"input": map[string]any{"documentId": doc["documentId"], "title": name}})
	if a.status != 200 {
		f.t.Fatalf("start: %d %s", a.status, a.body)
	}
	m := a.json(f.t)
	if m["status"] != "running" || m["output"] != nil {
		f.t.Fatalf("new execution = %v", m)
	}
	return m["executionId"].(string)
}

func TestExecutionLifecycle(t *testing.T) {
	f := newFixture(t, func(c *cradlsim.Config) { c.PendingPolls = 2 })
	id := f.startExecution("a.pdf")
	path := "/workflows/" + wid + "/executions/" + id
	if a := f.api("PATCH", path, map[string]any{"status": "completed"}); a.status != 400 {
		t.Errorf("completing a running execution: %d", a.status)
	}
	for i, want := range []string{"running", "running", "succeeded", "succeeded"} {
		m := f.api("GET", path, nil).json(t)
		if m["status"] != want {
			t.Fatalf("GET %d: status %v, want %s", i, m["status"], want)
		}
		if want == "succeeded" {
			out, _ := m["output"].(map[string]any)
			if out["documentId"] == nil || out["values"] == nil || out["validatedPredictions"] == nil || m["endTime"] == nil {
				t.Errorf("succeeded execution = %v", m)
			}
		}
	}
	if a := f.api("PATCH", path, map[string]any{"status": "completed"}); a.status != 200 || a.json(t)["status"] != "completed" {
		t.Errorf("complete: %d %s", a.status, a.body)
	}
	if a := f.api("PATCH", path, map[string]any{"status": "completed"}); a.status != 400 {
		t.Errorf("completing twice: %d", a.status)
	}
	if a := f.api("PATCH", path, map[string]any{"status": "succeeded"}); a.status != 200 {
		t.Errorf("back to succeeded: %d", a.status)
	}
	other := f.startExecution("b.pdf")
	if a := f.api("PATCH", "/workflows/"+wid+"/executions/"+other, map[string]any{"nextTransitionId": "las:transition:commons-failed"}); a.status != 200 || a.json(t)["status"] != "failed" {
		t.Errorf("abort: %d %s", a.status, a.body)
	}
	for _, p := range []string{"/workflows/" + wid + "/executions/las:workflow-execution:none", "/workflows/other/executions/" + id, "/workflows/other"} {
		if a := f.api("GET", p, nil); a.status != 404 || !strings.Contains(a.message(t), "not found") {
			t.Errorf("GET %s: %d %s", p, a.status, a.body)
		}
	}
	if a := f.api("POST", "/workflows/"+wid+"/executions", map[string]any{"input": map[string]any{"documentId": "las:document:none"}}); a.status != 400 {
		t.Errorf("start on no document: %d", a.status)
	}
	if m := f.api("GET", "/workflows/"+wid, nil).json(t); m["emailConfig"].(map[string]any)["email"] != wmail {
		t.Errorf("workflow = %v", m)
	}
}

func TestListExecutions(t *testing.T) {
	f := newFixture(t, nil)
	base := time.Now().Add(-time.Hour)
	var ids []string
	for i := range 5 {
		id := f.startExecution("doc" + string(rune('0'+i)) + ".pdf")
		f.sim.SetStartTime(id, base.Add(time.Duration(i)*time.Minute))
		ids = append(ids, id)
	}
	f.sim.SetExecutionStatus(ids[1], "succeeded")
	f.sim.SetExecutionStatus(ids[3], "failed", "boom")
	list := func(q string) (got []string, next any) {
		t.Helper()
		a := f.api("GET", "/workflows/"+wid+"/executions?"+q, nil)
		if a.status != 200 {
			t.Fatalf("list %s: %d %s", q, a.status, a.body)
		}
		m := a.json(t)
		for _, e := range m["executions"].([]any) {
			got = append(got, e.(map[string]any)["executionId"].(string))
		}
		return got, m["nextToken"]
	}
	join := func(ss ...string) string { return strings.Join(ss, " ") }
	if got, next := list(""); join(got...) != join(ids[4], ids[3], ids[2], ids[1], ids[0]) || next != nil {
		t.Errorf("default order = %v %v, want newest first", got, next)
	}
	if got, _ := list("status=succeeded&status=failed&order=ascending"); join(got...) != join(ids[1], ids[3]) {
		t.Errorf("status filter = %v", got)
	}
	if got, _ := list("fromStartTime=" + url.QueryEscape(base.Add(150*time.Second).Format(time.RFC3339Nano)) + "&order=ascending"); join(got...) != join(ids[3], ids[4]) {
		t.Errorf("fromStartTime = %v", got)
	}
	var all []string
	q := "maxResults=2&sortBy=startTime&order=ascending"
	for pages := 0; ; pages++ {
		got, next := list(q)
		all = append(all, got...)
		if next == nil {
			if pages != 2 {
				t.Errorf("%d pages, want 3", pages+1)
			}
			break
		}
		q = "maxResults=2&sortBy=startTime&order=ascending&nextToken=" + url.QueryEscape(next.(string))
	}
	if join(all...) != join(ids...) {
		t.Errorf("paged = %v, want %v", all, ids)
	}
	for _, bad := range []string{"status=done", "maxResults=0", "order=up", "nextToken=zz", "fromStartTime=yesterday"} {
		if a := f.api("GET", "/workflows/"+wid+"/executions?"+bad, nil); a.status != 400 {
			t.Errorf("%s: %d, want 400", bad, a.status)
		}
	}
}

func TestFaultsFirst(t *testing.T) {
	f := newFixture(t, nil)
	f.sim.Faults.Add("workflow", simkit.Fault{Status: 503, Body: `{"message":"busy"}`, RetryAfter: "2"})
	a := f.api("GET", "/workflows/"+wid, nil)
	if a.status != 503 || a.header.Get("Retry-After") != "2" || f.sim.Requests("workflow") != 1 {
		t.Errorf("fault: %d %v", a.status, a.header)
	}
	if a := f.api("GET", "/workflows/"+wid, nil); a.status != 200 {
		t.Errorf("after the fault: %d", a.status)
	}
}

// The vector is computed by hand: the canonical string is written out, and its HMAC was taken
// with another implementation (Python's hmac), not with Sign.
func TestSignVector(t *testing.T) {
	h := http.Header{}
	// Listed unsorted, to show that the names are sorted.
	h.Set("X-Cradl-SignedHeaders", "x-cradl-timestamp,x-cradl-nonce")
	h.Set("X-Cradl-Timestamp", "1767225600")
	h.Set("X-Cradl-Nonce", "4f2a")
	h.Set("Content-Type", "application/json") // not signed
	body := []byte(`{"documentId":"las:document:1"}`)
	const target = "https://hooks.example.com/cradl/export?tenant=7"
	const wantCanonical = `POSThttps://hooks.example.com/cradl/export?tenant=7x-cradl-nonce:4f2ax-cradl-timestamp:1767225600{"documentId":"las:document:1"}`
	const wantSig = "510017b2548b76775fb75da528d517217a87a67b06f9381c199dced095a198f4"
	if got := cradlsim.Canonical("post", target, h, body); got != wantCanonical {
		t.Errorf("Canonical =\n%s\nwant\n%s", got, wantCanonical)
	}
	if got := cradlsim.Sign("whsec-test", "POST", target, h, body); got != wantSig {
		t.Errorf("Sign = %s, want %s", got, wantSig)
	}
	mac := hmac.New(sha256.New, []byte("whsec-test"))
	mac.Write([]byte(wantCanonical))
	if hex.EncodeToString(mac.Sum(nil)) != wantSig {
		t.Fatal("the test vector itself is wrong")
	}
	h.Set(cradlsim.HeaderSignature, wantSig)
	if !cradlsim.Verify("whsec-test", "POST", target, h, body) {
		t.Error("Verify refused a good signature")
	}
	for name, edit := range map[string]func(){
		"other body":   func() { body = []byte(`{}`) },
		"other nonce":  func() { h.Set("X-Cradl-Nonce", "4f2b") },
		"bad hex":      func() { h.Set(cradlsim.HeaderSignature, "zz") },
		"other secret": func() {},
	} {
		hh, b := h.Clone(), body
		edit()
		secret := "whsec-test"
		if name == "other secret" {
			secret = "other"
		}
		if cradlsim.Verify(secret, "POST", target, h, body) {
			t.Errorf("%s: Verify accepted", name)
		}
		h, body = hh, b
	}
}

func TestWebhook(t *testing.T) {
	for _, secret := range []string{"", "whsec-1"} {
		t.Run(map[bool]string{true: "signed", false: "legacy unsigned"}[secret != ""], func(t *testing.T) {
			type got struct {
				header http.Header
				url    string
				body   []byte
			}
			ch := make(chan got, 1)
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				// The URL as called, rebuilt as a receiver must.
				ch <- got{r.Header.Clone(), "http://" + r.Host + r.URL.RequestURI(), b}
			}))
			defer hook.Close()
			f := newFixture(t, func(c *cradlsim.Config) {
				c.Webhook = cradlsim.WebhookConfig{URL: hook.URL + "/hooks/cradl?t=1", Secret: secret, Headers: map[string]string{"X-Api-Key": "k"}}
			})
			id := f.startExecution("a.pdf")
			// Reaching succeeded through polling sends the export.
			f.api("GET", "/workflows/"+wid+"/executions/"+id, nil)
			g := <-ch
			var export map[string]any
			if err := json.Unmarshal(g.body, &export); err != nil {
				t.Fatal(err)
			}
			if secret == "" { // the classic workflow export
				md, _ := export["metadata"].(map[string]any)
				if md["executionId"] != id || md["workflowId"] != wid || export["values"] == nil || export["predictions"] == nil || export["documentId"] == nil {
					t.Errorf("export = %s", g.body)
				}
			} else { // the newer signed webhook: the run and the document in its context
				cx, _ := export["context"].(map[string]any)
				run, _ := cx["runId"].(string)
				doc, _ := cx["documentId"].(string)
				if !strings.HasPrefix(run, "cradl:run:") || !strings.HasPrefix(doc, "las:document:") || export["output"] == nil {
					t.Errorf("webhook = %s", g.body)
				}
			}
			if g.header.Get("X-Api-Key") != "k" {
				t.Errorf("configured header missing: %v", g.header)
			}
			if secret == "" {
				if g.header.Get(cradlsim.HeaderSignature) != "" {
					t.Errorf("the legacy export is signed")
				}
			} else {
				if g.header.Get(cradlsim.HeaderSignedHeaders) != "x-cradl-nonce,x-cradl-timestamp" || g.header.Get(cradlsim.HeaderNonce) == "" {
					t.Errorf("signature headers = %v", g.header)
				}
				if !cradlsim.Verify(secret, "POST", g.url, g.header, g.body) {
					t.Errorf("the export does not verify against %s", g.url)
				}
				if cradlsim.Verify("wrong", "POST", g.url, g.header, g.body) {
					t.Errorf("verifies with the wrong secret")
				}
			}
			if d := f.sim.Deliveries(); len(d) != 1 || d[0].Status != 200 || d[0].ExecutionID != id {
				t.Errorf("deliveries = %+v", d)
			}
			// CompleteExecution sends it too.
			other := f.startExecution("b.pdf")
			if err := f.sim.CompleteExecution(other); err != nil {
				t.Fatal(err)
			}
			if g := <-ch; secret == "" && !bytes.Contains(g.body, []byte(other)) || secret != "" && !bytes.Contains(g.body, []byte("cradl:run:")) {
				t.Errorf("CompleteExecution export = %s", g.body)
			}
		})
	}
}

func TestSMTP(t *testing.T) {
	f := newFixture(t, func(c *cradlsim.Config) { c.SMTPUsername, c.SMTPPassword = "u", "p" })
	addr, stop, err := f.sim.ListenSMTP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	pdfB64 := base64.StdEncoding.EncodeToString([]byte("%PDF-1.7 mailed"))
	msg := strings.Join([]string{
		"From: Alice <alice@example.com>",
		"To: " + wmail,
		"Subject: =?utf-8?q?ingest_doc-9_f=C3=BCr_Cradl?=",
		"Message-ID: <m1@example.com>",
		"MIME-Version: 1.0",
		`Content-Type: multipart/mixed; boundary="b1"`,
		"",
		"--b1",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: quoted-printable",
		"",
		"Hello =3D world",
		"--b1",
		`Content-Type: application/pdf; name="a.pdf"`,
		`Content-Disposition: attachment; filename="a.pdf"`,
		"Content-Transfer-Encoding: base64",
		"",
		pdfB64,
		"--b1",
		`Content-Type: application/octet-stream`,
		`Content-Disposition: attachment; filename="scan.PNG"`,
		"Content-Transfer-Encoding: base64",
		"",
		base64.StdEncoding.EncodeToString([]byte("\x89PNG fake")),
		"--b1",
		`Content-Type: text/csv`,
		`Content-Disposition: attachment; filename="x.csv"`,
		"",
		"a,b",
		"--b1--",
		"",
	}, "\r\n")
	send := func(user, pass, to string) error {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if user != "" {
			if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
				return err
			}
		}
		return c.SendMail("alice@example.com", []string{to}, strings.NewReader(msg))
	}
	var se *smtp.SMTPError
	if err := send("", "", wmail); !errors.As(err, &se) || se.Code != 502 {
		t.Errorf("without AUTH: %v", err)
	}
	if err := send("u", "wrong", wmail); !errors.As(err, &se) || se.Code != 535 {
		t.Errorf("wrong password: %v", err)
	}
	if err := send("u", "p", "other@cradl.example"); !errors.As(err, &se) || se.Code != 550 {
		t.Errorf("other recipient: %v", err)
	}
	if err := send("u", "p", wmail); err != nil {
		t.Fatalf("send: %v", err)
	}
	mails := f.sim.Mails()
	if len(mails) != 1 || mails[0].Subject != "ingest doc-9 für Cradl" || mails[0].From != "alice@example.com" ||
		mails[0].MessageID != "<m1@example.com>" || strings.Join(mails[0].Attachments, ",") != "a.pdf,scan.PNG" {
		t.Fatalf("mails = %+v", mails)
	}
	exs := f.sim.Executions()
	if len(exs) != 2 {
		t.Fatalf("%d executions, want one per PDF/PNG attachment", len(exs))
	}
	email, _ := exs[0].Input["email"].(map[string]any)
	if email["subject"] != "ingest doc-9 für Cradl" || email["origin"] != "alice@example.com" || email["body"] != "Hello = world" {
		t.Errorf("input = %v", exs[0].Input)
	}
	sum, _ := simkit.Digest([]byte("%PDF-1.7 mailed"))
	if f.sim.Ledger.Count(sum) != 1 {
		t.Errorf("ledger = %+v", f.sim.Ledger.All())
	}
}
