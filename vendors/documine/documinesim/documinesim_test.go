package documinesim_test

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
	"strings"
	"sync"
	"testing"

	"github.com/ingest-dev/ingest/vendors/documine/documinesim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

const (
	files = "/api/dossier-templates/tpl/dossiers/dos/files"
	token = "/auth/realms/acme/protocol/openid-connect/token"
)

func newSim(t *testing.T, pending int) (*documinesim.Server, *httptest.Server) {
	t.Helper()
	sim, err := documinesim.New(documinesim.Config{
		ClientID: "ingest", ClientSecret: "s3cret", Tenant: "acme",
		DossierTemplateID: "tpl", DossierID: "dos",
		Users:        map[string]string{"svc": "pw"},
		PendingPolls: pending, MaxBytes: 1024,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv
}

func postForm(t *testing.T, u string, form url.Values, basic bool) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth("ingest", "s3cret")
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	body, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(body, &m)
	return res.StatusCode, m
}

func login(t *testing.T, srv *httptest.Server) (access, refresh string) {
	t.Helper()
	code, m := postForm(t, srv.URL+token, url.Values{"grant_type": {"password"}, "client_id": {"ingest"},
		"client_secret": {"s3cret"}, "username": {"svc"}, "password": {"pw"}}, false)
	if code != http.StatusOK {
		t.Fatalf("login: %d %v", code, m)
	}
	return m["access_token"].(string), m["refresh_token"].(string)
}

func TestToken(t *testing.T) {
	ok := url.Values{"client_id": {"ingest"}, "client_secret": {"s3cret"}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range ok {
			v[k] = vs
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	tests := []struct {
		name     string
		path     string
		form     url.Values
		basic    bool
		wantCode int
		wantErr  string
	}{
		{"password", token, with("grant_type", "password", "username", "svc", "password", "pw"), false, 200, ""},
		{"wrong password", token, with("grant_type", "password", "username", "svc", "password", "nope"), false, 401, "invalid_grant"},
		{"unknown user", token, with("grant_type", "password", "username", "bob", "password", "pw"), false, 401, "invalid_grant"},
		{"wrong secret", token, with("grant_type", "password", "username", "svc", "password", "pw", "client_secret", "x"), false, 401, "invalid_client"},
		{"client in Basic only", token, with("grant_type", "password", "username", "svc", "password", "pw", "client_id", "", "client_secret", ""), true, 401, "invalid_client"},
		{"bad refresh token", token, with("grant_type", "refresh_token", "refresh_token", "sim-nope"), false, 400, "invalid_grant"},
		{"client_credentials", token, with("grant_type", "client_credentials"), false, 400, "unsupported_grant_type"},
		{"other realm", "/auth/realms/other/protocol/openid-connect/token", with("grant_type", "password", "username", "svc", "password", "pw"), false, 404, "Realm does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newSim(t, 0)
			code, m := postForm(t, srv.URL+tt.path, tt.form, tt.basic)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d (%v)", code, tt.wantCode, m)
			}
			if tt.wantErr != "" && m["error"] != tt.wantErr {
				t.Fatalf("error %v, want %s", m["error"], tt.wantErr)
			}
			if tt.wantErr == "" {
				if m["expires_in"] != 300.0 || m["refresh_expires_in"] != 1800.0 || m["scope"] != "openid" || m["refresh_token"] == "" {
					t.Fatalf("token answer %v", m)
				}
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	sim, srv := newSim(t, 0)
	_, rt := login(t, srv)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"ingest"}, "client_secret": {"s3cret"}}
	if code, m := postForm(t, srv.URL+token, form, false); code != 200 {
		t.Fatalf("refresh: %d %v", code, m)
	}
	sim.ExpireRefreshTokens()
	if code, m := postForm(t, srv.URL+token, form, false); code != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("expired refresh: %d %v", code, m)
	}
	if sim.Logins() != 1 || sim.Refreshes() != 1 {
		t.Fatalf("logins %d refreshes %d, want 1 and 1", sim.Logins(), sim.Refreshes())
	}
}

// upload builds a request; the caller may spoil it.
func upload(t *testing.T, srv *httptest.Server, access, field, name string, content []byte) *http.Request {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, _ := mw.CreateFormFile(field, name)
	_, _ = fw.Write(content)
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+files, &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("X-TENANT-ID", "acme")
	return req
}

var pdf = []byte("%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n")

func TestAPIChecks(t *testing.T) {
	tests := []struct {
		name     string
		spoil    func(r *http.Request)
		field    string
		content  []byte
		wantCode int
		wantMsg  string
	}{
		{"accepted", nil, "file", pdf, 201, ""},
		{"no token", func(r *http.Request) { r.Header.Del("Authorization") }, "file", pdf, 401, "authentication"},
		{"unknown token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer sim-x") }, "file", pdf, 401, "authentication"},
		{"no tenant", func(r *http.Request) { r.Header.Del("X-TENANT-ID") }, "file", pdf, 403, "X-TENANT-ID"},
		{"wrong tenant", func(r *http.Request) { r.Header.Set("X-TENANT-ID", "globex") }, "file", pdf, 403, "globex"},
		{"unknown template", func(r *http.Request) { r.URL.Path = strings.Replace(r.URL.Path, "/tpl/", "/x/", 1) }, "file", pdf, 404, "template"},
		{"unknown dossier", func(r *http.Request) { r.URL.Path = strings.Replace(r.URL.Path, "/dos/", "/x/", 1) }, "file", pdf, 404, "Dossier x"},
		{"not PDF", nil, "file", []byte("PK\x03\x04 a docx"), 415, "PDF"},
		{"too large", nil, "file", append(append([]byte{}, pdf...), make([]byte, 2000)...), 413, "1024 bytes"},
		{"other field", nil, "document", pdf, 400, "'file'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, srv := newSim(t, 0)
			access, _ := login(t, srv)
			req := upload(t, srv, access, tt.field, "a.pdf", tt.content)
			if tt.spoil != nil {
				tt.spoil(req)
			}
			code, m := do(t, req)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d (%v)", code, tt.wantCode, m)
			}
			if tt.wantMsg != "" {
				msg, _ := m["message"].(string)
				if !strings.Contains(msg, tt.wantMsg) || m["timestamp"] == nil {
					t.Fatalf("body %v, want a message with %q and a timestamp", m, tt.wantMsg)
				}
			}
			if n := len(sim.Ledger.All()); (code == 201) != (n == 1) {
				t.Fatalf("ledger has %d uploads after status %d", n, code)
			}
		})
	}
}

