// Package documinesim simulates a DocuMine instance for tests: a Keycloak-style token endpoint
// (password and refresh_token grants, client credentials in the form), the dossier file API
// and the result-package flow (create → status → download → delete), served in whatever shape
// its API says: paths, methods, the multipart field, where ids and statuses sit in the answers,
// the status values. DefaultAPI is the documine client's guessed default; tests serve other
// shapes to prove that the client's settings are honoured.
//
// Its choices where DocuMine's behaviour is not documented:
//   - a missing or wrong X-TENANT-ID is 403 with a message: the token is fine but not for that
//     workspace;
//   - only PDF is accepted, recognised by its magic bytes (RedactManager takes PDF; DOCX and
//     the like need a licence): anything else is 415;
//   - a file larger than MaxBytes is 413, found while reading, never by trusting a header;
//   - the status is PendingValues[0] on the first look, the next pending value (the last one
//     repeated) on the next PendingPolls-1, then DoneValue (PendingPolls 0: done at once);
//     SetStatus overrides it; result packages go the same way (SetPackageStatus);
//   - components before the file is done are 409, and so is downloading an unready package;
//   - components are {"fileId","filename","components":[{"name","values":[…]}]}, with the
//     document's text at API.TextKey when that is set;
//   - a package is made for every known file id found among the strings of the create body
//     (400 when there is none, whatever the body's shape); its download is a ZIP of
//     <filename>.components.json entries (and <filename>.txt with TextEntries) or, with Format
//     "json", the one file's components answer;
//   - the file list is a JSON array of the file objects the default status answer has.
//
// With KeepState its files and result packages outlive a restart (see KeepState).
package documinesim

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

// Config configures a Server.
type Config struct {
	ClientID, ClientSecret string
	// Tenant is the workspace: the Keycloak realm in the token URL and the X-TENANT-ID value.
	Tenant            string
	DossierTemplateID string
	DossierID         string
	// Users maps service user names to their local passwords.
	Users map[string]string
	// TokenTTL is the access token's life, 300 s by default; RefreshTTL the refresh token's,
	// 1800 s by default.
	TokenTTL, RefreshTTL time.Duration
	// PendingPolls is how many status looks (of a file, of a package) answer "not yet".
	PendingPolls int
	// MaxBytes is the largest file accepted, 100 MiB by default.
	MaxBytes int64
	// API is the shape served; empty fields are DefaultAPI's.
	API API
}

// API is the shape of the simulated API after login. Paths are ServeMux patterns whose
// wildcards are {templateId}, {dossierId}, {fileId} and {downloadId}; keys are dotted JSON paths
// ("data.fileId") written as nested objects.
type API struct {
	UploadMethod, UploadPath string
	FileField                string // the multipart field that carries the file
	IDKey                    string // where the upload answer carries the file id
	StatusMethod, StatusPath string
	Status                   Statuses
	ListMethod, ListPath     string
	ComponentsMethod         string
	ComponentsPath           string
	// TextKey, when set, puts the document's text into component answers at this key.
	TextKey string
	Package PackageAPI
}

// Statuses say where a status answer carries its value, and which values it has.
type Statuses struct {
	Field         string
	PendingValues []string // in order; the last one repeats
	DoneValue     string
	FailedValue   string
	ErrorKey      string // where a failure's message goes
}

// PackageAPI is the shape of the result-package flow.
type PackageAPI struct {
	CreateMethod, CreatePath     string
	IDKey                        string // where the create answer carries the package id
	StatusMethod, StatusPath     string
	Status                       Statuses
	DownloadMethod, DownloadPath string
	Format                       string // "zip" (default) or "json"
	TextEntries                  bool   // the ZIP also holds <filename>.txt with the text
	DeleteMethod, DeletePath     string
}

const files = "/api/dossier-templates/{templateId}/dossiers/{dossierId}/files"

