// Package cradlsim simulates Cradl's classic API (generation A, api.lucidtech.ai/v1) and its
// token endpoint on one host, closely enough to test the cradl client over real HTTP: both token
// flows, inline and fileUrl uploads with their limits, synchronous predictions with nextPage,
// workflows with executions that run, succeed and are PATCHed to completed, the execution list
// with its filters and paging, the monthly quota, Cradl's {"message"} errors, the e-mail entry
// point (an SMTP receiver) and the webhook export, unsigned or HMAC-signed. KeepState keeps its
// state in a journal, so that a sandbox outlives a restart.
//
// Choices where Cradl's documents say nothing:
//   - A document's pages are its form-feed separated parts; each POST /predictions does one
//     page and names the next in nextPage.
//   - Inline content over the limit is a 413; a content type Cradl does not take a 415.
//   - The fileUrl is /files/{token} on this server and wants the Bearer token.
//   - An execution answers "running" to its first PendingPolls GETs, then "succeeded"; the
//     list does not move it on.
//   - An execution's error is a string member "error".
//   - The list is filtered by status (all when none is given), sorted by startTime (or
//     endTime), newest first unless order=ascending; nextToken is an offset.
//   - Bad client credentials at the token endpoint are a 403 {"message":"Forbidden"}.
package cradlsim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

// Audience is what the form token flow must ask for.
const Audience = "https://api.cradl.ai/v1"

// contentTypes are the document types Cradl takes.
var contentTypes = map[string]bool{"application/pdf": true, "image/jpeg": true, "image/png": true, "image/tiff": true, "image/webp": true}

// statuses are those of an execution.
var statuses = map[string]bool{"running": true, "succeeded": true, "failed": true, "rejected": true, "retry": true, "error": true, "completed": true}

// WebhookConfig is what Cradl posts when an execution is done: the classic workflow export
// (its postprocess transition's WEBHOOK_ENDPOINTS, unsigned, with the headers configured there),
// or the newer signed webhook of agent runs.
type WebhookConfig struct {
	URL string
	// Secret signs the webhook (X-Cradl-* headers): the newer webhooks. Empty: the classic
	// export, which Cradl never signs.
	Secret string
	// Format is the payload: FormatExport ({documentId, values, …, metadata:{executionId}}) or
	// FormatAgent ({output, context:{runId, documentId}}). Default: export when unsigned, agent
	// when signed, as the real service pairs them.
	Format WebhookFormat
	// SignedHeaders are the headers a signed webhook lists in X-Cradl-SignedHeaders (and sends).
	// nil: x-cradl-nonce and x-cradl-timestamp; empty (non-nil): none, only method, URL and
	// body are signed.
	SignedHeaders []string
	// Headers are sent as they are (the classic export's configured headers).
	Headers map[string]string
}

// WebhookFormat is a webhook payload shape.
type WebhookFormat string

// The payloads Cradl sends.
const (
	FormatExport WebhookFormat = "export"
	FormatAgent  WebhookFormat = "agent"
)

// Config configures a Server.
type Config struct {
	ClientID, ClientSecret string
	// TokenTTL is the tokens' lifetime; Cradl's is 3600 s.
	TokenTTL time.Duration
	// PendingPolls is how many GETs of an execution answer "running" before it succeeds.
	PendingPolls int
	// ModelID is the only model predictions may use ("" takes any).
	ModelID string
	// WorkflowID is the simulated workflow; WorkflowEmail its emailConfig.email.
	WorkflowID, WorkflowEmail string
	// MaxInlineBytes is the largest inline document (decoded; 4,687,500 bytes = 6,250,000 base64
	// characters); MaxBytes the largest through a fileUrl (64 MiB).
	MaxInlineBytes, MaxBytes int64
	// MonthlyQuota counts predictions and executions; past it the answer is 429 "Limit
	// Exceeded". 0 for none.
	MonthlyQuota int
	Webhook      WebhookConfig
	// SMTPUsername and SMTPPassword, when set, make the SMTP receiver ask for AUTH PLAIN.
	SMTPUsername, SMTPPassword string
}

