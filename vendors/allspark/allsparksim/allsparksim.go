// Package allsparksim simulates Allspark's API (https://apidocs.ikarus.ai/) for tests: cases made
// by direct upload or by the multi-file flow, polled to completion, with fields and OCR text
// derived from the uploaded bytes by simkit.Recognise.
//
// Where the documentation is silent the simulator picks DRF's usual behaviour and says so: error
// bodies are {"detail": "..."} or field errors {"file": ["..."]}, unknown cases are 404
// {"detail":"Not found."}, and the paths are exactly the documented ones (anything else is 404).
package allsparksim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

// Prefix is where the API lives, as in https://api-prod.ikarus.ai/api/v1.
const Prefix = "/api/v1"

// DefaultMaxBytes is the upload limit when Config.MaxBytes is 0. Allspark documents none [U];
// 20 MiB is an assumption to be confirmed with the vendor.
const DefaultMaxBytes = 20 << 20

// Statuses the simulator uses; SetStatus may set any other (a process's custom step).
const (
	StatusPending   = "pending"
	StatusCompleted = "completed"
)

// Config configures a Server.
type Config struct {
	// APIKey is the key the API-KEY header must carry. Empty accepts any non-empty key.
	APIKey string
	// PendingPolls is how many GET /cases/{id} answers say "pending" once a case is processing,
	// before it says "completed".
	PendingPolls int
	// MaxBytes limits one uploaded file; DefaultMaxBytes when 0.
	MaxBytes int64
	// DocumentTypes are the process's document types; when set, any other document_type is a 400.
	DocumentTypes []string
	// UploadPath is where the direct upload is served (under Prefix, with its trailing slash):
	// "/cases/direct-upload/" by default, or the prose's "/direct-upload/".
	UploadPath string
	// CallbackURL, when set, is called once a case is completely processed, as Allspark does when
	// a callback URL is configured in its API settings. The case then completes on its own,
	// CallbackAfter after processing starts, without waiting to be polled.
	CallbackURL   string
	CallbackAfter time.Duration
	// CallbackFormat is how the call is made: Allspark documents only "an API call … with the
	// data" [U], so every plausible reading can be played. Default CallbackJSON.
	CallbackFormat CallbackFormat
}

// CallbackFormat is one reading of Allspark's undocumented callback.
type CallbackFormat string

// The readings the simulator can play.
const (
	CallbackJSON       CallbackFormat = "json"        // POST, the case as GET /cases/{id} gives it
	CallbackJSONID     CallbackFormat = "json-id"     // POST {"id": 7, "status": "completed"}
	CallbackJSONNested CallbackFormat = "json-nested" // POST {"event": "case.completed", "case": {…the case…}}
	CallbackJSONData   CallbackFormat = "json-data"   // POST {"data": {"case_id": 7, …}}
	CallbackForm       CallbackFormat = "form"        // POST application/x-www-form-urlencoded case_id=7&status=completed
	CallbackQuery      CallbackFormat = "get"         // GET ?case_id=7&status=completed
	CallbackGarbage    CallbackFormat = "garbage"     // POST text/plain "case 7 done": no id anyone can read
)

// Server is the simulated API, an http.Handler. It is safe for concurrent use.
type Server struct {
	// Scaffold's operations (for Faults and Requests): "upload" (direct upload), "create",
	// "add-file", "mark-complete", "case" (GET one case), "list", "ocr". Its Ledger records every
	// file accepted, with its case id as Ref.
	*simkit.Scaffold

	cfg Config

	mu     sync.Mutex
	store  *simkit.Store // nil: cases live in memory only
	apiKey string
	nextID int
	cases  map[int]*simCase
	// calls are the callbacks sent (or tried), for tests; callbacksDone ends pending ones.
	calls         []Call
	callbacksDone chan struct{}
	closeOnce     sync.Once
	wg            sync.WaitGroup
}

