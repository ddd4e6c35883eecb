// Package ginisim simulates the Gini documents API (api.gini.net) and its User Center token
// endpoint (user.gini.net/oauth/token) closely enough to test the gini client over real HTTP: both
// ways of authenticating, the raw and multipart uploads with Gini's file rules, PENDING →
// COMPLETED processing, extractions, layout, the paginated document list and Gini's error JSON
// {"message","requestId"}.
//
// Choices where Gini's documents say nothing:
//   - An Accept header that does not name application/vnd.gini.v1+json is answered 406. Real Gini
//     serves unversioned answers then; being strict here proves the client pins the version.
//   - A document that is too large is a 400 (the upload errors Gini lists are 400, 401, 415, 503).
//   - The list is newest first by default; ListOrder plays the other readings (oldest first, no
//     order at all), since Gini does not say.
//   - Extractions of a document that is still PENDING (or ended in ERROR) are empty; its layout
//     is a 404 ("the requested layout is invalid").
//   - The token endpoint does not ask for the Accept header: it is the User Center, not the API.
//
// With KeepState its documents outlive a restart; its tokens do not (see KeepState).
package ginisim

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

// MediaType is the only API version the simulator serves.
const MediaType = "application/vnd.gini.v1+json"

// Progress values of a document.
const (
	Pending   = "PENDING"
	Completed = "COMPLETED"
	Failed    = "ERROR"
)

// Config configures a Server.
type Config struct {
	// ClientID and ClientSecret are the API client's credentials: Basic auth on the token
	// endpoint, and on API calls in the backend mode (with X-User-Identifier).
	ClientID, ClientSecret string
	// Users are the User Center accounts for the password grant: username → password.
	Users map[string]string
	// TokenTTL is the access tokens' lifetime; Gini's is 3599 s.
	TokenTTL time.Duration
	// RefreshTokens makes the password grant also hand out refresh tokens. Gini does so only for
	// clients configured for it, so it is off by default.
	RefreshTokens bool
	// PendingPolls is how many looks at a document answer PENDING before it is COMPLETED.
	PendingPolls int
	// MaxBytes: a document must be smaller (Gini: "less than 10 MiB"); MaxTextBytes likewise for
	// plain text (512 KiB).
	MaxBytes     int64
	MaxTextBytes int64
	// ListOrder is the order of GET /documents: "" or "newest" (newest first), "oldest", or
	// "scrambled" (no order a client could rely on). Gini documents none.
	ListOrder string
	// FailFirstUploads makes the first upload of each content (by SHA-256) end in ERROR once its
	// PendingPolls looks are over; a later upload of the same bytes completes. It plays a vendor
	// failure that a retry cures (tests of retried rounds).
	FailFirstUploads bool
}

// Server is the simulated Gini. It is an http.Handler, safe for concurrent use.
type Server struct {
	// Scaffold's operations (for Faults and Requests): token, upload, document, extractions,
	// layout, list, delete. Its Ledger records every accepted upload.
	*simkit.Scaffold

	cfg Config

	mu      sync.Mutex
	store   *simkit.Store // nil: documents live in memory only
	docs    map[string]*document
	seq     int
	users   map[string]string // access token → username ("" for client tokens, refused by the API)
	refresh map[string]string // refresh token → username
}

type document struct {
	id, owner, name string
	seq             int
	created         time.Time
	class           string // sourceClassification
	polls           int
	forced          string // progress set by SetProgress
	fails           bool   // ends in ERROR after its pending looks (FailFirstUploads)
	rec             simkit.Recognised
}

// New returns a simulator.
func New(cfg Config) *Server {
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 3599 * time.Second
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 10 << 20
	}
	if cfg.MaxTextBytes <= 0 {
		cfg.MaxTextBytes = 512 << 10
	}
	s := &Server{
		Scaffold: simkit.NewScaffold(cfg.TokenTTL, cfg.MaxBytes+1<<20),
		cfg:      cfg,
		docs:     map[string]*document{},
		users:    map[string]string{},
		refresh:  map[string]string{},
	}
	s.Handle("POST /oauth/token", "token", s.token)
	s.Handle("POST /documents", "upload", s.api(s.upload))
	s.Handle("GET /documents", "list", s.api(s.list))
	s.Handle("GET /documents/{id}", "document", s.api(s.document))
	s.Handle("DELETE /documents/{id}", "delete", s.api(s.delete))
	s.Handle("GET /documents/{id}/extractions", "extractions", s.api(s.extractions))
	s.Handle("GET /documents/{id}/layout", "layout", s.api(s.layout))
	return s
}