// Execution is a workflow execution as the simulator holds it.
type Execution struct {
	ExecutionID string
	WorkflowID  string
	Status      string
	Input       map[string]any
	Output      map[string]any
	Error       string
	StartTime   time.Time
	EndTime     time.Time
	Polls       int
}

// Delivery is one webhook export the simulator sent.
type Delivery struct {
	ExecutionID string
	Status      int // the receiver's answer, 0 when none came
	Err         string
}

// TokenRequest is one accepted token request: "basic" or "form", and the audience asked for.
type TokenRequest struct {
	Style, Audience string
}

// Mail is one message the SMTP receiver accepted.
type Mail struct {
	From, To, Subject, MessageID string
	Attachments                  []string // file names that started executions
	Executions                   []string
}

// Server is the simulated Cradl. It is an http.Handler, safe for concurrent use.
type Server struct {
	// Scaffold's operations (for Faults and Requests): token, upload, put, prediction,
	// prediction-get, execution-start, execution, list, patch, workflow. Its Ledger records every
	// document whose bytes arrived (inline, PUT or e-mail).
	*simkit.Scaffold

	cfg    Config
	client *http.Client

	mu          sync.Mutex
	store       *simkit.Store // nil: the state lives in memory only
	docs        map[string]*document
	files       map[string]string // fileUrl token → document id
	predictions map[string]*prediction
	executions  map[string]*Execution
	seq         int
	used        int // quota
	tokenReqs   []TokenRequest
	deliveries  []Delivery
	mails       []Mail
}

// document is what the simulator keeps of a document: not its bytes, but what the simulated
// model reads in them (the answers need no more, and a kept state stays small).
type document struct {
	id, name, contentType string
	fileToken             string // its fileUrl is /files/{fileToken}; "" for an e-mailed one
	hasContent            bool
	created               time.Time
	read                  reading
}

// reading is what the simulated model reads in a document: the whole (a workflow execution's
// output) and each page (one prediction each).
type reading struct {
	Whole simkit.Recognised   `json:"whole"`
	Pages []simkit.Recognised `json:"pages,omitempty"`
}

// recognise is what the model reads in bytes of this size and digest. The recognised text is
// dropped: Cradl answers with fields, never the text.
func recognise(name string, size int64, sum [sha256.Size]byte) simkit.Recognised {
	r := simkit.Recognise(name, size, sum)
	r.Text = ""
	return r
}

// noContent is the reading of a document whose bytes have not arrived (an execution may start
// on a document whose fileUrl was not PUT yet): that of no bytes, without pages.
func noContent(name string) reading {
	return reading{Whole: recognise(name, 0, sha256.Sum256(nil))}
}

// read reads a document's bytes from r, no more than limit (negative: no limit), in one pass:
// the reading of the whole and of every page, and the Inspection of the bytes. When they are
// more than limit (Over) or r fails, the reading is empty.
func read(name string, r io.Reader, limit int64) (reading, simkit.Inspection, error) {
	pages := &pager{name: name, h: sha256.New()}
	in, err := simkit.InspectWith(r, simkit.InspectConfig{Limit: limit, Also: pages})
	if err != nil || in.Over {
		return reading{}, in, err
	}
	return reading{Whole: recognise(name, in.Size, in.SHA256), Pages: pages.done()}, in, nil
}

// pager reads the pages of a document (the parts between form feeds, as Pages splits them) as
// its bytes stream by, keeping only what the model made of each.
type pager struct {
	name  string
	h     hash.Hash // of the page going on
	n     int64     // its size so far
	pages []simkit.Recognised
}

func (pg *pager) Write(p []byte) (int, error) {
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\f')
		if i < 0 {
			pg.h.Write(p)
			pg.n += int64(len(p))
			return n, nil
		}
		pg.h.Write(p[:i])
		pg.n += int64(i)
		pg.endPage()
		p = p[i+1:]
	}
}

func (pg *pager) endPage() {
	var sum [sha256.Size]byte
	pg.h.Sum(sum[:0])
	pg.pages = append(pg.pages, recognise(pg.name, pg.n, sum))
	pg.h.Reset()
	pg.n = 0
}

