// Package laigosim simulates Laigo smartICR as Laigo documents it: a Keycloak token endpoint, the
// upload that answers a bare JSON string job id, and the result endpoints that answer 202 until the
// job is done. Where Laigo's behaviour is unknown ([U] in the vendor reference) the simulator
// follows the default the client assumes, and Config can change it.
package laigosim

import (
	"archive/zip"
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

// Paths the simulator serves, the same as Laigo's (token and API share one host here).
const (
	TokenPath  = "/realms/SmartTools/protocol/openid-connect/token"
	UploadPath = "/api/FileUpload/v1/Upload/smartICR"
	ResultPath = "/api/Result/v1/JobResults"
)

// Laigo's own words, from its smartICR page; clients match on some of them.
const (
	MsgPending     = "Result not yet available, please try again later."
	MsgExpired     = "Result not available any more."
	MsgFormat      = "Please send the correct input file format!"
	MsgTooLarge    = "Please send a file that doesn’t exceed the size limit!"
	MsgMalware     = "Please make sure that your file doesn’t contain any suspicious malware data!"
	MsgLanguage    = "Model does not support Language Hint"
	MsgOutput      = "No valid input formats chosen for this SmartTool"
	MsgNoLaigos    = "You ran out of Laigos..."
	MsgNoFile      = "No file was sent."
	MsgUnknownJob  = "Job not found."
	MsgNoToken     = "A valid access token is required."
	msgBadClient   = "Invalid client or Invalid client credentials"
	defaultScope   = "smarttools:accounting smarttools:consumption"
	defaultMaxSize = 10 << 20
)

// eicar is the industry's harmless anti-virus test string: a file holding it is "malware" here, so
// tests can reach Laigo's malware refusal.
const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// Config shapes the simulated account.
type Config struct {
	ClientID, ClientSecret string
	// TokenTTL is the access token lifetime; Laigo's is 300 s.
	TokenTTL time.Duration
	// PendingPolls is how many result requests (json or zip) of a job are answered 202 before the
	// result is ready.
	PendingPolls int
	// PendingRetryAfter, when set, is sent as Retry-After with each 202 (Laigo documents none).
	PendingRetryAfter time.Duration
	// UploadPath and ResultPath move the API (the client's upload_path and result_path); the
	// documented ones by default.
	UploadPath, ResultPath string
	// PendingStatus is the status "Result not yet available, please try again later." comes
	// with [U]: 202 by default (the documented "Accepted"); a 2xx carries the words alone, like
	// the 202, another status as Laigo's error object ({"code","message"}).
	PendingStatus int
	// PendingMessage replaces the words: Laigo's document rewords each of its messages
	// ("Outcome data currently unavailable, kindly retry at a later time.").
	PendingMessage string
	// MaxBytes is the file size limit; 10 MB as Laigo documents for its sibling tools [I].
	MaxBytes int64
	// ExpiredStatus is the status of "Result not available any more." [U]; 404 by default, since
	// Laigo's documented codes are 200/202/400/401/404 and a gone result is "not found".
	ExpiredStatus int
	// ExpireAfterReads makes a result expire after this many successful reads (json or zip); 0 keeps
	// it. Laigo's retention is unknown [U].
	ExpireAfterReads int
	// Languages are the ISO 639-1 codes accepted as languageHint; a default list when nil.
	Languages []string
	// Laigos is the account's credit: each accepted upload uses one, and an upload with none left is
	// refused. 0 means unlimited.
	Laigos int
}

// Job is what the simulator knows of one upload.
type Job struct {
	ID, Filename  string
	Size          int64
	ContentType   string
	OutputFormats []string
	LanguageHint  string
	Email         string
	Polls, Reads  int
	Expired       bool
}

type job struct {
	Job
	text  string
	pages int
}

// Server is the simulated Laigo, an http.Handler safe for concurrent use.
type Server struct {
	// Scaffold's operations (for Faults and Requests): token, upload, result (JSON), zip.
	*simkit.Scaffold

	cfg Config

	mu        sync.Mutex
	store     *simkit.Store // nil: jobs live in memory only
	jobs      map[string]*job
	spent     int
	refusals  int
	languages map[string]bool
}

// New returns a simulator with cfg's defaults filled in.
func New(cfg Config) *Server {
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 300 * time.Second
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = defaultMaxSize
	}
	if cfg.UploadPath == "" {
		cfg.UploadPath = UploadPath
	}
	if cfg.ResultPath == "" {
		cfg.ResultPath = ResultPath
	}
	if cfg.PendingStatus == 0 {
		cfg.PendingStatus = http.StatusAccepted
	}
	if cfg.PendingMessage == "" {
		cfg.PendingMessage = MsgPending
	}
	if cfg.ExpiredStatus == 0 {
		cfg.ExpiredStatus = http.StatusNotFound
	}
	if cfg.Languages == nil {
		// Latin, Cyrillic and Greek script languages common OCR engines read; Laigo publishes no list.
		cfg.Languages = strings.Fields("en de fr it es pt nl pl cs sk sl hr hu ro da sv no fi et lv lt el ru uk bg tr")
	}
	s := &Server{
		Scaffold:  simkit.NewScaffold(cfg.TokenTTL, cfg.MaxBytes+1<<20),
		cfg:       cfg,
		jobs:      map[string]*job{},
		languages: map[string]bool{},
	}
	for _, l := range cfg.Languages {
		s.languages[strings.ToLower(l)] = true
	}
	s.Handle("POST "+TokenPath, "token", s.token)
	s.Handle("POST "+cfg.UploadPath, "upload", s.upload)
	s.Handle("GET "+cfg.ResultPath+"/{id}/json", "result", s.result("result"))
	s.Handle("GET "+cfg.ResultPath+"/{id}/zip", "zip", s.result("zip"))
	s.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "No such route.")
	})
	return s
}