// DefaultAPI is the documine client's default (guessed) shape.
func DefaultAPI() API {
	return API{
		UploadMethod: http.MethodPost, UploadPath: files, FileField: "file", IDKey: "fileId",
		StatusMethod: http.MethodGet, StatusPath: files + "/{fileId}",
		Status: Statuses{Field: "processingStatus", PendingValues: []string{"UNPROCESSED", "PROCESSING"},
			DoneValue: "PROCESSED", FailedValue: "ERROR", ErrorKey: "fileErrorInfo.cause"},
		ListMethod: http.MethodGet, ListPath: files,
		ComponentsMethod: http.MethodGet, ComponentsPath: files + "/{fileId}/components",
		Package: PackageAPI{
			CreateMethod: http.MethodPost, CreatePath: "/api/dossier-templates/{templateId}/dossiers/{dossierId}/create-download",
			IDKey:        "downloadId",
			StatusMethod: http.MethodGet, StatusPath: "/api/downloads/{downloadId}",
			Status: Statuses{Field: "status", PendingValues: []string{"QUEUED", "GENERATING"},
				DoneValue: "READY", FailedValue: "FAILED", ErrorKey: "errorMessage"},
			DownloadMethod: http.MethodGet, DownloadPath: "/api/downloads/{downloadId}/download", Format: "zip",
			DeleteMethod: http.MethodDelete, DeletePath: "/api/downloads/{downloadId}",
		},
	}
}

// withDefaults fills a's empty fields from DefaultAPI.
func (a API) withDefaults() API {
	d := DefaultAPI()
	def := func(v *string, dv string) {
		if *v == "" {
			*v = dv
		}
	}
	for _, p := range []struct {
		v *string
		d string
	}{
		{&a.UploadMethod, d.UploadMethod}, {&a.UploadPath, d.UploadPath}, {&a.FileField, d.FileField}, {&a.IDKey, d.IDKey},
		{&a.StatusMethod, d.StatusMethod}, {&a.StatusPath, d.StatusPath},
		{&a.ListMethod, d.ListMethod}, {&a.ListPath, d.ListPath},
		{&a.ComponentsMethod, d.ComponentsMethod}, {&a.ComponentsPath, d.ComponentsPath},
		{&a.Package.CreateMethod, d.Package.CreateMethod}, {&a.Package.CreatePath, d.Package.CreatePath},
		{&a.Package.IDKey, d.Package.IDKey},
		{&a.Package.StatusMethod, d.Package.StatusMethod}, {&a.Package.StatusPath, d.Package.StatusPath},
		{&a.Package.DownloadMethod, d.Package.DownloadMethod}, {&a.Package.DownloadPath, d.Package.DownloadPath},
		{&a.Package.Format, d.Package.Format},
		{&a.Package.DeleteMethod, d.Package.DeleteMethod}, {&a.Package.DeletePath, d.Package.DeletePath},
	} {
		def(p.v, p.d)
	}
	a.Status = a.Status.withDefaults(d.Status)
	a.Package.Status = a.Package.Status.withDefaults(d.Package.Status)
	return a
}

func (s Statuses) withDefaults(d Statuses) Statuses {
	if s.Field == "" {
		s.Field = d.Field
	}
	if len(s.PendingValues) == 0 {
		s.PendingValues = d.PendingValues
	}
	if s.DoneValue == "" {
		s.DoneValue = d.DoneValue
	}
	if s.FailedValue == "" {
		s.FailedValue = d.FailedValue
	}
	if s.ErrorKey == "" {
		s.ErrorKey = d.ErrorKey
	}
	return s
}

// Server is the simulated instance, an http.Handler. It is safe for concurrent use.
type Server struct {
	// Scaffold's operations (for Faults, served before anything else is checked, and
	// Requests): "token", "upload", "status", "components", "list", "package-create",
	// "package-status", "package-download", "package-delete". Tokens.ExpireAll makes the
	// access tokens stale mid-flow; Ledger records every accepted upload.
	*simkit.Scaffold

	cfg     Config
	api     API
	refresh *simkit.Tokens

	mu            sync.Mutex
	store         *simkit.Store // nil: files and packages live in memory only
	files         map[string]*file
	order         []string // file ids in upload order, for a stable list
	uploads       int      // files accepted so far: each file's place in order, kept across restarts
	packages      map[string]*pkg
	packageStatus string // forced status of every package, "" when none
	logins        int
	refreshes     int
}