// done ends the last page (after the last form feed, perhaps empty) and returns them all.
func (pg *pager) done() []simkit.Recognised {
	pg.endPage()
	return pg.pages
}

type prediction struct {
	answer map[string]any
}

// New returns a simulator.
func New(cfg Config) (*Server, error) {
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("cradlsim: a client id and secret are required")
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.MaxInlineBytes <= 0 {
		cfg.MaxInlineBytes = 6_250_000 / 4 * 3
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 64 << 20
	}
	if cfg.PendingPolls < 0 || cfg.MonthlyQuota < 0 {
		return nil, errors.New("cradlsim: pending polls and quota must not be negative")
	}
	s := &Server{
		Scaffold: simkit.NewScaffold(cfg.TokenTTL, cfg.MaxBytes+1<<20),
		cfg:      cfg, client: &http.Client{Timeout: 30 * time.Second},
		docs: map[string]*document{}, files: map[string]string{}, predictions: map[string]*prediction{},
		executions: map[string]*Execution{},
	}
	s.Handle("POST /oauth2/token", "token", s.token)
	s.Handle("POST /documents", "upload", s.api(s.createDocument))
	s.Handle("PUT /files/{token}", "put", s.api(s.putFile))
	s.Handle("POST /predictions", "prediction", s.api(s.predict))
	s.Handle("GET /predictions/{id}", "prediction-get", s.api(s.getPrediction))
	s.Handle("GET /workflows/{wid}", "workflow", s.api(s.workflow))
	s.Handle("POST /workflows/{wid}/executions", "execution-start", s.api(s.startExecution))
	s.Handle("GET /workflows/{wid}/executions", "list", s.api(s.listExecutions))
	s.Handle("GET /workflows/{wid}/executions/{eid}", "execution", s.api(s.getExecution))
	s.Handle("PATCH /workflows/{wid}/executions/{eid}", "patch", s.api(s.patchExecution))
	return s, nil
}

// TokenRequests lists the accepted token requests.
func (s *Server) TokenRequests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TokenRequest(nil), s.tokenReqs...)
}

// Deliveries lists the webhook exports sent.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// Mails lists the messages the SMTP receiver accepted.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Executions returns copies of every execution, oldest first.
func (s *Server) Executions() []Execution {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Execution, 0, len(s.executions))
	for _, e := range s.sortedExecutions("startTime", true) {
		c := *e
		c.Input, c.Output = clone(e.Input), clone(e.Output)
		out = append(out, c)
	}
	return out
}

// SetExecutionStatus forces an execution's status (and, with "failed" and the like, its error
// message msg). It reports whether the execution exists.
func (s *Server) SetExecutionStatus(id, status string, msg ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.executions[id]
	if ok {
		e.Status = status
		e.Error = strings.Join(msg, " ")
		if status != "running" && status != "retry" && e.EndTime.IsZero() {
			e.EndTime = time.Now()
		}
		s.keepExecution(e)
	}
	return ok
}

// SetStartTime changes an execution's startTime (to test look-ups by time).
func (s *Server) SetStartTime(id string, t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.executions[id]
	if ok {
		e.StartTime = t
		s.keepExecution(e)
	}
	return ok
}

// SetPredictionStatus forces a prediction's status and error.
func (s *Server) SetPredictionStatus(id, status, errMsg string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.predictions[id]
	if ok {
		p.answer["status"] = status
		if errMsg != "" {
			p.answer["error"] = errMsg
		}
		s.keepPrediction(id, p)
	}
	return ok
}

// CompleteExecution makes an execution succeed now (with its output) and, when a webhook is
// configured, sends the export; the error is the delivery's.
func (s *Server) CompleteExecution(id string) error {
	s.mu.Lock()
	e, ok := s.executions[id]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("no execution %s", id)
	}
	payload := s.succeed(e)
	s.keepExecution(e)
	s.mu.Unlock()
	return s.deliver(id, payload)
}

// api wants a valid bearer token.
func (s *Server) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.Tokens.Valid(simkit.Bearer(r)) {
			apiError(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		h(w, r)
	}
}