func get(t *testing.T, srv *httptest.Server, access, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("X-TENANT-ID", "acme")
	return do(t, req)
}

func TestLifecycle(t *testing.T) {
	sim, srv := newSim(t, 3)
	access, _ := login(t, srv)
	code, m := do(t, upload(t, srv, access, "file", "inv.pdf", pdf))
	if code != 201 {
		t.Fatalf("upload %d %v", code, m)
	}
	id := m["fileId"].(string)
	if code, _ := get(t, srv, access, files+"/"+id+"/components"); code != http.StatusConflict {
		t.Fatalf("components before processing: %d, want 409", code)
	}
	var seen []string
	for range 5 {
		_, m := get(t, srv, access, files+"/"+id)
		seen = append(seen, m["processingStatus"].(string))
	}
	if got, want := strings.Join(seen, " "), "UNPROCESSED PROCESSING PROCESSING PROCESSED PROCESSED"; got != want {
		t.Fatalf("statuses %q, want %q", got, want)
	}
	code, m = get(t, srv, access, files+"/"+id+"/components")
	rec := simkit.RecogniseContent("inv.pdf", pdf)
	if code != 200 || !strings.Contains(fmt.Sprint(m["components"]), rec.InvoiceNumber) {
		t.Fatalf("components %d %v, want %s in them", code, m, rec.InvoiceNumber)
	}
	if !sim.SetStatus(id, "ERROR") || sim.SetStatus("nope", "ERROR") {
		t.Fatal("SetStatus reports existence wrongly")
	}
	if _, m := get(t, srv, access, files+"/"+id); m["processingStatus"] != "ERROR" || m["fileErrorInfo"] == nil {
		t.Fatalf("after SetStatus: %v", m)
	}
	if code, _ := get(t, srv, access, files+"/nope"); code != 404 {
		t.Fatalf("unknown file: %d, want 404", code)
	}
	if code, _ := get(t, srv, access, files+"/"+id+"/components"); code != http.StatusConflict {
		t.Fatalf("components of a failed file: %d, want 409", code)
	}
}