// Expire makes a job's result "not available any more", and reports whether the job exists.
func (s *Server) Expire(jobID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobID]
	if ok {
		j.Expired = true
		s.keep(j)
	}
	return ok
}

// Job returns what the simulator knows of a job.
func (s *Server) Job(jobID string) (Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[jobID]
	if !ok {
		return Job{}, false
	}
	c := j.Job
	c.OutputFormats = slices.Clone(c.OutputFormats)
	return c, true
}

// Refusals counts API requests refused for a missing, unknown or expired token: a client that
// renews its token in time causes none.
func (s *Server) Refusals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refusals
}

// token is Keycloak's client_credentials grant. Keycloak takes the client's credentials from the
// form or from HTTP Basic; it does not read multipart bodies.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Unreadable form")
		return
	}
	id, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		// RFC 6749 §2.3.1: Basic credentials are form-urlencoded first.
		id, secret = unescape(u), unescape(p)
	}
	switch g := r.PostForm.Get("grant_type"); {
	case g == "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Missing form parameter: grant_type")
		return
	case g != "client_credentials":
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant_type")
		return
	}
	if !equal(id, s.cfg.ClientID) || !equal(secret, s.cfg.ClientSecret) {
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", msgBadClient)
		return
	}
	tok, ttl := s.Tokens.Issue()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":       tok,
		"expires_in":         ttl,
		"refresh_expires_in": 0,
		"token_type":         "Bearer",
		"not-before-policy":  0,
		"scope":              defaultScope,
	})
}

func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.Tokens.Valid(simkit.Bearer(r)) {
		return true
	}
	s.mu.Lock()
	s.refusals++
	s.mu.Unlock()
	writeError(w, http.StatusUnauthorized, MsgNoToken)
	return false
}