// token is the OAuth2 endpoint: Basic client credentials (auth.lucidtech.ai) or form
// credentials with the audience (auth.cradl.ai); grant_type in the query or the form.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if g := r.Form.Get("grant_type"); g != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "unsupported grant type "+strconv.Quote(g))
		return
	}
	req := TokenRequest{Style: "basic"}
	id, secret, ok := r.BasicAuth()
	if !ok {
		req.Style = "form"
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		req.Audience = r.PostForm.Get("audience")
		if req.Audience != Audience {
			oauthError(w, http.StatusBadRequest, "invalid_request", "audience must be "+Audience)
			return
		}
	}
	if id != s.cfg.ClientID || secret != s.cfg.ClientSecret {
		apiError(w, http.StatusForbidden, "Forbidden")
		return
	}
	tok, secs := s.Tokens.Issue()
	s.mu.Lock()
	s.tokenReqs = append(s.tokenReqs, req)
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "expires_in": secs, "token_type": "Bearer"})
}

// createDocument is POST /documents: inline base64 content, or none and a fileUrl to PUT to.
func (s *Server) createDocument(w http.ResponseWriter, r *http.Request) {
	maxContent := int64(base64.StdEncoding.EncodedLen(int(s.cfg.MaxInlineBytes)))
	body, err := io.ReadAll(io.LimitReader(r.Body, maxContent+64<<10+1))
	if err != nil {
		apiError(w, http.StatusBadRequest, "could not read the request: "+err.Error())
		return
	}
	if int64(len(body)) > maxContent+64<<10 {
		apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request too large: inline content is limited to %d base64 characters; create the document without content and PUT it to its fileUrl", maxContent))
		return
	}
	var in struct {
		Content     *string `json:"content"`
		ContentType string  `json:"contentType"`
		Name        string  `json:"name"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		apiError(w, http.StatusBadRequest, "Invalid JSON: "+err.Error())
		return
	}
	if !contentTypes[in.ContentType] {
		apiError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Unsupported contentType %q", in.ContentType))
		return
	}
	d := &document{id: "las:document:" + simkit.RandomHex(16), name: in.Name, contentType: in.ContentType,
		fileToken: simkit.RandomHex(16), created: time.Now()}
	d.read = noContent(d.name)
	var content simkit.Inspection
	if in.Content != nil {
		if int64(len(*in.Content)) > maxContent {
			apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("content is longer than %d base64 characters; use the fileUrl upload", maxContent))
			return
		}
		// Inline content is small (MaxInlineBytes) and in the request already: decoded whole,
		// it keeps DecodeString's exact error messages.
		b, err := base64.StdEncoding.DecodeString(*in.Content)
		if err != nil {
			apiError(w, http.StatusBadRequest, "content is not valid base64: "+err.Error())
			return
		}
		if len(b) == 0 {
			apiError(w, http.StatusBadRequest, "content is empty")
			return
		}
		rd, inspected, err := read(d.name, bytes.NewReader(b), -1)
		if err != nil {
			panic(err) // a bytes.Reader does not fail
		}
		d.read, content, d.hasContent = rd, inspected, true
	}
	s.mu.Lock()
	s.docs[d.id] = d
	s.files[d.fileToken] = d.id
	s.keepDocument(d)
	s.mu.Unlock()
	if d.hasContent {
		s.record(d, content)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"documentId": d.id, "name": d.name, "contentType": d.contentType,
		"fileUrl": base(r) + "/files/" + d.fileToken, "createdTime": d.created.UTC().Format(time.RFC3339),
	})
}

// record notes in the Ledger that d's bytes arrived.
func (s *Server) record(d *document, content simkit.Inspection) {
	s.Ledger.Record(simkit.Upload{Ref: d.id, Filename: d.name, SHA256: content.Hex(), Size: content.Size, At: d.created})
}

// putFile takes a document's raw bytes at its fileUrl.
func (s *Server) putFile(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	id, ok := s.files[r.PathValue("token")]
	d := s.docs[id]
	s.mu.Unlock()
	if !ok || d == nil {
		apiError(w, http.StatusNotFound, "No such file")
		return
	}
	rd, content, err := read(d.name, r.Body, s.cfg.MaxBytes)
	if err != nil {
		apiError(w, http.StatusBadRequest, "could not read the file: "+err.Error())
		return
	}
	if content.Over {
		apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the file is larger than %d bytes", s.cfg.MaxBytes))
		return
	}
	if content.Size == 0 {
		apiError(w, http.StatusBadRequest, "the file is empty")
		return
	}
	s.mu.Lock()
	d.read, d.hasContent = rd, true
	s.keepDocument(d)
	s.mu.Unlock()
	s.record(d, content)
	w.WriteHeader(http.StatusOK)
}

// quota takes one from the monthly quota; false (and the 429 written) when it is used up.
func (s *Server) quota(w http.ResponseWriter) bool {
	s.mu.Lock()
	over := s.cfg.MonthlyQuota > 0 && s.used >= s.cfg.MonthlyQuota
	if !over {
		s.used++
		s.keepCounters()
	}
	s.mu.Unlock()
	if over {
		apiError(w, http.StatusTooManyRequests, "Limit Exceeded")
	}
	return !over
}

// Pages splits a document into its simulated pages: the parts between form feeds.
func Pages(content []byte) [][]byte { return bytes.Split(content, []byte("\f")) }

// predict is POST /predictions: one page, synchronously, with nextPage.
func (s *Server) predict(w http.ResponseWriter, r *http.Request) {
	var in struct {
		DocumentID       string `json:"documentId"`
		ModelID          string `json:"modelId"`
		PreprocessConfig *struct {
			StartPage *int `json:"startPage"`
		} `json:"preprocessConfig"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		apiError(w, http.StatusBadRequest, "Invalid JSON: "+err.Error())
		return
	}
	if s.cfg.ModelID != "" && in.ModelID != s.cfg.ModelID {
		apiError(w, http.StatusNotFound, fmt.Sprintf("Model %s not found", in.ModelID))
		return
	}
	s.mu.Lock()
	d := s.docs[in.DocumentID]
	var pages []simkit.Recognised
	if d != nil {
		pages = d.read.Pages
	}
	has := d != nil && d.hasContent
	s.mu.Unlock()
	switch {
	case d == nil:
		apiError(w, http.StatusNotFound, fmt.Sprintf("Document %s not found", in.DocumentID))
		return
	case !has:
		apiError(w, http.StatusBadRequest, fmt.Sprintf("Document %s has no content yet", in.DocumentID))
		return
	}
	page := 0
	if in.PreprocessConfig != nil && in.PreprocessConfig.StartPage != nil {
		page = *in.PreprocessConfig.StartPage
	}
	if page < 0 || page >= len(pages) {
		apiError(w, http.StatusBadRequest, fmt.Sprintf("startPage %d is out of range (%d pages)", page, len(pages)))
		return
	}
	if !s.quota(w) {
		return
	}
	var next any
	if page+1 < len(pages) {
		next = page + 1
	}
	id := "las:prediction:" + simkit.RandomHex(16)
	answer := map[string]any{
		"predictionId": id, "documentId": in.DocumentID, "modelId": in.ModelID, "status": "succeeded",
		"inferenceTime": 1.5, "nextPage": next, "createdTime": time.Now().UTC().Format(time.RFC3339),
		"predictions": Predictions(pages[page], page),
	}
	s.mu.Lock()
	p := &prediction{answer: answer}
	s.predictions[id] = p
	s.keepPrediction(id, p)
	b, _ := json.Marshal(answer)
	s.mu.Unlock()
	writeRaw(w, http.StatusOK, b)
}