// Call is one callback the simulator made.
type Call struct {
	CaseID int
	Format CallbackFormat
	Status int // the answer's status; 0 when the call failed
	Err    string
}

type simCase struct {
	id         int
	status     string
	processing bool // direct upload, or marked complete
	pinned     bool // status set by SetStatus: no longer advances on its own
	polls      int  // pending answers given while processing
	files      []simFile
	created    time.Time
	updated    time.Time
}

type simFile struct {
	name    string
	docType string
	rec     simkit.Recognised
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.UploadPath == "" {
		cfg.UploadPath = "/cases/direct-upload/"
	}
	s := &Server{
		// Allspark has no token exchange: the scaffold's tokens go unused.
		Scaffold: simkit.NewScaffold(0, cfg.MaxBytes+1<<20),
		cfg:      cfg,
		apiKey:   cfg.APIKey,
		nextID:   1,
		cases:    map[int]*simCase{},

		callbacksDone: make(chan struct{}),
	}
	if s.cfg.CallbackFormat == "" {
		s.cfg.CallbackFormat = CallbackJSON
	}
	m := s.Scaffold
	// {$} anchors a pattern that ends in a slash: without it the pattern would match a subtree.
	// The document's samples post to /cases/direct-upload/, its prose header names
	// /direct-upload/ [U]: one of them is served, the samples' unless UploadPath says otherwise.
	m.Handle("POST "+Prefix+s.cfg.UploadPath+"{$}", "upload", s.authed(s.directUpload))
	m.Handle("POST "+Prefix+"/cases/{$}", "create", s.authed(s.createCase))
	m.Handle("GET "+Prefix+"/cases/{$}", "list", s.authed(s.listCases))
	m.Handle("POST "+Prefix+"/cases/{id}/add-file/{$}", "add-file", s.authed(s.addFile))
	m.Handle("POST "+Prefix+"/cases/{id}/mark-complete/{$}", "mark-complete", s.authed(s.markComplete))
	m.Handle("GET "+Prefix+"/cases/{id}", "case", s.authed(s.getCase))
	m.Handle("GET "+Prefix+"/cases/{id}/ocr-output", "ocr", s.authed(s.ocrOutput))
	notFound := func(w http.ResponseWriter, r *http.Request) { detail(w, http.StatusNotFound, "Not found.") }
	// ServeMux would redirect a path missing its trailing slash; DRF cannot redirect a POST, so
	// here, as there in effect, the slashless paths lead nowhere, and a client dropping a slash
	// fails its tests.
	for _, p := range []string{strings.TrimSuffix(s.cfg.UploadPath, "/"), "/cases", "/cases/{id}/add-file", "/cases/{id}/mark-complete"} {
		m.HandleFunc("POST "+Prefix+p, notFound)
	}
	m.HandleFunc("/", notFound)
	return s
}

// SetAPIKey replaces the accepted key, as when the account's key is revoked or rotated in the UI.
func (s *Server) SetAPIKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiKey = key
}

// SetStatus gives a case any status ("in_review", "failed", "completed", …) and keeps it there.
func (s *Server) SetStatus(caseID, status string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.lookup(caseID)
	if !ok {
		return fmt.Errorf("allsparksim: no case %q", caseID)
	}
	c.status, c.pinned = status, true
	c.updated = now()
	s.keep(c)
	return nil
}

// Status returns a case's current status without counting a poll.
func (s *Server) Status(caseID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.lookup(caseID)
	if !ok {
		return "", false
	}
	return c.status, true
}

// authed wants the API key before h.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.authorised(w, r) {
			h(w, r)
		}
	}
}

// authorised checks API-KEY. DRF answers a missing credential with 401 and a wrong one with 403
// when its authentication class sends no WWW-Authenticate challenge; both wordings are DRF's
// usual ones [I].
func (s *Server) authorised(w http.ResponseWriter, r *http.Request) bool {
	key := r.Header.Get("API-KEY")
	if key == "" {
		detail(w, http.StatusUnauthorized, "Authentication credentials were not provided.")
		return false
	}
	s.mu.Lock()
	want := s.apiKey
	s.mu.Unlock()
	if want != "" && key != want {
		detail(w, http.StatusForbidden, "Invalid API key.")
		return false
	}
	return true
}