// SetProgress forces a document's progress (PENDING, COMPLETED, ERROR or anything else, to test
// a client's tolerance). It reports whether the document exists.
func (s *Server) SetProgress(id, progress string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[id]
	if ok {
		d.forced = progress
		s.keep(d)
	}
	return ok
}

// SetCreated changes a document's creationDate (to test look-ups by time).
func (s *Server) SetCreated(id string, t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[id]
	if ok {
		d.created = t
		s.keep(d)
	}
	return ok
}

// Documents counts the stored documents of all users.
func (s *Server) Documents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.docs)
}

// api adds what every documents API call needs: credentials, then the pinned media type.
func (s *Server) api(h func(w http.ResponseWriter, r *http.Request, owner string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		owner, msg := s.owner(r)
		if owner == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="Gini API"`)
			apiError(w, http.StatusUnauthorized, msg)
			return
		}
		if !acceptsV1(r.Header.Get("Accept")) {
			apiError(w, http.StatusNotAcceptable, "Not acceptable: send Accept: "+MediaType)
			return
		}
		h(w, r, owner)
	}
}

// owner is whose documents a request may see: the derived user of an X-User-Identifier (backend
// mode) or the User Center user a token was issued to. An empty owner comes with the reason.
func (s *Server) owner(r *http.Request) (owner, msg string) {
	if tok := simkit.Bearer(r); tok != "" {
		if !s.Tokens.Valid(tok) {
			return "", "Invalid access token: " + tok
		}
		s.mu.Lock()
		user := s.users[tok]
		s.mu.Unlock()
		if user == "" {
			return "", "Access token is not a user token"
		}
		return "user:" + user, ""
	}
	if id, secret, ok := r.BasicAuth(); ok {
		if id != s.cfg.ClientID || secret != s.cfg.ClientSecret {
			return "", "Bad client credentials"
		}
		uid := strings.TrimSpace(r.Header.Get("X-User-Identifier"))
		if uid == "" {
			return "", "Missing X-User-Identifier header"
		}
		return "uid:" + uid, ""
	}
	return "", "Full authentication is required to access this resource"
}

func acceptsV1(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == MediaType {
			return true
		}
	}
	return false
}

// token is the User Center's /oauth/token: Basic client auth, grant_type in the query (as Gini
// documents it) or the form (as OAuth2 libraries send it).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || id != s.cfg.ClientID || secret != s.cfg.ClientSecret {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth"`)
		oauthError(w, http.StatusUnauthorized, "invalid_client", "Bad client credentials")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	var user string
	switch grant := r.Form.Get("grant_type"); grant {
	case "password":
		u, p := r.PostForm.Get("username"), r.PostForm.Get("password")
		if want, ok := s.cfg.Users[u]; !ok || u == "" || p != want {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Bad credentials")
			return
		}
		user = u
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		s.mu.Lock()
		u, ok := s.refresh[rt]
		s.mu.Unlock()
		if !s.cfg.RefreshTokens || !ok {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "Invalid refresh token: "+rt)
			return
		}
		user = u
	case "client_credentials":
		// A client token is good for the User Center only; the documents API refuses it.
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+grant)
		return
	}
	tok, secs := s.Tokens.Issue()
	answer := map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": secs, "scope": "read write"}
	s.mu.Lock()
	s.users[tok] = user
	if user != "" && s.cfg.RefreshTokens {
		rt := "simrt-" + simkit.RandomHex(16)
		s.refresh[rt] = user
		answer["refresh_token"] = rt
	}
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, "application/json;charset=UTF-8", answer)
}