func (s *Server) getPrediction(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	p, ok := s.predictions[r.PathValue("id")]
	var b []byte
	if ok {
		b, _ = json.Marshal(p.answer)
	}
	s.mu.Unlock()
	if !ok {
		apiError(w, http.StatusNotFound, "Prediction "+r.PathValue("id")+" not found")
		return
	}
	writeRaw(w, http.StatusOK, b)
}

// Predictions is what the simulated model predicts for a page's recognised content (v1 format),
// line items included; tests use it to know what to expect.
func Predictions(rec simkit.Recognised, page int) []map[string]any {
	return []map[string]any{
		{"label": "invoice_id", "value": rec.InvoiceNumber, "rawValue": rec.InvoiceNumber, "confidence": 0.97, "page": page, "location": []float64{0.6, 0.1, 0.8, 0.12}, "source": "model"},
		{"label": "total_amount", "value": json.Number(rec.Total), "rawValue": rec.Total + " " + rec.Currency, "confidence": 0.93, "page": page, "source": "model"},
		{"label": "currency", "value": rec.Currency, "confidence": 0.99, "page": page, "source": "llm"},
		{"label": "invoice_date", "value": rec.Date, "confidence": 0.9, "page": page, "source": "model"},
		{"label": "due_date", "value": nil, "confidence": 0.12, "page": page, "source": "model"},
		{"label": "line_items", "value": [][]map[string]any{
			{{"label": "description", "value": "Simulated service", "confidence": 0.8, "page": page},
				{"label": "amount", "value": json.Number(rec.Total), "confidence": 0.85, "page": page}},
		}},
	}
}