type file struct {
	id, filename string
	seq          int // place in upload order, 1 for the first file
	added        time.Time
	polls        int
	forced       string
	sha256       string
	size         int64
	rec          simkit.Recognised
}

type pkg struct {
	id      string
	fileIDs []string
	polls   int
}

const pdfMagic = "%PDF-"

// New returns a Server, or an error when cfg.API's paths cannot be served together (two
// operations at one method and path).
func New(cfg Config) (_ *Server, err error) {
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 300 * time.Second
	}
	if cfg.RefreshTTL == 0 {
		cfg.RefreshTTL = 1800 * time.Second
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 100 << 20
	}
	s := &Server{
		Scaffold: simkit.NewScaffold(cfg.TokenTTL, cfg.MaxBytes+1<<20),
		cfg:      cfg,
		api:      cfg.API.withDefaults(),
		refresh:  &simkit.Tokens{TTL: cfg.RefreshTTL},
		files:    map[string]*file{},
		packages: map[string]*pkg{},
	}
	// ServeMux panics on a pattern it cannot take; here that is a configuration error.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("documinesim: the API's paths cannot be served: %v", r)
		}
	}()
	a, p := s.api, s.api.Package
	s.Handle("POST /auth/realms/{realm}/protocol/openid-connect/token", "token", s.token)
	s.Handle(a.UploadMethod+" "+a.UploadPath, "upload", s.apiCall(s.upload))
	s.Handle(a.ListMethod+" "+a.ListPath, "list", s.apiCall(s.list))
	s.Handle(a.StatusMethod+" "+a.StatusPath, "status", s.apiCall(s.status))
	s.Handle(a.ComponentsMethod+" "+a.ComponentsPath, "components", s.apiCall(s.components))
	s.Handle(p.CreateMethod+" "+p.CreatePath, "package-create", s.apiCall(s.createPackage))
	s.Handle(p.StatusMethod+" "+p.StatusPath, "package-status", s.apiCall(s.packageStatusAnswer))
	s.Handle(p.DownloadMethod+" "+p.DownloadPath, "package-download", s.apiCall(s.download))
	s.Handle(p.DeleteMethod+" "+p.DeletePath, "package-delete", s.apiCall(s.deletePackage))
	s.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "No endpoint "+r.Method+" "+r.URL.Path)
	})
	return s, nil
}

// SetStatus makes fileID's processingStatus status from now on ("ERROR", "FAILED", "PROCESSED",
// anything). It reports whether the file exists.
func (s *Server) SetStatus(fileID, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[fileID]
	if ok {
		f.forced = status
		s.keepFile(f)
	}
	return ok
}

// ExpireRefreshTokens makes every refresh token issued so far invalid, so the next renewal needs
// a password login.
func (s *Server) ExpireRefreshTokens() { s.refresh.ExpireAll() }

// Logins counts successful password grants.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Refreshes counts successful refresh_token grants.
func (s *Server) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in DocuMine's error shape.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"timestamp": time.Now().UTC().Format(time.RFC3339Nano), "message": msg})
}

// oauthError answers in Keycloak's error shape.
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("realm") != s.cfg.Tenant {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Realm does not exist"})
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The request body is not a form")
		return
	}
	// Only the form counts: the documentation sends the client there, and a client that uses
	// Basic instead should fail here rather than against the real instance.
	if r.PostForm.Get("client_id") != s.cfg.ClientID || r.PostForm.Get("client_secret") != s.cfg.ClientSecret {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Invalid client or Invalid client credentials")
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "password":
		pw, ok := s.cfg.Users[r.PostForm.Get("username")]
		if !ok || pw != r.PostForm.Get("password") {
			oauthError(w, http.StatusUnauthorized, "invalid_grant", "Invalid user credentials")
			return
		}
		s.mu.Lock()
		s.logins++
		s.mu.Unlock()
	case "refresh_token":
		if !s.refresh.Valid(r.PostForm.Get("refresh_token")) {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Token is not active")
			return
		}
		s.mu.Lock()
		s.refreshes++
		s.mu.Unlock()
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
		return
	}
	access, ttl := s.Tokens.Issue()
	refresh, rttl := s.refresh.Issue()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":       access,
		"expires_in":         ttl,
		"refresh_expires_in": rttl,
		"refresh_token":      refresh,
		"token_type":         "Bearer",
		"scope":              "openid",
	})
}