func TestExpiredAccessToken(t *testing.T) {
	sim, srv := newSim(t, 0)
	access, _ := login(t, srv)
	sim.Tokens.ExpireAll()
	if code, _ := get(t, srv, access, files); code != 401 {
		t.Fatalf("expired token: %d, want 401", code)
	}
}

func TestFaultComesFirst(t *testing.T) {
	sim, srv := newSim(t, 0)
	sim.Faults.Add("list", simkit.Fault{Status: 503, Body: `{"message":"down"}`, RetryAfter: "3"})
	// No token at all: the fault still wins, as a front proxy's 503 would.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+files, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "3" {
		t.Fatalf("got %d Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
}

func TestConcurrentUploads(t *testing.T) {
	sim, srv := newSim(t, 1)
	access, _ := login(t, srv)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			content := append(append([]byte{}, pdf...), byte(i))
			res, err := http.DefaultClient.Do(upload(t, srv, access, "file", fmt.Sprintf("f%d.pdf", i), content))
			if err != nil {
				t.Error(err)
				return
			}
			var m map[string]string
			_ = json.NewDecoder(res.Body).Decode(&m)
			res.Body.Close()
			_, _ = get(t, srv, access, files+"/"+m["fileId"])
		})
	}
	wg.Wait()
	var list []map[string]any
	req, _ := http.NewRequest(http.MethodGet, srv.URL+files, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("X-TENANT-ID", "acme")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 16 || len(sim.Ledger.All()) != 16 {
		t.Fatalf("list has %d files, ledger %d, want 16", len(list), len(sim.Ledger.All()))
	}
}

func send(t *testing.T, srv *httptest.Server, access, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("X-TENANT-ID", "acme")
	return do(t, req)
}

// The package flow answers like an API: malformed and empty requests are 400, unknown ids 404,
// an unready package 409, an expired token 401.
func TestPackageLifecycle(t *testing.T) {
	sim, srv := newSim(t, 1)
	access, _ := login(t, srv)
	code, m := do(t, upload(t, srv, access, "file", "inv.pdf", pdf))
	if code != 201 {
		t.Fatalf("upload %d %v", code, m)
	}
	id := m["fileId"].(string)
	const create = "/api/dossier-templates/tpl/dossiers/dos/create-download"
	if code, _ := send(t, srv, access, "POST", create, `{"fileIds":["`+id+`"]}`); code != http.StatusConflict {
		t.Fatalf("package of an unprocessed file: %d, want 409", code)
	}
	get(t, srv, access, files+"/"+id) // the one pending look
	for _, tt := range []struct {
		body string
		code int
	}{{`{"fileIds":[`, 400}, {`{"fileIds":["nope"]}`, 400}, {``, 400}} {
		if code, m := send(t, srv, access, "POST", create, tt.body); code != tt.code {
			t.Fatalf("create %q: %d %v, want %d", tt.body, code, m, tt.code)
		}
	}
	code, m = send(t, srv, access, "POST", create, `{"fileIds":["`+id+`"]}`)
	if code != 200 || m["downloadId"] == nil {
		t.Fatalf("create: %d %v", code, m)
	}
	dl := "/api/downloads/" + m["downloadId"].(string)
	if code, _ := get(t, srv, access, dl+"/download"); code != http.StatusConflict {
		t.Fatalf("unready download: %d, want 409", code)
	}
	var seen []string
	for range 3 {
		_, m := get(t, srv, access, dl)
		seen = append(seen, m["status"].(string))
	}
	if got := strings.Join(seen, " "); got != "QUEUED READY READY" {
		t.Fatalf("package statuses %q", got)
	}
	if code, _ := get(t, srv, access, dl+"/download"); code != 200 {
		t.Fatalf("download: %d", code)
	}
	if code, _ := get(t, srv, access, "/api/downloads/nope"); code != 404 {
		t.Fatalf("unknown package: %d, want 404", code)
	}
	sim.Tokens.ExpireAll()
	if code, _ := send(t, srv, access, "DELETE", dl, ""); code != 401 {
		t.Fatalf("expired token: %d, want 401", code)
	}
	access, _ = login(t, srv)
	if code, _ := send(t, srv, access, "DELETE", dl, ""); code != 204 || sim.Packages() != 0 {
		t.Fatalf("delete: %d, %d packages left", code, sim.Packages())
	}
}

