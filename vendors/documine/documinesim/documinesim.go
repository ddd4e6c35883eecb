// Package documinesim simulates a DocuMine instance for tests: a Keycloak-style token endpoint
// (password and refresh_token grants, client credentials in the form) and the dossier file API
// at the paths the documine client uses by default.
//
// Its choices where DocuMine's behaviour is not documented:
//   - a missing or wrong X-TENANT-ID is 403 with a message: the token is fine but not for that
//     workspace;
//   - only PDF is accepted, recognised by its magic bytes (RedactManager takes PDF; DOCX and
//     the like need a licence): anything else is 415;
//   - a file larger than MaxBytes is 413, found while reading, never by trusting a header;
//   - processingStatus is UNPROCESSED on the first look, PROCESSING on the next PendingPolls-1,
//     then PROCESSED (PendingPolls 0: processed at once); SetStatus overrides it;
//   - components before PROCESSED are 409;
//   - components are {"fileId","filename","components":[{"name","values":[…]}]};
//   - the file list is a JSON array of the same objects the status answer has.
package documinesim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	// PendingPolls is how many status looks answer "not yet" before PROCESSED.
	PendingPolls int
	// MaxBytes is the largest file accepted, 100 MiB by default.
	MaxBytes int64
}

// Server is the simulated instance, an http.Handler. It is safe for concurrent use.
type Server struct {
	// Scaffold's operations (for Faults, served before anything else is checked, and
	// Requests): "token", "upload", "status", "components", "list". Tokens.ExpireAll makes the
	// access tokens stale mid-flow; Ledger records every accepted upload.
	*simkit.Scaffold

	cfg     Config
	refresh *simkit.Tokens

	mu        sync.Mutex
	files     map[string]*file
	order     []string // file ids in upload order, for a stable list
	logins    int
	refreshes int
}

type file struct {
	id, filename string
	added        time.Time
	polls        int
	forced       string
	rec          simkit.Recognised
}

const pdfMagic = "%PDF-"

// New returns a Server.
func New(cfg Config) *Server {
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
		refresh:  &simkit.Tokens{TTL: cfg.RefreshTTL},
		files:    map[string]*file{},
	}
	const files = "/api/dossier-templates/{templateId}/dossiers/{dossierId}/files"
	s.Handle("POST /auth/realms/{realm}/protocol/openid-connect/token", "token", s.token)
	s.Handle("POST "+files, "upload", s.api(s.upload))
	s.Handle("GET "+files, "list", s.api(s.list))
	s.Handle("GET "+files+"/{fileId}", "status", s.api(s.status))
	s.Handle("GET "+files+"/{fileId}/components", "components", s.api(s.components))
	s.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "No endpoint "+r.Method+" "+r.URL.Path)
	})
	return s
}

// SetStatus makes fileID's processingStatus status from now on ("ERROR", "FAILED", "PROCESSED",
// anything). It reports whether the file exists.
func (s *Server) SetStatus(fileID, status string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[fileID]
	if ok {
		f.forced = status
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

// api wraps a file API handler with what every call goes through after an injected fault, in
// this order: the bearer token, the tenant, the dossier template and dossier.
func (s *Server) api(h http.HandlerFunc) http.HandlerFunc {
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
		if r.PathValue("templateId") != s.cfg.DossierTemplateID {
			writeError(w, http.StatusNotFound, fmt.Sprintf("Dossier template %s not found", r.PathValue("templateId")))
			return
		}
		if r.PathValue("dossierId") != s.cfg.DossierID {
			writeError(w, http.StatusNotFound, fmt.Sprintf("Dossier %s not found", r.PathValue("dossierId")))
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
			writeError(w, http.StatusBadRequest, "Required request part 'file' is not present")
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
		if part.FormName() != "file" {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(part, s.cfg.MaxBytes+1))
		switch {
		case errors.As(err, new(*http.MaxBytesError)) || int64(len(data)) > s.cfg.MaxBytes:
			writeError(w, http.StatusRequestEntityTooLarge, tooLarge)
			return
		case err != nil:
			writeError(w, http.StatusBadRequest, "Malformed multipart request: "+err.Error())
			return
		case part.FileName() == "":
			writeError(w, http.StatusBadRequest, "The uploaded file has no file name")
			return
		case !bytes.HasPrefix(data, []byte(pdfMagic)):
			writeError(w, http.StatusUnsupportedMediaType, "Unsupported file type: only PDF files can be uploaded")
			return
		}
		s.accept(w, part.FileName(), data)
		return
	}
}

func (s *Server) accept(w http.ResponseWriter, name string, data []byte) {
	f := &file{id: simkit.RandomHex(16), filename: name, added: time.Now().UTC(), rec: simkit.Recognise(name, data)}
	sha, size := simkit.Digest(data)
	s.mu.Lock()
	s.files[f.id] = f
	s.order = append(s.order, f.id)
	s.mu.Unlock()
	s.Ledger.Record(simkit.Upload{Ref: f.id, Filename: name, SHA256: sha, Size: size, At: f.added})
	writeJSON(w, http.StatusCreated, map[string]string{"fileId": f.id, "filename": name})
}

// statusOf is f's processingStatus; a look (status answer) moves it on. Callers hold s.mu.
func (s *Server) statusOf(f *file, look bool) string {
	if f.forced != "" {
		return f.forced
	}
	if f.polls >= s.cfg.PendingPolls {
		return "PROCESSED"
	}
	st := "PROCESSING"
	if f.polls == 0 {
		st = "UNPROCESSED"
	}
	if look {
		f.polls++
	}
	return st
}

// fileJSON is a file as the status and list answers show it. Callers hold s.mu.
func (s *Server) fileJSON(f *file, status string) map[string]any {
	m := map[string]any{
		"fileId":            f.id,
		"filename":          f.filename,
		"dossierId":         s.cfg.DossierID,
		"dossierTemplateId": s.cfg.DossierTemplateID,
		"processingStatus":  status,
		"workflowStatus":    "NEW",
		"added":             f.added.Format(time.RFC3339Nano),
		"lastUploaded":      f.added.Format(time.RFC3339Nano),
		"numberOfPages":     1,
	}
	if status == "ERROR" || status == "FAILED" {
		m["fileErrorInfo"] = map[string]string{"cause": "Simulated analysis failure", "service": "analysis"}
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

func (s *Server) components(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f, ok := s.lookup(w, r)
	if !ok {
		s.mu.Unlock()
		return
	}
	st := s.statusOf(f, false)
	id, name, rec := f.id, f.filename, f.rec
	s.mu.Unlock()
	if st != "PROCESSED" {
		writeError(w, http.StatusConflict, fmt.Sprintf("File %s is not processed (processingStatus %s)", id, st))
		return
	}
	comp := func(n, v string) map[string]any { return map[string]any{"name": n, "values": []string{v}} }
	writeJSON(w, http.StatusOK, map[string]any{
		"fileId":   id,
		"filename": name,
		"components": []map[string]any{
			comp("Invoice_Number", rec.InvoiceNumber),
			comp("Invoice_Date", rec.Date),
			comp("Total", rec.Total),
			comp("Currency", rec.Currency),
		},
	})
}