// apiCall wraps an API handler with what every call goes through after an injected fault, in
// this order: the bearer token, the tenant, the dossier template and dossier (where the path
// names them).
func (s *Server) apiCall(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.Tokens.Valid(simkit.Bearer(r)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.cfg.Tenant+`"`)
			writeError(w, http.StatusUnauthorized, "Full authentication is required to access this resource")
			return
		}
		switch t := r.Header.Get("X-TENANT-ID"); {
		case t == "":
			writeError(w, http.StatusForbidden, "Missing X-TENANT-ID header")
			return
		case t != s.cfg.Tenant:
			writeError(w, http.StatusForbidden, fmt.Sprintf("Access to tenant %q is denied", t))
			return
		}
		if v := r.PathValue("templateId"); v != "" && v != s.cfg.DossierTemplateID {
			writeError(w, http.StatusNotFound, fmt.Sprintf("Dossier template %s not found", v))
			return
		}
		if v := r.PathValue("dossierId"); v != "" && v != s.cfg.DossierID {
			writeError(w, http.StatusNotFound, fmt.Sprintf("Dossier %s not found", v))
			return
		}
		h(w, r)
	}
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	// The whole body is capped too, so that other parts cannot be endless; the file part's own
	// limit below is the one that names the problem.
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBytes+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "Current request is not a multipart request")
		return
	}
	tooLarge := fmt.Sprintf("Maximum upload size exceeded: the file is larger than %d bytes", s.cfg.MaxBytes)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Required request part '%s' is not present", s.api.FileField))
			return
		}
		if err != nil {
			if errors.As(err, new(*http.MaxBytesError)) {
				writeError(w, http.StatusRequestEntityTooLarge, tooLarge)
				return
			}
			writeError(w, http.StatusBadRequest, "Malformed multipart request: "+err.Error())
			return
		}
		if part.FormName() != s.api.FileField {
			continue
		}
		// Only what the checks and the simulated reading need is kept, never the file.
		data, err := simkit.Inspect(part, s.cfg.MaxBytes)
		switch {
		case errors.As(err, new(*http.MaxBytesError)) || data.Over:
			writeError(w, http.StatusRequestEntityTooLarge, tooLarge)
			return
		case err != nil:
			writeError(w, http.StatusBadRequest, "Malformed multipart request: "+err.Error())
			return
		case part.FileName() == "":
			writeError(w, http.StatusBadRequest, "The uploaded file has no file name")
			return
		case !data.HasPrefix(pdfMagic):
			writeError(w, http.StatusUnsupportedMediaType, "Unsupported file type: only PDF files can be uploaded")
			return
		}
		s.accept(w, part.FileName(), data)
		return
	}
}

func (s *Server) accept(w http.ResponseWriter, name string, data simkit.Inspection) {
	f := &file{id: simkit.RandomHex(16), filename: name, added: time.Now().UTC(), rec: simkit.Recognise(name, data.Size, data.SHA256)}
	f.sha256, f.size = data.Hex(), data.Size
	s.mu.Lock()
	s.uploads++
	f.seq = s.uploads
	s.files[f.id] = f
	s.order = append(s.order, f.id)
	s.keepFile(f)
	s.mu.Unlock()
	s.Ledger.Record(simkit.Upload{Ref: f.id, Filename: name, SHA256: f.sha256, Size: f.size, At: f.added})
	ans := map[string]any{"filename": name}
	setPath(ans, s.api.IDKey, f.id)
	writeJSON(w, http.StatusCreated, ans)
}

// setPath writes v at a dotted key of m, making the objects on the way.
func setPath(m map[string]any, key string, v any) {
	segs := strings.Split(key, ".")
	for _, seg := range segs[:len(segs)-1] {
		inner, ok := m[seg].(map[string]any)
		if !ok {
			inner = map[string]any{}
			m[seg] = inner
		}
		m = inner
	}
	m[segs[len(segs)-1]] = v
}

// progress is the status after polls looks: pending values in order, then done.
func progress(st Statuses, polls, pendingPolls int) string {
	if polls >= pendingPolls {
		return st.DoneValue
	}
	return st.PendingValues[min(polls, len(st.PendingValues)-1)]
}