// upload reads the multipart form as a stream, holding at most MaxBytes of the file: a client that
// sends more gets Laigo's size refusal, not an exhausted server.
func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	// The form's other fields are small; this bounds a body that is not what it claims.
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBytes+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "Please send the file as multipart/form-data.")
		return
	}
	var (
		file     simkit.Inspection
		pages    pdfPages
		filename string
		gotFile  bool
		fields   = map[string]string{}
	)
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "Unreadable multipart body.")
			return
		}
		if p.FormName() == "file" && !gotFile {
			gotFile, filename = true, path.Base(p.FileName())
			// One pass keeps what the checks below need; the pages are counted on the way
			// (and used only if the file turns out to be a PDF).
			file, err = simkit.InspectWith(p, simkit.InspectConfig{Limit: s.cfg.MaxBytes, Markers: []string{eicar}, Also: &pages})
			if err != nil {
				writeError(w, http.StatusBadRequest, "Unreadable multipart body.")
				return
			}
			if file.Over {
				writeError(w, http.StatusBadRequest, MsgTooLarge)
				return
			}
			continue
		}
		v, err := io.ReadAll(io.LimitReader(p, 4<<10))
		if err != nil {
			writeError(w, http.StatusBadRequest, "Unreadable multipart body.")
			return
		}
		fields[p.FormName()] = strings.TrimSpace(string(v))
	}
	if !gotFile {
		writeError(w, http.StatusBadRequest, MsgNoFile)
		return
	}
	ctype, ok := sniff(file.Head)
	if !ok {
		writeError(w, http.StatusBadRequest, MsgFormat)
		return
	}
	if file.Has(eicar) {
		writeError(w, http.StatusBadRequest, MsgMalware)
		return
	}
	formats, ok := outputFormats(fields["outputFormats"])
	if !ok {
		writeError(w, http.StatusBadRequest, MsgOutput)
		return
	}
	lang := strings.ToLower(fields["languageHint"])
	if lang != "" && !s.languages[lang] {
		writeError(w, http.StatusBadRequest, MsgLanguage)
		return
	}
	if filename == "" || filename == "." || filename == "/" {
		filename = "upload"
	}

	j := &job{
		Job: Job{
			ID: newJobID(), Filename: filename, Size: file.Size, ContentType: ctype,
			OutputFormats: formats, LanguageHint: lang, Email: fields["email"],
		},
		text:  simkit.Recognise(filename, file.Size, file.SHA256).Text,
		pages: pageCount(ctype, pages.Count()),
	}
	s.mu.Lock()
	if s.cfg.Laigos > 0 && s.spent >= s.cfg.Laigos {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, MsgNoLaigos)
		return
	}
	s.spent++
	s.jobs[j.ID] = j
	s.keep(j)
	s.mu.Unlock()

	s.Ledger.Record(simkit.Upload{Ref: j.ID, Filename: filename, SHA256: file.Hex(), Size: file.Size})
	writeJSON(w, http.StatusCreated, j.ID)
}

// result serves the json or zip result of a job: 202 while pending, then the result, until it
// expires.
func (s *Server) result(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(w, r) {
			return
		}
		s.mu.Lock()
		j, ok := s.jobs[r.PathValue("id")]
		switch {
		case !ok:
			s.mu.Unlock()
			writeError(w, http.StatusNotFound, MsgUnknownJob)
			return
		case j.Expired:
			s.mu.Unlock()
			s.writeExpired(w)
			return
		case j.Polls < s.cfg.PendingPolls:
			j.Polls++
			s.keep(j)
			s.mu.Unlock()
			if s.cfg.PendingRetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.PendingRetryAfter/time.Second)))
			}
			if st := s.cfg.PendingStatus; st >= 200 && st < 300 {
				writeJSON(w, st, s.cfg.PendingMessage)
			} else {
				writeError(w, st, s.cfg.PendingMessage)
			}
			return
		}
		j.Reads++
		if s.cfg.ExpireAfterReads > 0 && j.Reads >= s.cfg.ExpireAfterReads {
			j.Expired = true
		}
		s.keep(j)
		snap := *j
		snap.OutputFormats = slices.Clone(j.OutputFormats)
		s.mu.Unlock()

		if op == "zip" {
			writeZip(w, &snap)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"files": []map[string]any{{
			"inputFileName": snap.Filename,
			"size":          snap.Size,
			"pageCount":     snap.pages,
			"content":       snap.text,
		}}})
	}
}

func (s *Server) writeExpired(w http.ResponseWriter) {
	if st := s.cfg.ExpiredStatus; st >= 200 && st < 300 {
		// A success status carries the words alone, like the 202's.
		writeJSON(w, st, MsgExpired)
		return
	}
	writeError(w, s.cfg.ExpiredStatus, MsgExpired)
}