// upload takes the document as the raw body (?filename=) or as the multipart part "file".
func (s *Server) upload(w http.ResponseWriter, r *http.Request, owner string) {
	name := r.URL.Query().Get("filename")
	var body io.Reader = r.Body
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		mr, err := r.MultipartReader()
		if err != nil {
			apiError(w, http.StatusBadRequest, "Malformed multipart request: "+err.Error())
			return
		}
		for {
			p, err := mr.NextPart()
			if err != nil {
				apiError(w, http.StatusBadRequest, "Multipart request without a part named file")
				return
			}
			if p.FormName() == "file" {
				body, name = p, p.FileName()
				break
			}
		}
	}
	// Read no more than the limit, and keep only what the rules below look at: a client that
	// streams a huge body learns it is too large without the simulator holding it, and a
	// document of any size costs the simulator a read buffer, not its own size.
	in, err := simkit.Inspect(body, s.cfg.MaxBytes-1, encryptMarker, loopMarker)
	if err != nil {
		apiError(w, http.StatusBadRequest, "Could not read the document: "+err.Error())
		return
	}
	if in.Over {
		apiError(w, http.StatusBadRequest, fmt.Sprintf("Document file size must be less than %s", size(s.cfg.MaxBytes)))
		return
	}
	class, status, msg := classify(in)
	if status == 0 && class == "TEXT" && in.Size >= s.cfg.MaxTextBytes {
		status, msg = http.StatusBadRequest, fmt.Sprintf("Plain text documents must be smaller than %s", size(s.cfg.MaxTextBytes))
	}
	if status != 0 {
		apiError(w, status, msg)
		return
	}
	id := uuidLike()
	sum, n := in.Hex(), in.Size
	now := time.Now()
	s.mu.Lock()
	s.seq++
	d := &document{id: id, owner: owner, name: name, seq: s.seq, created: now, class: class,
		rec: simkit.Recognise(name, in.Size, in.SHA256), fails: s.cfg.FailFirstUploads && s.Ledger.Count(sum) == 0}
	s.docs[id] = d
	s.keep(d)
	s.mu.Unlock()
	s.Ledger.Record(simkit.Upload{Ref: id, Filename: name, SHA256: sum, Size: n, At: now})
	w.Header().Set("Location", s.base(r)+"/documents/"+id)
	w.WriteHeader(http.StatusCreated)
}

// The strings whose presence anywhere in a document changes Gini's answer.
const (
	encryptMarker = "/Encrypt"    // a PDF with security restrictions
	loopMarker    = "NETSCAPE2.0" // the GIF application extension that makes it loop: an animation
)

// classify applies Gini's file rules to the bytes (never the Content-Type the client claims):
// the sourceClassification of an accepted document, or the refusal.
func classify(in simkit.Inspection) (class string, status int, msg string) {
	switch {
	case in.Size == 0:
		return "", http.StatusBadRequest, "The document is empty"
	case in.HasPrefix("%PDF-"):
		if in.Has(encryptMarker) {
			return "", http.StatusBadRequest, "PDF files must not have security restrictions such as password protection"
		}
		return "NATIVE", 0, ""
	case in.HasPrefix("GIF87a"), in.HasPrefix("GIF89a"):
		if in.Has(loopMarker) {
			return "", http.StatusUnsupportedMediaType, "Unsupported media type: animated GIF"
		}
		return "SCANNED", 0, ""
	case in.HasPrefix("\x89PNG\r\n\x1a\n"), in.HasPrefix("\xff\xd8\xff"),
		in.HasPrefix("II*\x00"), in.HasPrefix("MM\x00*"):
		return "SCANNED", 0, ""
	case in.Text:
		return "TEXT", 0, ""
	}
	// The head holds more than the 512 bytes DetectContentType reads.
	return "", http.StatusUnsupportedMediaType, "Unsupported media type: " + http.DetectContentType(in.Head)
}

// lookup finds a document of owner; another user's document is as unknown as a missing one.
func (s *Server) lookup(w http.ResponseWriter, r *http.Request, owner string) *document {
	d, ok := s.docs[r.PathValue("id")]
	if !ok || d.owner != owner {
		apiError(w, http.StatusNotFound, "Document not found: "+r.PathValue("id"))
		return nil
	}
	return d
}

func (s *Server) document(w http.ResponseWriter, r *http.Request, owner string) {
	s.mu.Lock()
	d := s.lookup(w, r, owner)
	if d == nil {
		s.mu.Unlock()
		return
	}
	// Each look moves processing on: PENDING for PendingPolls looks, then COMPLETED.
	p := s.progress(d)
	if p == Pending && d.forced == "" {
		d.polls++
		s.keep(d)
	}
	info := s.info(r, d, p)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, MediaType, info)
}

// progress is a document's state at this moment; s.mu is held.
func (s *Server) progress(d *document) string {
	switch {
	case d.forced != "":
		return d.forced
	case d.polls < s.cfg.PendingPolls:
		return Pending
	case d.fails:
		return Failed
	}
	return Completed
}