// statusOf is f's status; a look (status answer) moves it on. Callers hold s.mu.
func (s *Server) statusOf(f *file, look bool) string {
	if f.forced != "" {
		return f.forced
	}
	st := progress(s.api.Status, f.polls, s.cfg.PendingPolls)
	if look && st != s.api.Status.DoneValue {
		f.polls++
		s.keepFile(f)
	}
	return st
}

func (s *Server) done(f *file) bool { return s.statusOf(f, false) == s.api.Status.DoneValue }

// fileJSON is a file as the status and list answers show it. Callers hold s.mu.
func (s *Server) fileJSON(f *file, status string) map[string]any {
	m := map[string]any{
		"fileId":            f.id,
		"filename":          f.filename,
		"dossierId":         s.cfg.DossierID,
		"dossierTemplateId": s.cfg.DossierTemplateID,
		"workflowStatus":    "NEW",
		"added":             f.added.Format(time.RFC3339Nano),
		"lastUploaded":      f.added.Format(time.RFC3339Nano),
		"numberOfPages":     1,
	}
	setPath(m, s.api.Status.Field, status)
	if strings.EqualFold(status, "ERROR") || strings.EqualFold(status, "FAILED") || status == s.api.Status.FailedValue {
		setPath(m, s.api.Status.ErrorKey, "Simulated analysis failure")
	}
	return m
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (*file, bool) {
	id := r.PathValue("fileId")
	f, ok := s.files[id]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("File %s not found", id))
	}
	return f, ok
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f, ok := s.lookup(w, r)
	if !ok {
		s.mu.Unlock()
		return
	}
	m := s.fileJSON(f, s.statusOf(f, true))
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	out := make([]map[string]any, 0, len(s.order))
	for _, id := range s.order {
		f := s.files[id]
		out = append(out, s.fileJSON(f, s.statusOf(f, false)))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// componentsJSON is a processed file's components answer. Callers hold s.mu.
func (s *Server) componentsJSON(f *file) map[string]any {
	comp := func(n, v string) map[string]any { return map[string]any{"name": n, "values": []string{v}} }
	m := map[string]any{
		"fileId":   f.id,
		"filename": f.filename,
		"components": []map[string]any{
			comp("Invoice_Number", f.rec.InvoiceNumber),
			comp("Invoice_Date", f.rec.Date),
			comp("Total", f.rec.Total),
			comp("Currency", f.rec.Currency),
		},
	}
	if s.api.TextKey != "" {
		setPath(m, s.api.TextKey, f.rec.Text)
	}
	return m
}

func (s *Server) components(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if st := s.statusOf(f, false); st != s.api.Status.DoneValue {
		writeError(w, http.StatusConflict, fmt.Sprintf("File %s is not processed (%s %s)", f.id, s.api.Status.Field, st))
		return
	}
	writeJSON(w, http.StatusOK, s.componentsJSON(f))
}

// createPackage makes a package of the known, processed files named anywhere in the body.
func (s *Server) createPackage(w http.ResponseWriter, r *http.Request) {
	var body any
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "JSON parse error: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, v := range append(stringsIn(body), r.PathValue("fileId")) {
		if f, ok := s.files[v]; ok {
			if !s.done(f) {
				writeError(w, http.StatusConflict, fmt.Sprintf("File %s is not processed yet", v))
				return
			}
			ids = append(ids, v)
		}
	}
	if len(ids) == 0 {
		writeError(w, http.StatusBadRequest, "The request names no file of this dossier")
		return
	}
	id := simkit.RandomHex(12)
	p := &pkg{id: id, fileIDs: ids}
	s.packages[id] = p
	s.keepPackage(p)
	ans := map[string]any{}
	setPath(ans, s.api.Package.IDKey, id)
	writeJSON(w, http.StatusOK, ans)
}

// stringsIn are the string values anywhere in a decoded JSON value.
func stringsIn(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, el := range t {
			out = append(out, stringsIn(el)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, el := range t {
			out = append(out, stringsIn(el)...)
		}
		return out
	}
	return nil
}

// SetPackageStatus makes every package's status status from now on ("" returns to the normal
// course).
func (s *Server) SetPackageStatus(status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.packageStatus = status
}

// Packages counts the packages that exist (made and not deleted).
func (s *Server) Packages() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.packages)
}