func (s *Server) directUpload(w http.ResponseWriter, r *http.Request) {
	f, ok := s.readUpload(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	c := s.newCase()
	c.processing = true // direct upload starts processing at once
	c.files = append(c.files, f.file)
	s.startProcessing(c)
	s.keep(c)
	s.mu.Unlock()
	s.record(c.id, f)
	writeJSON(w, http.StatusCreated, map[string]int{"case_id": c.id})
}

func (s *Server) createCase(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	c := s.newCase()
	s.keep(c)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]int{"case_id": c.id})
}

func (s *Server) addFile(w http.ResponseWriter, r *http.Request) {
	// The case is looked up first: a file for a case that does not exist is not read at all.
	s.mu.Lock()
	c, ok := s.lookup(r.PathValue("id"))
	marked := ok && c.processing
	s.mu.Unlock()
	if !ok {
		detail(w, http.StatusNotFound, "Not found.")
		return
	}
	if marked {
		// Undocumented [U]: a case being processed taking more files is assumed to be refused.
		detail(w, http.StatusBadRequest, "Case is already marked complete.")
		return
	}
	f, ok := s.readUpload(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	if c.processing { // marked complete while the file was arriving
		s.mu.Unlock()
		detail(w, http.StatusBadRequest, "Case is already marked complete.")
		return
	}
	c.files = append(c.files, f.file)
	c.updated = now()
	s.keep(c)
	s.mu.Unlock()
	s.record(c.id, f)
	writeJSON(w, http.StatusOK, map[string]string{"status": "success", "message": "file successfully uploaded."})
}

func (s *Server) markComplete(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.lookup(r.PathValue("id"))
	switch {
	case !ok:
		detail(w, http.StatusNotFound, "Not found.")
	case len(c.files) == 0:
		// Undocumented [U]: processing an empty case is assumed to be refused.
		detail(w, http.StatusBadRequest, "Case has no files.")
	default:
		// Marking twice is accepted again, as an idempotent "start" would be [U].
		if !c.processing {
			c.processing = true
			s.startProcessing(c)
		}
		c.updated = now()
		s.keep(c)
		writeJSON(w, http.StatusOK, map[string]string{"status": "success", "message": "request accepted."})
	}
}

// caseJSON is GET /cases/{id} as documented.
type caseJSON struct {
	CaseID    int        `json:"case_id"`
	Files     []fileJSON `json:"files"`
	Status    string     `json:"status"`
	CreatedAt string     `json:"created_at"`
	UpdatedAt string     `json:"updated_at"`
}

type fileJSON struct {
	FileName string      `json:"file_name"`
	Fields   []fieldJSON `json:"fields"`
}

type fieldJSON struct {
	DisplayName string `json:"display_name"`
	Name        string `json:"name"`
	FieldID     int    `json:"field_id"`
	Value       string `json:"value"`
}

func (s *Server) getCase(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.lookup(r.PathValue("id"))
	if !ok {
		detail(w, http.StatusNotFound, "Not found.")
		return
	}
	if s.advance(c) {
		s.keep(c)
	}
	writeJSON(w, http.StatusOK, s.caseJSON(c))
}

// caseJSON is c as GET /cases/{id} gives it (s.mu held).
func (s *Server) caseJSON(c *simCase) caseJSON {
	out := caseJSON{CaseID: c.id, Files: []fileJSON{}, Status: c.status, CreatedAt: stamp(c.created), UpdatedAt: stamp(c.updated)}
	for _, f := range c.files {
		// File names are listed from the start; fields only once extraction is done.
		fj := fileJSON{FileName: f.name, Fields: []fieldJSON{}}
		if c.status == StatusCompleted {
			fj.Fields = fields(f.rec)
		}
		out.Files = append(out.Files, fj)
	}
	return out
}

// advance counts one poll of a processing case and completes it after PendingPolls; it reports
// whether c changed.
func (s *Server) advance(c *simCase) bool {
	if c.pinned || !c.processing || c.status != StatusPending {
		return false
	}
	if c.polls < s.cfg.PendingPolls {
		c.polls++
		return true
	}
	c.status = StatusCompleted
	c.updated = now()
	return true
}

func fields(rec simkit.Recognised) []fieldJSON {
	return []fieldJSON{
		{DisplayName: "Invoice Number", Name: "invoice_number", FieldID: 1, Value: rec.InvoiceNumber},
		{DisplayName: "Total Amount", Name: "total_amount", FieldID: 2, Value: rec.Total},
		{DisplayName: "Currency", Name: "currency", FieldID: 3, Value: rec.Currency},
		{DisplayName: "Invoice Date", Name: "invoice_date", FieldID: 4, Value: rec.Date},
	}
}

// listPageSize is the page size when no limit is given (DRF's PAGE_SIZE) [U]; maxLimit caps it.
const (
	listPageSize = 100
	maxLimit     = 1000
)

type listItem struct {
	CaseID    int    `json:"case_id"`
	Status    string `json:"status"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

// listCases is GET /cases/ with DRF limit-offset pagination: next and previous are full URLs.
// Invalid parameters are ignored, as DRF's filters ignore them.
func (s *Server) listCases(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := intParam(q.Get("limit"), listPageSize)
	limit = min(max(limit, 1), maxLimit)
	offset := max(intParam(q.Get("offset"), 0), 0)
	status := q.Get("status")
	sortBy := q.Get("sort_by")
	desc := q.Get("order") == "desc"

	s.mu.Lock()
	all := make([]listItem, 0, len(s.cases))
	keys := make(map[int][2]time.Time, len(s.cases))
	for _, c := range s.cases {
		if status != "" && c.status != status {
			continue
		}
		all = append(all, listItem{CaseID: c.id, Status: c.status, CreatedAt: stamp(c.created), UpdatedAt: stamp(c.updated)})
		keys[c.id] = [2]time.Time{c.created, c.updated}
	}
	s.mu.Unlock()

	slices.SortFunc(all, func(a, b listItem) int {
		d := 0
		switch sortBy {
		case "created_at":
			d = keys[a.CaseID][0].Compare(keys[b.CaseID][0])
		case "updated_at":
			d = keys[a.CaseID][1].Compare(keys[b.CaseID][1])
		}
		if d == 0 {
			d = a.CaseID - b.CaseID
		}
		if desc {
			d = -d
		}
		return d
	})

	page := []listItem{}
	if offset < len(all) {
		page = all[offset:min(offset+limit, len(all))]
	}
	out := struct {
		Count    int        `json:"count"`
		Next     *string    `json:"next"`
		Previous *string    `json:"previous"`
		Results  []listItem `json:"results"`
	}{Count: len(all), Results: page}
	if offset+limit < len(all) {
		u := pageURL(r, limit, offset+limit)
		out.Next = &u
	}
	if offset > 0 {
		u := pageURL(r, limit, max(offset-limit, 0))
		out.Previous = &u
	}
	writeJSON(w, http.StatusOK, out)
}

// pageURL is the request's absolute URL with limit and offset replaced; DRF drops offset=0.
func pageURL(r *http.Request, limit, offset int) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	q := r.URL.Query()
	q.Set("limit", strconv.Itoa(limit))
	if offset > 0 {
		q.Set("offset", strconv.Itoa(offset))
	} else {
		q.Del("offset")
	}
	u := url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
	return u.String()
}

func (s *Server) ocrOutput(w http.ResponseWriter, r *http.Request) {
	name, given := r.URL.Query()["file_name"]
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.lookup(r.PathValue("id"))
	if !ok {
		detail(w, http.StatusNotFound, "Not found.")
		return
	}
	if !given || name[0] == "" {
		writeJSON(w, http.StatusBadRequest, map[string][]string{"file_name": {"This field is required."}})
		return
	}
	// Before completion there is no OCR output; undocumented [U], assumed to be a 404.
	if c.status != StatusCompleted {
		detail(w, http.StatusNotFound, "Not found.")
		return
	}
	for _, f := range c.files {
		if f.name == name[0] {
			writeJSON(w, http.StatusOK, map[string]string{"text": f.rec.Text})
			return
		}
	}
	detail(w, http.StatusNotFound, "Not found.")
}

// upload is a file read from a request, with what the ledger needs.
type upload struct {
	file simFile
	sha  string
	size int64
}

// readUpload reads the multipart form: "file" (required) and "document_type" (optional). The
// size limit is enforced while reading, so an oversized file is never held whole.
func (s *Server) readUpload(w http.ResponseWriter, r *http.Request) (upload, bool) {
	// The whole body may be a little larger than the file: the form's headers and other fields.
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBytes+64<<10)
	mr, err := r.MultipartReader()
	if err != nil {
		detail(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Unsupported media type %q in request.", r.Header.Get("Content-Type")))
		return upload{}, false
	}
	var (
		up      upload
		content simkit.Inspection // of the file: what the checks and the simulated reading need
		gotFile bool
	)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return upload{}, s.readError(w, err)
		}
		switch p.FormName() {
		case "file":
			if gotFile {
				_, err = io.Copy(io.Discard, p) // DRF keeps one file per field; the rest is read and dropped
				break
			}
			gotFile = true
			up.file.name = p.FileName()
			content, err = simkit.Inspect(p, s.cfg.MaxBytes)
			if err == nil && content.Over {
				detail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("File too large. The maximum size is %d bytes.", s.cfg.MaxBytes))
				return upload{}, false
			}
		case "document_type":
			var b []byte
			b, err = io.ReadAll(io.LimitReader(p, 1<<10))
			up.file.docType = strings.TrimSpace(string(b))
		default:
			_, err = io.Copy(io.Discard, p)
		}
		if err != nil {
			return upload{}, s.readError(w, err)
		}
	}
	switch {
	case !gotFile:
		writeJSON(w, http.StatusBadRequest, map[string][]string{"file": {"No file was submitted."}})
		return upload{}, false
	case content.Size == 0:
		writeJSON(w, http.StatusBadRequest, map[string][]string{"file": {"The submitted file is empty."}})
		return upload{}, false
	case up.file.docType != "" && len(s.cfg.DocumentTypes) > 0 && !slices.Contains(s.cfg.DocumentTypes, up.file.docType):
		writeJSON(w, http.StatusBadRequest, map[string][]string{"document_type": {fmt.Sprintf("%q is not a valid choice.", up.file.docType)}})
		return upload{}, false
	case !knownType(content.Head):
		detail(w, http.StatusUnsupportedMediaType, "Unsupported file type. Upload a PDF, PNG, JPEG or TIFF file.")
		return upload{}, false
	}
	if up.file.name == "" {
		up.file.name = "file"
	}
	up.sha, up.size = content.Hex(), content.Size
	up.file.rec = simkit.Recognise(up.file.name, content.Size, content.SHA256)
	return up, true
}

func (s *Server) readError(w http.ResponseWriter, err error) bool {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		detail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("File too large. The maximum size is %d bytes.", s.cfg.MaxBytes))
		return false
	}
	detail(w, http.StatusBadRequest, "Multipart form parse error - "+err.Error())
	return false
}

func (s *Server) record(id int, up upload) {
	s.Ledger.Record(simkit.Upload{Ref: strconv.Itoa(id), Filename: up.file.name, SHA256: up.sha, Size: up.size})
}

// knownType decides by magic bytes, never by the name or the client's Content-Type. The formats
// Allspark takes are not documented [U]; these are the ones every document-AI vendor reads.
func knownType(b []byte) bool {
	for _, magic := range []string{"%PDF-", "\x89PNG\r\n\x1a\n", "\xff\xd8\xff", "II*\x00", "MM\x00*"} {
		if bytes.HasPrefix(b, []byte(magic)) {
			return true
		}
	}
	return false
}

// newCase makes a pending case; s.mu must be held.
func (s *Server) newCase() *simCase {
	t := now()
	c := &simCase{id: s.nextID, status: StatusPending, created: t, updated: t}
	s.cases[c.id] = c
	s.nextID++
	return c
}

// lookup finds a case by its id as written in a path; s.mu must be held.
func (s *Server) lookup(id string) (*simCase, bool) {
	n, err := strconv.Atoi(id)
	if err != nil {
		return nil, false
	}
	c, ok := s.cases[n]
	return c, ok
}

func intParam(v string, def int) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		return def
	}
	return n
}

func now() time.Time { return time.Now().UTC() }

// stamp is Allspark's timestamp form: ISO-8601, microseconds, Z.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

func detail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"detail": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// startProcessing schedules the completion and callback of c when a callback URL is set (s.mu
// held).
func (s *Server) startProcessing(c *simCase) {
	if s.cfg.CallbackURL == "" {
		return
	}
	id := c.id
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-time.After(s.cfg.CallbackAfter):
		case <-s.callbacksDone:
			return
		}
		s.mu.Lock()
		c, ok := s.cases[id]
		if !ok || c.pinned {
			s.mu.Unlock()
			return
		}
		c.status, c.pinned = StatusCompleted, true
		c.updated = now()
		s.keep(c)
		body := s.caseJSON(c)
		s.mu.Unlock()
		s.callBack(id, body)
	}()
}

// callBack calls the callback URL for a completed case in the configured format, trying three
// times, as a sender that gives up would.
func (s *Server) callBack(id int, kase caseJSON) {
	call := Call{CaseID: id, Format: s.cfg.CallbackFormat}
tries:
	for attempt := range 3 {
		req, err := s.callbackRequest(id, kase)
		if err != nil {
			call.Err = err.Error()
			break
		}
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
			res.Body.Close()
			call.Status, call.Err = res.StatusCode, ""
			if res.StatusCode < 500 {
				break
			}
		} else {
			call.Status, call.Err = 0, err.Error()
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		case <-s.callbacksDone:
			break tries
		}
	}
	s.mu.Lock()
	s.calls = append(s.calls, call)
	s.mu.Unlock()
}

func (s *Server) callbackRequest(id int, kase caseJSON) (*http.Request, error) {
	post := func(ct string, body []byte) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPost, s.cfg.CallbackURL, bytes.NewReader(body))
		if err == nil {
			req.Header.Set("Content-Type", ct)
		}
		return req, err
	}
	must := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err) // maps and caseJSON only
		}
		return b
	}
	switch s.cfg.CallbackFormat {
	case CallbackJSONID:
		return post("application/json", must(map[string]any{"id": id, "status": kase.Status}))
	case CallbackJSONNested:
		return post("application/json", must(map[string]any{"event": "case.completed", "case": kase}))
	case CallbackJSONData:
		return post("application/json", must(map[string]any{"data": kase}))
	case CallbackForm:
		return post("application/x-www-form-urlencoded", []byte(url.Values{"case_id": {strconv.Itoa(id)}, "status": {kase.Status}}.Encode()))
	case CallbackQuery:
		u, err := url.Parse(s.cfg.CallbackURL)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		q.Set("case_id", strconv.Itoa(id))
		q.Set("status", kase.Status)
		u.RawQuery = q.Encode()
		return http.NewRequest(http.MethodGet, u.String(), nil)
	case CallbackGarbage:
		return post("text/plain", []byte(fmt.Sprintf("case %d done", id)))
	}
	return post("application/json", must(kase))
}

// Calls returns the callbacks made so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Close stops scheduled callbacks and waits for those under way.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.callbacksDone) })
	s.wg.Wait()
}

// storedCase is a case as the state store keeps it. The files' bytes are not kept: what the
// answers are made of (name, document type, recognised fields and OCR text) is.
type storedCase struct {
	ID         int          `json:"id"`
	Status     string       `json:"status"`
	Processing bool         `json:"processing,omitempty"`
	Pinned     bool         `json:"pinned,omitempty"`
	Polls      int          `json:"polls,omitempty"`
	Files      []storedFile `json:"files"`
	Created    time.Time    `json:"created"`
	Updated    time.Time    `json:"updated"`
}

type storedFile struct {
	Name       string            `json:"name"`
	DocType    string            `json:"document_type,omitempty"`
	Recognised simkit.Recognised `json:"recognised"`
}

func storedOf(c *simCase) storedCase {
	sc := storedCase{ID: c.id, Status: c.status, Processing: c.processing, Pinned: c.pinned, Polls: c.polls,
		Files: make([]storedFile, 0, len(c.files)), Created: c.created, Updated: c.updated}
	for _, f := range c.files {
		sc.Files = append(sc.Files, storedFile{Name: f.name, DocType: f.docType, Recognised: f.rec})
	}
	return sc
}

func (sc storedCase) simCase() *simCase {
	c := &simCase{id: sc.ID, status: sc.Status, processing: sc.Processing, pinned: sc.Pinned, polls: sc.Polls,
		created: sc.Created, updated: sc.Updated}
	for _, f := range sc.Files {
		c.files = append(c.files, simFile{name: f.Name, docType: f.DocType, rec: f.Recognised})
	}
	return c
}

// KeepState keeps the cases in the journal at path: those it holds are known again with their
// progress (a sandbox restarted with ingest still has the cases ingest waits for), and every
// change is written there. Call it before the server takes requests.
//
// New case ids follow the highest one kept, so that no case id is given twice. A case that was
// processing with its completion still to come is scheduled again when a CallbackURL is set: it
// completes CallbackAfter from now (the wait starts over, as the old process's timer died with
// it) and is called back, as it would have been had the simulator not stopped.
func (s *Server) KeepState(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		// A second journal would rewrite (compact) a file the first may still be appending to.
		return errors.New("allspark sandbox: its cases are already kept in a state file")
	}
	store, records, order, err := simkit.OpenStore(path, 0)
	if err != nil {
		return err
	}
	var restored []*simCase
	for _, k := range order {
		var sc storedCase
		if json.Unmarshal(records[k], &sc) != nil || sc.ID <= 0 {
			continue // unreadable: a sandbox goes on without it rather than refusing to start
		}
		c := sc.simCase()
		s.cases[c.id] = c
		s.nextID = max(s.nextID, c.id+1)
		restored = append(restored, c)
	}
	s.store = store
	for _, c := range restored {
		// The same cases that had a completion scheduled before the stop: startProcessing's
		// goroutine completes a processing case unless SetStatus pinned it (or it already fired,
		// which pins it too).
		if c.processing && !c.pinned {
			s.startProcessing(c)
		}
	}
	return nil
}

// CloseState closes the journal KeepState opened; later changes live in memory only, so nothing
// is ever written to a closed journal. Close the server first when callbacks are on: Close waits
// for completions under way, which are then journaled; a case whose callback had not fired is
// kept as processing and scheduled again by the next KeepState.
func (s *Server) CloseState() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	store := s.store
	s.store = nil
	return store.Close()
}

// keep writes c to the journal (s.mu held). A failed write is not the client's problem: the case
// lives on in memory.
func (s *Server) keep(c *simCase) {
	_ = s.store.Put("case/"+strconv.Itoa(c.id), storedOf(c))
}