// writeZip answers with what Laigo's zip holds: the searchable PDF and/or the text file, as the
// upload's outputFormats asked.
func writeZip(w http.ResponseWriter, j *job) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	base := strings.TrimSuffix(j.Filename, path.Ext(j.Filename))
	add := func(name string, b []byte) {
		f, err := zw.Create(name)
		if err == nil {
			_, err = f.Write(b)
		}
		if err != nil {
			panic(err) // writing to a bytes.Buffer does not fail
		}
	}
	if slices.Contains(j.OutputFormats, "PDF") {
		add(base+".pdf", searchablePDF(j.text))
	}
	if slices.Contains(j.OutputFormats, "TEXT") {
		add(base+".txt", []byte(j.text))
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.zip"`, j.ID))
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// searchablePDF is a one-page PDF-looking file carrying the text; enough for a test to tell it from
// the text file, not meant for a PDF reader.
func searchablePDF(text string) []byte {
	return fmt.Appendf(nil, "%%PDF-1.7\n%% simulated searchable PDF\n1 0 obj << /Type /Page >> endobj\n%% %s\n%%%%EOF\n",
		strings.ReplaceAll(text, "\n", "\n% "))
}

// outputFormats reads the outputFormats field. Laigo does not say what an absent field means [U];
// the simulator makes both, which is also what the client asks for by default.
func outputFormats(v string) ([]string, bool) {
	if strings.TrimSpace(v) == "" {
		return []string{"PDF", "TEXT"}, true
	}
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		f = strings.ToUpper(strings.TrimSpace(f))
		if f != "PDF" && f != "TEXT" {
			return nil, false
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, true
}

// sniff tells the types Laigo takes by their magic bytes: PNG, JPG and PDF (its smartICR page), and
// TIFF, WEBP and HEIC (its error-management page). What the sender claims does not count.
func sniff(b []byte) (string, bool) {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "image/png", true
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return "image/jpeg", true
	case bytes.HasPrefix(b, []byte("%PDF-")):
		return "application/pdf", true
	case bytes.HasPrefix(b, []byte("II*\x00")), bytes.HasPrefix(b, []byte("MM\x00*")):
		return "image/tiff", true
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "image/webp", true
	case len(b) >= 12 && string(b[4:8]) == "ftyp" && slices.Contains([]string{"heic", "heix", "heim", "heis", "mif1", "msf1"}, string(b[8:12])):
		return "image/heic", true
	}
	return "", false
}

// pageCount is a document's page count: the page objects of a PDF, when it has any, else one.
func pageCount(ctype string, pdfPageObjects int) int {
	if ctype == "application/pdf" && pdfPageObjects > 0 {
		return pdfPageObjects
	}
	return 1
}

// newJobID makes a random UUID (version 4), the shape of Laigo's job ids.
func newJobID() string {
	h := []byte(simkit.RandomHex(16))
	h[12] = '4'
	h[16] = "89ab"[h[16]%4]
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

// codes are the "code" values of Laigo's error JSON by status.
func code(status int) string {
	switch {
	case status == http.StatusBadRequest:
		return "BadRequest"
	case status == http.StatusUnauthorized:
		return "Unauthorized"
	case status == http.StatusForbidden:
		return "Forbidden"
	case status == http.StatusNotFound:
		return "NotFound"
	case status >= 500:
		return "ServerError"
	}
	return http.StatusText(status)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"code": code(status), "message": msg})
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps and strings are marshalled here
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// storedJob is a job as the state store keeps it.
type storedJob struct {
	Job
	Text  string `json:"text"`
	Pages int    `json:"pages"`
}

// KeepState keeps the jobs in the journal at path: those it holds are known again (a sandbox
// restarted with ingest still has the jobs in flight), and every change is written there.
func (s *Server) KeepState(path string) error {
	store, records, order, err := simkit.OpenStore(path, 0)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range order {
		var sj storedJob
		if json.Unmarshal(records[k], &sj) != nil || sj.ID == "" {
			continue
		}
		s.jobs[sj.ID] = &job{Job: sj.Job, text: sj.Text, pages: sj.Pages}
	}
	s.store = store
	return nil
}

// CloseState closes the journal KeepState opened.
func (s *Server) CloseState() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.Close()
}

// keep writes j to the journal (s.mu held). A failed write is not the client's problem: the
// job lives on in memory.
func (s *Server) keep(j *job) {
	_ = s.store.Put("job/"+j.ID, storedJob{Job: j.Job, Text: j.text, Pages: j.pages})
}