// packageOf finds the package of the request's path. Callers hold s.mu.
func (s *Server) packageOf(w http.ResponseWriter, r *http.Request) (*pkg, string, bool) {
	id := r.PathValue("downloadId")
	p, ok := s.packages[id]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Download %s not found", id))
	}
	return p, id, ok
}

// packageStatusOf is p's status; a look moves it on. Callers hold s.mu.
func (s *Server) packageStatusOf(p *pkg, look bool) string {
	if s.packageStatus != "" {
		return s.packageStatus
	}
	st := progress(s.api.Package.Status, p.polls, s.cfg.PendingPolls)
	if look && st != s.api.Package.Status.DoneValue {
		p.polls++
		s.keepPackage(p)
	}
	return st
}

func (s *Server) packageStatusAnswer(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, id, ok := s.packageOf(w, r)
	if !ok {
		return
	}
	st := s.packageStatusOf(p, true)
	m := map[string]any{"downloadId": id, "fileIds": p.fileIDs}
	setPath(m, s.api.Package.Status.Field, st)
	if st == s.api.Package.Status.FailedValue {
		setPath(m, s.api.Package.Status.ErrorKey, "Simulated report generation failure")
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	p, id, ok := s.packageOf(w, r)
	if !ok {
		s.mu.Unlock()
		return
	}
	if st := s.packageStatusOf(p, false); st != s.api.Package.Status.DoneValue {
		s.mu.Unlock()
		writeError(w, http.StatusConflict, fmt.Sprintf("Download %s is not ready (%s %s)", id, s.api.Package.Status.Field, st))
		return
	}
	var reports []map[string]any
	var texts []simkit.Recognised
	var names []string
	for _, fid := range p.fileIDs {
		f := s.files[fid]
		reports = append(reports, s.componentsJSON(f))
		texts = append(texts, f.rec)
		names = append(names, f.filename)
	}
	s.mu.Unlock()
	if s.api.Package.Format == "json" {
		if len(reports) == 1 {
			writeJSON(w, http.StatusOK, reports[0])
		} else {
			writeJSON(w, http.StatusOK, reports)
		}
		return
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i, rep := range reports {
		b, _ := json.MarshalIndent(rep, "", "  ")
		add(zw, names[i]+".components.json", b)
		if s.api.Package.TextEntries {
			add(zw, names[i]+".txt", []byte(texts[i].Text))
		}
	}
	// A report that is not JSON, as real packages hold spreadsheets: kept, not read.
	add(zw, "components.csv", []byte("file,component,value\n"))
	_ = zw.Close()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+id+`.zip"`)
	_, _ = w.Write(buf.Bytes())
}

func add(zw *zip.Writer, name string, b []byte) {
	f, err := zw.Create(name)
	if err == nil {
		_, _ = f.Write(b)
	}
}

func (s *Server) deletePackage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, id, ok := s.packageOf(w, r); ok {
		delete(s.packages, id)
		// Like a failed Put (see keepFile), a failed Delete only leaves the package to come back.
		_ = s.store.Delete(packageKey(id))
		w.WriteHeader(http.StatusNoContent)
	}
}

// storedFile is a file as the state store keeps it: what its answers need (its name, progress,
// and the fields and text the simulation recognised in it; its digest and size for the Ledger),
// never its bytes, which no answer returns.
type storedFile struct {
	ID       string            `json:"id"`
	Seq      int               `json:"seq"`
	Filename string            `json:"filename"`
	Added    time.Time         `json:"added"`
	Polls    int               `json:"polls"`
	Forced   string            `json:"forced,omitempty"`
	SHA256   string            `json:"sha256"`
	Size     int64             `json:"size"`
	Rec      simkit.Recognised `json:"recognised"`
}

// storedPackage is a result package as the state store keeps it.
type storedPackage struct {
	ID      string   `json:"id"`
	FileIDs []string `json:"fileIds"`
	Polls   int      `json:"polls"`
}

const (
	filePrefix    = "file/"
	packagePrefix = "package/"
)