// Output is the output of an execution that succeeded on a document: {documentId, values,
// validatedPredictions}; tests use it to know what to expect.
func Output(documentID string, rec simkit.Recognised) map[string]any {
	vp := func(v any, conf float64) map[string]any {
		return map[string]any{"value": v, "rawValue": v, "confidence": conf, "pages": []int{0}, "automated": true, "isEdited": false}
	}
	return map[string]any{
		"documentId": documentID,
		"values": map[string]any{
			"invoice_id": rec.InvoiceNumber, "total_amount": rec.Total, "currency": rec.Currency, "invoice_date": rec.Date,
			"line_items": []map[string]any{{"description": "Simulated service", "amount": rec.Total}},
		},
		"validatedPredictions": map[string]any{
			"invoice_id":   vp(rec.InvoiceNumber, 0.97),
			"total_amount": vp(rec.Total, 0.93),
			"currency":     vp(rec.Currency, 0.99),
			"invoice_date": vp(rec.Date, 0.9),
		},
	}
}

// workflowOK answers 404 for another workflow.
func (s *Server) workflowOK(w http.ResponseWriter, r *http.Request) bool {
	if wid := r.PathValue("wid"); wid != s.cfg.WorkflowID || wid == "" {
		apiError(w, http.StatusNotFound, fmt.Sprintf("Workflow %s not found", wid))
		return false
	}
	return true
}

func (s *Server) workflow(w http.ResponseWriter, r *http.Request) {
	if !s.workflowOK(w, r) {
		return
	}
	var email any
	if s.cfg.WorkflowEmail != "" {
		email = map[string]any{"email": s.cfg.WorkflowEmail, "secretId": "las:secret:sim", "allowedOrigins": []string{".*"}}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"workflowId": s.cfg.WorkflowID, "name": "Simulated workflow", "status": "production", "emailConfig": email,
	})
}