// info is Gini's document JSON; s.mu is held.
func (s *Server) info(r *http.Request, d *document, progress string) map[string]any {
	uri := s.base(r) + "/documents/" + d.id
	return map[string]any{
		"id":                   d.id,
		"name":                 d.name,
		"creationDate":         d.created.UnixMilli(),
		"progress":             progress,
		"origin":               "UPLOAD",
		"sourceClassification": d.class,
		"pageCount":            1,
		"_links": map[string]string{
			"extractions": uri + "/extractions",
			"layout":      uri + "/layout",
			"processed":   uri + "/processed",
			"document":    uri,
		},
	}
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.lookup(w, r, owner); d != nil {
		delete(s.docs, d.id)
		// Gone for good, as at Gini: a restart must not bring it back.
		_ = s.store.Delete(docKey(d.id))
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, owner string) {
	limit, ok := intParam(w, r, "limit", 20)
	if !ok {
		return
	}
	offset, ok := intParam(w, r, "offset", 0)
	if !ok {
		return
	}
	s.mu.Lock()
	var mine []*document
	for _, d := range s.docs {
		if d.owner == owner {
			mine = append(mine, d)
		}
	}
	sort.Slice(mine, func(i, j int) bool {
		if !mine[i].created.Equal(mine[j].created) {
			return mine[i].created.After(mine[j].created)
		}
		return mine[i].seq > mine[j].seq
	})
	switch s.cfg.ListOrder {
	case "oldest":
		slices.Reverse(mine)
	case "scrambled":
		// Stable across calls, so that paging stays consistent: by a hash of the id.
		sort.Slice(mine, func(i, j int) bool { return scramble(mine[i].id) < scramble(mine[j].id) })
	}
	page := []map[string]any{}
	for i := offset; i < len(mine) && i-offset < limit; i++ {
		page = append(page, s.info(r, mine[i], s.progress(mine[i])))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, MediaType, map[string]any{"totalCount": len(mine), "documents": page})
}

func scramble(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

// intParam reads a non-negative query parameter, answering 400 when it is not one.
func intParam(w http.ResponseWriter, r *http.Request, name string, def int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		apiError(w, http.StatusBadRequest, fmt.Sprintf("Invalid %s: %q", name, v))
		return 0, false
	}
	return n, true
}

// extractions answers in Gini's shape, from the deterministic simulated reading of the bytes.
func (s *Server) extractions(w http.ResponseWriter, r *http.Request, owner string) {
	s.mu.Lock()
	d := s.lookup(w, r, owner)
	if d == nil {
		s.mu.Unlock()
		return
	}
	done := s.progress(d) == Completed
	rec := d.rec
	s.mu.Unlock()
	if !done {
		writeJSON(w, http.StatusOK, MediaType, map[string]any{"extractions": map[string]any{}, "candidates": map[string]any{}})
		return
	}
	writeJSON(w, http.StatusOK, MediaType, Extractions(rec))
}

type box struct {
	Height float64 `json:"height"`
	Left   float64 `json:"left"`
	Page   int     `json:"page"`
	Top    float64 `json:"top"`
	Width  float64 `json:"width"`
}

// Extractions is the extractions answer the simulator gives for recognised content; tests use it
// to know what to expect.
func Extractions(rec simkit.Recognised) map[string]any {
	amount := rec.Total + ":" + rec.Currency
	amountBox := box{Height: 9, Left: 516, Page: 1, Top: 588, Width: 42}
	amounts := []map[string]any{
		{"box": amountBox, "entity": "amount", "value": amount},
		{"box": box{Height: 9, Left: 241, Page: 1, Top: 588, Width: 42}, "entity": "amount", "value": "0.00:" + rec.Currency},
	}
	return map[string]any{
		"extractions": map[string]any{
			"amountToPay": map[string]any{"box": amountBox, "entity": "amount", "value": amount, "candidates": "amounts"},
			"invoiceId":   map[string]any{"box": box{Height: 10, Left: 400, Page: 1, Top: 120, Width: 60}, "entity": "text", "value": rec.InvoiceNumber},
			"invoiceDate": map[string]any{"box": box{Height: 10, Left: 400, Page: 1, Top: 135, Width: 50}, "entity": "date", "value": rec.Date},
			"iban": map[string]any{"box": box{Height: 7, Left: 447, Page: 1, Top: 746, Width: 100},
				"entity": "iban", "value": "DE89370400440532013000", "candidates": "ibans"},
			// As in Gini's own example, not every extraction has a box.
			"paymentReference": map[string]any{"entity": "reference", "value": rec.InvoiceNumber},
			"docType":          map[string]any{"entity": "doctype", "value": "Invoice"},
		},
		"candidates": map[string]any{
			"amounts": amounts,
			"ibans":   []map[string]any{{"box": box{Height: 7, Left: 447, Page: 1, Top: 746, Width: 100}, "entity": "iban", "value": "DE89370400440532013000"}},
		},
	}
}

// layout answers pages → textZones → paragraphs → lines → wds, one line per line of the text.
func (s *Server) layout(w http.ResponseWriter, r *http.Request, owner string) {
	s.mu.Lock()
	d := s.lookup(w, r, owner)
	if d == nil {
		s.mu.Unlock()
		return
	}
	done := s.progress(d) == Completed
	text := d.rec.Text
	s.mu.Unlock()
	if !done {
		apiError(w, http.StatusNotFound, "Layout not available: the document is not processed")
		return
	}
	writeJSON(w, http.StatusOK, MediaType, Layout(text))
}

// Layout is the layout answer for a text.
func Layout(text string) map[string]any {
	const left, top, lineH, charW = 54.0, 158.76, 12.0, 5.5
	var lines []map[string]any
	for i, line := range strings.Split(text, "\n") {
		t := top + float64(i)*lineH
		var words []map[string]any
		x := left
		for _, word := range strings.Fields(line) {
			wd := float64(utf8.RuneCountInString(word)) * charW
			words = append(words, map[string]any{"l": x, "t": t, "w": wd, "h": 9.9,
				"fontSize": 9.9, "fontFamily": "Arial-BoldMT", "bold": false, "text": word})
			x += wd + charW
		}
		lines = append(lines, map[string]any{"l": left, "t": t, "w": x - left, "h": 10.8, "wds": words})
	}
	return map[string]any{"pages": []map[string]any{{
		"number": 1, "sizeX": 595.3, "sizeY": 841.9,
		"textZones": []map[string]any{{"paragraphs": []map[string]any{{
			"l": left, "t": top, "w": 400.0, "h": float64(len(lines)) * lineH, "lines": lines,
		}}}},
		"regions": []map[string]any{{"l": 20.0, "t": 240.1, "w": 190.0, "h": 150.3, "type": "RemittanceSlip"}},
	}}}
}

// base is the absolute URI of this server as the client reached it, for Location and _links.
func (s *Server) base(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, MediaType, map[string]string{"message": msg, "requestId": uuidLike()})
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, "application/json;charset=UTF-8", map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// uuidLike makes an id in the shape of Gini's UUIDs.
func uuidLike() string {
	h := simkit.RandomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// storedDocument is a document as the state store keeps it: what the simulator needs to answer
// for it after a restart as it did before. Not the document's bytes: the simulated reading (Rec)
// is all the extractions and the layout are made of.
type storedDocument struct {
	ID      string            `json:"id"`
	Owner   string            `json:"owner"`
	Name    string            `json:"name"`
	Seq     int               `json:"seq"`
	Created time.Time         `json:"created"`
	Class   string            `json:"class"`
	Polls   int               `json:"polls"`
	Forced  string            `json:"forced,omitempty"`
	Fails   bool              `json:"fails,omitempty"`
	Rec     simkit.Recognised `json:"rec"`
}

func docKey(id string) string { return "document/" + id }

// KeepState keeps the documents in the journal at path: those it holds are known again (a sandbox
// restarted with ingest still has the documents in flight, with their progress), and every change
// is written there. Tokens are not kept: a client whose access token the restart forgot gets a
// 401 and logs in again, as it would after the token expired at Gini.
func (s *Server) KeepState(path string) error {
	store, records, order, err := simkit.OpenStore(path, 0)
	if err != nil {
		return fmt.Errorf("the Gini sandbox cannot keep its documents across restarts: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		store.Close()
		return errors.New("the Gini sandbox already keeps its documents")
	}
	for _, k := range order {
		var sd storedDocument
		// A record this version cannot read is skipped: the sandbox starts, one document short.
		if json.Unmarshal(records[k], &sd) != nil || sd.ID == "" || sd.Owner == "" {
			continue
		}
		s.docs[sd.ID] = &document{id: sd.ID, owner: sd.Owner, name: sd.Name, seq: sd.Seq, created: sd.Created,
			class: sd.Class, polls: sd.Polls, forced: sd.Forced, fails: sd.Fails, rec: sd.Rec}
		// The sequence orders documents uploaded in the same instant: it goes on from the
		// highest kept, so that a new document still lists after the old ones.
		s.seq = max(s.seq, sd.Seq)
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

// keep writes d to the journal (s.mu held, so that the journal sees changes in the order they
// were made). A failed write is not the client's problem: the document lives on in memory.
func (s *Server) keep(d *document) {
	_ = s.store.Put(docKey(d.id), storedDocument{ID: d.id, Owner: d.owner, Name: d.name, Seq: d.seq,
		Created: d.created, Class: d.class, Polls: d.polls, Forced: d.forced, Fails: d.fails, Rec: d.rec})
}