func packageKey(id string) string { return packagePrefix + id }

// KeepState keeps the files and result packages in the journal at path: those it holds are
// known again, so that a sandbox restarted with ingest still has the documents in flight (their
// progress, their place in the file list that reconciliation reads) and the packages made for
// them; every change is written there. Access and refresh tokens are not kept: a client that
// presents one from before the restart is refused (401) and logs in again, as it must after a
// real instance forgets its sessions. Nor are SetPackageStatus and Faults, which are a test's
// settings rather than records.
//
// It is for a simulator that has served nothing yet; call CloseState when done.
func (s *Server) KeepState(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return errors.New("documinesim: the sandbox state is already kept")
	}
	if len(s.files) > 0 || len(s.packages) > 0 {
		// They would be missing from the journal, and their upload order would clash with it.
		return errors.New("documinesim: the sandbox state must be loaded before the first upload")
	}
	store, records, order, err := simkit.OpenStore(path, 0)
	if err != nil {
		return fmt.Errorf("documinesim: the dossier's files and result packages cannot be kept: %w", err)
	}
	var loaded []*file
	var stale []string
	for _, k := range order {
		if !strings.HasPrefix(k, filePrefix) {
			continue
		}
		var sf storedFile
		if json.Unmarshal(records[k], &sf) != nil || sf.ID == "" {
			continue // not a record this simulator wrote: nothing to serve from it
		}
		f := &file{id: sf.ID, seq: sf.Seq, filename: sf.Filename, added: sf.Added, polls: sf.Polls,
			forced: sf.Forced, sha256: sf.SHA256, size: sf.Size, rec: sf.Rec}
		s.files[f.id] = f
		loaded = append(loaded, f)
		s.uploads = max(s.uploads, f.seq)
	}
	// The journal orders records by their last change (a status look moves a file to its end);
	// the list answers in upload order.
	slices.SortStableFunc(loaded, func(a, b *file) int { return a.seq - b.seq })
	for _, f := range loaded {
		s.order = append(s.order, f.id)
		// The ledger proves how often a document reached the vendor: an upload before the
		// restart still counts, so a second one after it shows as the duplicate it is.
		s.Ledger.Record(simkit.Upload{Ref: f.id, Filename: f.filename, SHA256: f.sha256, Size: f.size, At: f.added})
	}
	for _, k := range order {
		if !strings.HasPrefix(k, packagePrefix) {
			continue
		}
		var sp storedPackage
		if json.Unmarshal(records[k], &sp) != nil || sp.ID == "" {
			continue
		}
		// A bounded journal may have dropped an old package's files: it keeps those it still
		// has, and one with none left is gone, as a download of nothing cannot be served.
		p := &pkg{id: sp.ID, polls: sp.Polls}
		for _, id := range sp.FileIDs {
			if _, ok := s.files[id]; ok {
				p.fileIDs = append(p.fileIDs, id)
			}
		}
		if len(p.fileIDs) == 0 {
			stale = append(stale, k)
			continue
		}
		s.packages[p.id] = p
	}
	s.store = store
	for _, k := range stale {
		_ = s.store.Delete(k)
	}
	return nil
}

// CloseState closes the journal KeepState opened; from then on changes stay in memory.
func (s *Server) CloseState() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.store.Close()
	s.store = nil
	if err != nil {
		return fmt.Errorf("documinesim: the dossier's last changes may not be kept: %w", err)
	}
	return nil
}

// keepFile writes f to the journal (s.mu held). A failed write is not the client's problem: the
// file lives on in memory, and only a restart would forget the change.
func (s *Server) keepFile(f *file) {
	_ = s.store.Put(filePrefix+f.id, storedFile{ID: f.id, Seq: f.seq, Filename: f.filename, Added: f.added,
		Polls: f.polls, Forced: f.forced, SHA256: f.sha256, Size: f.size, Rec: f.rec})
}

// keepPackage writes p to the journal (s.mu held), as keepFile does a file.
func (s *Server) keepPackage(p *pkg) {
	_ = s.store.Put(packageKey(p.id), storedPackage{ID: p.id, FileIDs: p.fileIDs, Polls: p.polls})
}