func TestUnservableAPI(t *testing.T) {
	api := documinesim.DefaultAPI()
	api.ListMethod, api.ListPath = api.UploadMethod, api.UploadPath
	if _, err := documinesim.New(documinesim.Config{API: api}); err == nil || !strings.Contains(err.Error(), "cannot be served") {
		t.Fatalf("error %v, want one about the paths", err)
	}
}

// restartable starts simulators on one state journal, each like a new process: a new Server, a
// new httptest server.
func restartable(t *testing.T, pending int, path string) func() (*documinesim.Server, *httptest.Server) {
	return func() (*documinesim.Server, *httptest.Server) {
		t.Helper()
		sim, srv := newSim(t, pending)
		if err := sim.KeepState(path); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sim.CloseState() })
		return sim, srv
	}
}

// listed is the file list as "filename status" pairs.
func listed(t *testing.T, srv *httptest.Server, access string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+files, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("X-TENANT-ID", "acme")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list []map[string]any
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatalf("list (%d): %v", res.StatusCode, err)
	}
	var out []string
	for _, f := range list {
		out = append(out, fmt.Sprint(f["filename"], " ", f["processingStatus"]))
	}
	return strings.Join(out, ", ")
}

// Files (their progress, forced statuses, upload order) and result packages (made, looked at,
// deleted) outlive a restart; tokens do not.
func TestStateSurvivesRestart(t *testing.T) {
	start := restartable(t, 1, filepath.Join(t.TempDir(), "documine", "dossier.jsonl"))
	sim, srv := start()
	access, _ := login(t, srv)
	ids := map[string]string{}
	for _, name := range []string{"a.pdf", "b.pdf", "c.pdf"} {
		code, m := do(t, upload(t, srv, access, "file", name, append(append([]byte{}, pdf...), name...)))
		if code != 201 {
			t.Fatalf("upload %s: %d %v", name, code, m)
		}
		ids[name] = m["fileId"].(string)
	}
	get(t, srv, access, files+"/"+ids["a.pdf"]) // a's one pending look: processed, and its record the newest
	sim.SetStatus(ids["c.pdf"], "ERROR")
	const create = "/api/dossier-templates/tpl/dossiers/dos/create-download"
	_, m := send(t, srv, access, "POST", create, `{"fileIds":["`+ids["a.pdf"]+`"]}`)
	kept, _ := m["downloadId"].(string)
	if _, m := get(t, srv, access, "/api/downloads/"+kept); m["status"] != "QUEUED" { // its one pending look
		t.Fatalf("package status %v", m)
	}
	_, m = send(t, srv, access, "POST", create, `{"fileIds":["`+ids["a.pdf"]+`"]}`)
	deleted, _ := m["downloadId"].(string)
	if code, _ := send(t, srv, access, "DELETE", "/api/downloads/"+deleted, ""); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if err := sim.CloseState(); err != nil {
		t.Fatal(err)
	}

	sim, srv = start()
	if code, _ := get(t, srv, access, files); code != 401 {
		t.Fatalf("a token from before the restart: %d, want 401", code)
	}
	access, _ = login(t, srv)
	if got, want := listed(t, srv, access), "a.pdf PROCESSED, b.pdf UNPROCESSED, c.pdf ERROR"; got != want {
		t.Fatalf("list after the restart: %q, want %q", got, want)
	}
	code, m := get(t, srv, access, files+"/"+ids["a.pdf"]+"/components")
	rec := simkit.RecogniseContent("a.pdf", append(append([]byte{}, pdf...), "a.pdf"...))
	if code != 200 || !strings.Contains(fmt.Sprint(m["components"]), rec.InvoiceNumber) {
		t.Fatalf("components after the restart: %d %v, want %s in them", code, m, rec.InvoiceNumber)
	}
	if n := len(sim.Ledger.All()); n != 3 {
		t.Fatalf("the ledger knows %d uploads after the restart, want 3", n)
	}
	if _, m := get(t, srv, access, "/api/downloads/"+kept); m["status"] != "READY" || sim.Packages() != 1 {
		t.Fatalf("package after the restart: %v, %d packages", m, sim.Packages())
	}
	if code, _ := get(t, srv, access, "/api/downloads/"+kept+"/download"); code != 200 {
		t.Fatalf("download after the restart: %d", code)
	}
	if code, _ := get(t, srv, access, "/api/downloads/"+deleted); code != 404 {
		t.Fatalf("a package deleted before the restart: %d, want 404", code)
	}
	// Uploads go on after the restored ones, in the list and in the next restart's list.
	do(t, upload(t, srv, access, "file", "d.pdf", pdf))
	if code, _ := send(t, srv, access, "DELETE", "/api/downloads/"+kept, ""); code != 204 {
		t.Fatalf("delete after the restart: %d", code)
	}
	_ = sim.CloseState()

	sim, srv = start()
	access, _ = login(t, srv)
	if got, want := listed(t, srv, access), "a.pdf PROCESSED, b.pdf UNPROCESSED, c.pdf ERROR, d.pdf UNPROCESSED"; got != want {
		t.Fatalf("list after the second restart: %q, want %q", got, want)
	}
	if sim.Packages() != 0 {
		t.Fatalf("%d packages after the second restart, want 0", sim.Packages())
	}
}

// A package whose files the bounded journal no longer holds is not served: it could not be
// downloaded.
func TestStateDropsPackagesWithoutFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dossier.jsonl")
	line := `{"k":"package/p1","v":{"id":"p1","fileIds":["gone"],"polls":0}}` + "\n"
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	sim, _ := restartable(t, 0, path)()
	if sim.Packages() != 0 {
		t.Fatalf("%d packages, want 0", sim.Packages())
	}
}

func TestKeepStateMisuse(t *testing.T) {
	sim, srv := newSim(t, 0)
	access, _ := login(t, srv)
	do(t, upload(t, srv, access, "file", "a.pdf", pdf))
	if err := sim.KeepState(filepath.Join(t.TempDir(), "s.jsonl")); err == nil || !strings.Contains(err.Error(), "before the first upload") {
		t.Fatalf("KeepState after an upload: %v", err)
	}
	blocker := filepath.Join(t.TempDir(), "file")
	_ = os.WriteFile(blocker, nil, 0o600)
	sim, _ = newSim(t, 0)
	if err := sim.KeepState(filepath.Join(blocker, "s.jsonl")); err == nil || !strings.Contains(err.Error(), "cannot be kept") {
		t.Fatalf("KeepState where no directory can be made: %v", err)
	}
}