// startExecution is POST /workflows/{id}/executions {input:{documentId, …}}.
func (s *Server) startExecution(w http.ResponseWriter, r *http.Request) {
	if !s.workflowOK(w, r) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil || len(body) > 64<<10 {
		apiError(w, http.StatusRequestEntityTooLarge, "input is too large")
		return
	}
	var in struct {
		Input map[string]any `json:"input"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Input == nil {
		apiError(w, http.StatusBadRequest, "input must be an object")
		return
	}
	docID, _ := in.Input["documentId"].(string)
	s.mu.Lock()
	d := s.docs[docID]
	s.mu.Unlock()
	if d == nil {
		apiError(w, http.StatusBadRequest, fmt.Sprintf("input.documentId %q is not a document", docID))
		return
	}
	if !s.quota(w) {
		return
	}
	s.mu.Lock()
	e := s.newExecution(in.Input)
	b, _ := json.Marshal(s.view(e))
	s.mu.Unlock()
	writeRaw(w, http.StatusOK, b)
}

// newExecution starts an execution; s.mu is held.
func (s *Server) newExecution(input map[string]any) *Execution {
	s.seq++
	e := &Execution{ExecutionID: "las:workflow-execution:" + simkit.RandomHex(16), WorkflowID: s.cfg.WorkflowID,
		Status: "running", Input: input, StartTime: time.Now().Add(time.Duration(s.seq) * time.Microsecond)}
	s.executions[e.ExecutionID] = e
	s.keepExecution(e)
	s.keepCounters()
	return e
}

// succeed ends an execution with its output and returns the export to send ("" URL: none);
// s.mu is held.
func (s *Server) succeed(e *Execution) []byte {
	docID, _ := e.Input["documentId"].(string)
	var rec simkit.Recognised
	if d := s.docs[docID]; d != nil {
		rec = d.read.Whole
	}
	e.Status, e.Error, e.EndTime = "succeeded", "", time.Now()
	e.Output = Output(docID, rec)
	if s.cfg.Webhook.URL == "" {
		return nil
	}
	format := s.cfg.Webhook.Format
	if format == "" {
		format = FormatExport
		if s.cfg.Webhook.Secret != "" {
			format = FormatAgent
		}
	}
	if format == FormatAgent {
		// The run that processed the document: ids of our own making, as an agent's are.
		b, _ := json.Marshal(map[string]any{
			"output":  map[string]any{"fields": []any{e.Output["values"]}},
			"context": map[string]any{"runId": "cradl:run:" + simkit.RandomHex(16), "documentId": docID},
		})
		return b
	}
	export := clone(e.Output)
	export["predictions"] = Predictions(rec, 0)
	export["metadata"] = map[string]any{"executionId": e.ExecutionID, "workflowId": e.WorkflowID}
	b, _ := json.Marshal(export)
	return b
}

// view is an execution's JSON; s.mu is held.
func (s *Server) view(e *Execution) map[string]any {
	m := map[string]any{
		"executionId": e.ExecutionID, "workflowId": e.WorkflowID, "status": e.Status,
		"input": e.Input, "output": e.Output, "startTime": e.StartTime.UTC().Format(time.RFC3339Nano),
		"endTime": nil, "transitionExecutions": map[string]any{}, "events": []any{}, "logId": nil,
	}
	if e.Output == nil {
		m["output"] = map[string]any{}
		if e.Status == "running" || e.Status == "retry" {
			m["output"] = nil
		}
	}
	if !e.EndTime.IsZero() {
		m["endTime"] = e.EndTime.UTC().Format(time.RFC3339Nano)
	}
	if e.Error != "" {
		m["error"] = e.Error
	}
	return m
}

// execution finds the execution of the path; 404 when the workflow or execution is not there.
func (s *Server) execution(w http.ResponseWriter, r *http.Request) *Execution {
	if !s.workflowOK(w, r) {
		return nil
	}
	e, ok := s.executions[r.PathValue("eid")]
	if !ok {
		apiError(w, http.StatusNotFound, fmt.Sprintf("Workflow execution %s not found", r.PathValue("eid")))
		return nil
	}
	return e
}

// getExecution answers "running" PendingPolls times, then the execution succeeds (and the
// webhook export goes out before the answer).
func (s *Server) getExecution(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	e := s.execution(w, r)
	if e == nil {
		s.mu.Unlock()
		return
	}
	var export []byte
	if e.Status == "running" {
		if e.Polls < s.cfg.PendingPolls {
			e.Polls++
		} else {
			export = s.succeed(e)
		}
		s.keepExecution(e)
	}
	b, _ := json.Marshal(s.view(e))
	id := e.ExecutionID
	s.mu.Unlock()
	if export != nil {
		_ = s.deliver(id, export)
	}
	writeRaw(w, http.StatusOK, b)
}

// patchExecution toggles between succeeded and completed, or aborts with nextTransitionId.
func (s *Server) patchExecution(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Status           *string `json:"status"`
		NextTransitionID *string `json:"nextTransitionId"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil {
		apiError(w, http.StatusBadRequest, "Invalid JSON: "+err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.execution(w, r)
	if e == nil {
		return
	}
	switch {
	case in.Status != nil && *in.Status == "completed" && e.Status == "succeeded",
		in.Status != nil && *in.Status == "succeeded" && e.Status == "completed":
		e.Status = *in.Status
		s.keepExecution(e)
	case in.Status != nil:
		apiError(w, http.StatusBadRequest, fmt.Sprintf("Cannot change status from %s to %s: only succeeded and completed toggle", e.Status, *in.Status))
		return
	case in.NextTransitionID != nil && *in.NextTransitionID == "las:transition:commons-failed":
		e.Status, e.Error, e.EndTime = "failed", "aborted", time.Now()
		s.keepExecution(e)
	default:
		apiError(w, http.StatusBadRequest, "Give status or nextTransitionId")
		return
	}
	writeJSON(w, http.StatusOK, s.view(e))
}

// sortedExecutions of the workflow; s.mu is held.
func (s *Server) sortedExecutions(sortBy string, ascending bool) []*Execution {
	all := make([]*Execution, 0, len(s.executions))
	for _, e := range s.executions {
		all = append(all, e)
	}
	key := func(e *Execution) time.Time {
		if sortBy == "endTime" {
			return e.EndTime
		}
		return e.StartTime
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := key(all[i]), key(all[j])
		if a.Equal(b) {
			return all[i].ExecutionID < all[j].ExecutionID
		}
		if ascending {
			return a.Before(b)
		}
		return a.After(b)
	})
	return all
}

// listExecutions is GET /workflows/{id}/executions with its filters and paging.
func (s *Server) listExecutions(w http.ResponseWriter, r *http.Request) {
	if !s.workflowOK(w, r) {
		return
	}
	q := r.URL.Query()
	want := map[string]bool{}
	for _, st := range q["status"] {
		if !statuses[st] {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("Invalid status %q", st))
			return
		}
		want[st] = true
	}
	sortBy := q.Get("sortBy")
	if sortBy == "" {
		sortBy = "startTime"
	}
	order := q.Get("order")
	if order == "" {
		order = "descending"
	}
	if sortBy != "startTime" && sortBy != "endTime" || order != "ascending" && order != "descending" {
		apiError(w, http.StatusBadRequest, "sortBy must be startTime or endTime, order ascending or descending")
		return
	}
	maxResults, offset := 100, 0
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			apiError(w, http.StatusBadRequest, fmt.Sprintf("Invalid maxResults %q", v))
			return
		}
		maxResults = n
	}
	if v := q.Get("nextToken"); v != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(v, "offset-"))
		if err != nil || n < 0 || !strings.HasPrefix(v, "offset-") {
			apiError(w, http.StatusBadRequest, "Invalid nextToken")
			return
		}
		offset = n
	}
	var from, to time.Time
	for name, t := range map[string]*time.Time{"fromStartTime": &from, "toStartTime": &to} {
		if v := q.Get(name); v != "" {
			p, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				apiError(w, http.StatusBadRequest, fmt.Sprintf("Invalid %s %q", name, v))
				return
			}
			*t = p
		}
	}
	s.mu.Lock()
	var match []map[string]any
	for _, e := range s.sortedExecutions(sortBy, order == "ascending") {
		if len(want) > 0 && !want[e.Status] || !from.IsZero() && e.StartTime.Before(from) || !to.IsZero() && e.StartTime.After(to) {
			continue
		}
		match = append(match, s.view(e))
	}
	b, _ := json.Marshal(page(match, offset, maxResults, s.cfg.WorkflowID))
	s.mu.Unlock()
	writeRaw(w, http.StatusOK, b)
}

func page(match []map[string]any, offset, n int, wid string) map[string]any {
	out := []map[string]any{}
	for i := offset; i < len(match) && i < offset+n; i++ {
		out = append(out, match[i])
	}
	var next any
	if offset+n < len(match) {
		next = "offset-" + strconv.Itoa(offset+n)
	}
	return map[string]any{"workflowId": wid, "executions": out, "nextToken": next}
}

// base is this server as the client reached it, for fileUrls.
func base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg})
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// clone deep-copies a JSON-like map.
func clone(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}
