package httpdrop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/ingest-dev/ingest/docapi"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/intake"
)

// Limits on what travels next to the documents.
const (
	maxFields        = 64
	maxFieldKeyLen   = 64
	maxFieldValueLen = 4096
	// commitTimeout bounds the wait for JetStream after the upload is in: a client should hear
	// "retry" rather than wait forever while NATS is away.
	commitTimeout = 30 * time.Second
)

// Response is the body of a 202.
type Response struct {
	Documents []Accepted `json:"documents"`
}

// Accepted is one accepted document.
type Accepted struct {
	ID          string `json:"id"`
	StatusURL   string `json:"status_url"`
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
}

// request is an upload, read.
type request struct {
	files    []intake.Staged
	names    []string // file names as sent, one per file
	metadata map[string]string
	vendors  []string
	route    string
}

// fingerprint identifies a request by what it carries (names, bytes, fields), not by its wire form:
// curl picks a new multipart boundary on every run, yet a retry is the same request.
func (r *request) fingerprint() string {
	h := sha256.New()
	for i, f := range r.files {
		fmt.Fprintf(h, "file\x00%s\x00%s\x00", r.names[i], f.SHA256)
	}
	keys := make([]string, 0, len(r.metadata))
	for k := range r.metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "meta\x00%s\x00%s\x00", k, r.metadata[k])
	}
	fmt.Fprintf(h, "vendors\x00%s\x00route\x00%s", strings.Join(r.vendors, ","), r.route)
	return hex.EncodeToString(h.Sum(nil))
}

// storeFunc takes one file's bytes: Stage for a new request, Check for a replay.
type storeFunc func(ctx context.Context, docID, filename string, r io.Reader) (intake.Staged, error)

func (d *Drop) upload(c echo.Context) error {
	req := c.Request()
	ctx := req.Context()
	if req.ContentLength > d.cfg.MaxRequestBytes {
		return d.refuse("too_large", httpapi.NewProblem(http.StatusRequestEntityTooLarge,
			"the request is %s; the limit is %s per request and %s per document",
			intake.HumanBytes(req.ContentLength), intake.HumanBytes(d.cfg.MaxRequestBytes), intake.HumanBytes(d.cfg.MaxDocumentBytes)).
			WithLimit(d.cfg.MaxRequestBytes))
	}
	if req.ContentLength == 0 {
		return d.refuse("empty", httpapi.NewProblem(http.StatusBadRequest,
			"the request body is empty: send the document as the body (with ?filename=) or as multipart/form-data parts named file"))
	}
	req.Body = &clientBody{http.MaxBytesReader(c.Response(), req.Body, d.cfg.MaxRequestBytes)}

	key := req.Header.Get("Idempotency-Key")
	if key == "" {
		return d.accept(c, nil)
	}
	if err := validIdempotencyKey(key); err != nil {
		return d.refuse("bad_idempotency_key", err)
	}
	cl, done, err := d.claim(ctx, clientOf(c), key)
	if err != nil {
		return err
	}
	if done != nil {
		return d.replay(c, done)
	}
	return d.accept(c, cl)
}

// stage stores one file of a new request.
func (d *Drop) stage(ctx context.Context, id, name string, r io.Reader) (intake.Staged, error) {
	return d.in.Stage(ctx, id, name, r, d.cfg.MaxDocumentBytes)
}

// stageAgain stores one file of a request that an earlier attempt began (same key, same ids):
// bytes the earlier attempt stored under the id are kept — they may be announced already — once
// the file is checked to be the same.
func (d *Drop) stageAgain(ctx context.Context, id, name string, r io.Reader) (intake.Staged, error) {
	info, err := d.bus.Blobs().Info(ctx, intake.ObjectKey(id))
	if errors.Is(err, events.ErrBlobNotFound) {
		return d.stage(ctx, id, name, r)
	}
	if err != nil {
		return intake.Staged{}, err
	}
	st, err := intake.Check(id, name, r, d.cfg.MaxDocumentBytes)
	if err != nil {
		return intake.Staged{}, err
	}
	if st.SHA256 != info.SHA256 || st.Size != info.Size {
		return intake.Staged{}, d.refuse("idempotency_mismatch", mismatch())
	}
	return st, nil
}

// accept reads the request, stores its documents, announces them and answers 202. cl is the
// request's Idempotency-Key claim, nil without a key.
func (d *Drop) accept(c echo.Context, cl *claim) (err error) {
	ctx := c.Request().Context()
	ids, stage, discard := func(int) string { return intake.NewDocumentID() }, d.stage, d.in.Discard
	// burned: the request's ids may be in use (something was, or may have been, announced).
	burned := false
	if cl != nil {
		ids, burned = cl.docID, cl.takeover
		if cl.takeover {
			// What the earlier attempt stored may be announced already: never removed.
			stage, discard = d.stageAgain, nil
		}
		defer func() {
			if err != nil {
				d.release(ctx, cl, burned)
			}
		}()
	}
	r, err := d.read(c, stage, discard, ids)
	if err != nil {
		return err
	}
	if d.cfg.CheckRouting != nil {
		if err := d.cfg.CheckRouting(r.vendors, r.route); err != nil {
			if discard != nil {
				for _, st := range r.files {
					discard(ctx, st)
				}
			}
			return d.refuse("bad_routing", httpapi.NewProblem(http.StatusBadRequest, "%v", err))
		}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	origin := intake.Origin{
		Source:   events.SourceRef{Kind: events.SourceHTTP, Name: d.cfg.SourceName},
		Metadata: r.metadata,
		Vendors:  r.vendors,
		Route:    r.route,
		NewID:    cl == nil, // without a key, every id was just made by NewDocumentID
	}
	resp := Response{Documents: make([]Accepted, 0, len(r.files))}
	replayed := false
	for i, st := range r.files {
		burned = true
		if cl != nil && cl.takeover && d.announced(cctx, st.DocumentID) {
			replayed = true // the earlier attempt got this far
			resp.Documents = append(resp.Documents, accepted(st))
			continue
		}
		if _, err := d.in.Commit(cctx, st, origin); err != nil {
			// File i may be announced all the same (no answer is not a refusal): its bytes stay.
			if discard != nil {
				for _, rest := range r.files[i+1:] {
					discard(ctx, rest)
				}
			}
			d.log.ErrorContext(ctx, "could not announce an uploaded document", "doc_id", st.DocumentID, "err", err)
			return storeUnavailable(fmt.Sprintf("file %d and those after it could not be recorded", i+1), err)
		}
		resp.Documents = append(resp.Documents, accepted(st))
	}
	if cl != nil {
		d.complete(ctx, cl, r.fingerprint(), resp)
	}
	if replayed {
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	return d.answer(c, resp)
}

// announced reports whether the document's received event is known to the state store. "Could
// not tell" is false: Commit then publishes with the event's id, which JetStream (or, past its
// duplicate window, the state) recognises as the same event.
func (d *Drop) announced(ctx context.Context, id string) bool {
	doc, err := d.bus.States().Get(ctx, id)
	return err == nil && doc.Status != ""
}

func accepted(st intake.Staged) Accepted {
	return Accepted{ID: st.DocumentID, StatusURL: docapi.StatusURL(st.DocumentID), Filename: st.Filename,
		ContentType: st.ContentType, Size: st.Size, SHA256: st.SHA256}
}

func (d *Drop) answer(c echo.Context, resp Response) error {
	ids := make([]string, len(resp.Documents))
	for i, a := range resp.Documents {
		ids[i] = a.ID
	}
	c.Set(httpapi.DocIDKey, strings.Join(ids, ","))
	if len(resp.Documents) == 1 {
		c.Response().Header().Set(echo.HeaderLocation, resp.Documents[0].StatusURL)
	}
	return c.JSON(http.StatusAccepted, resp)
}

// read parses the request, handing each file to store under the id ids gives for its position
// (nil: fresh ids). On error, discard (if not nil) is called for every file stored so far.
func (d *Drop) read(c echo.Context, store storeFunc, discard func(context.Context, intake.Staged), ids func(i int) string) (_ *request, err error) {
	req := c.Request()
	ctx := req.Context()
	if ids == nil {
		ids = func(int) string { return intake.NewDocumentID() }
	}
	r := &request{metadata: map[string]string{}}
	defer func() {
		if err != nil && discard != nil {
			for _, st := range r.files {
				discard(ctx, st)
			}
		}
	}()
	rawName := ""
	for k, vs := range req.URL.Query() {
		for _, v := range vs {
			if k == "filename" {
				rawName = v
				continue
			}
			if err := r.field(k, v); err != nil {
				return nil, d.refuse("bad_field", err)
			}
		}
	}
	mediaType, params, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType))
	switch {
	case mediaType == "multipart/form-data":
		if err := d.readMultipart(ctx, r, params["boundary"], req.Body, store, ids); err != nil {
			return nil, err
		}
	case strings.HasPrefix(mediaType, "multipart/"):
		return nil, d.refuse("malformed", httpapi.NewProblem(http.StatusBadRequest,
			"%s is not supported: send multipart/form-data, or the document itself as the body", mediaType))
	default:
		// Any other body is the document itself, whatever Content-Type it claims (curl
		// --data-binary sends application/x-www-form-urlencoded): its type is sniffed.
		if rawName == "" {
			if _, p, err := mime.ParseMediaType(req.Header.Get(echo.HeaderContentDisposition)); err == nil {
				rawName = p["filename"]
			}
		}
		st, err := store(ctx, ids(0), rawName, req.Body)
		if err != nil {
			return nil, d.refusal(err, "the body")
		}
		r.add(st, rawName)
	}
	return r, nil
}

func (d *Drop) readMultipart(ctx context.Context, r *request, boundary string, body io.Reader, store storeFunc, ids func(int) string) error {
	if boundary == "" {
		return d.refuse("malformed", httpapi.NewProblem(http.StatusBadRequest,
			"the multipart/form-data Content-Type has no boundary parameter"))
	}
	mr := multipart.NewReader(body, boundary)
	for parts := 0; ; parts++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return d.refusal(err, "the multipart body")
		}
		if parts >= d.cfg.MaxFiles+maxFields {
			return d.refuse("too_many_parts", httpapi.NewProblem(http.StatusBadRequest,
				"the request has more than %d parts", d.cfg.MaxFiles+maxFields))
		}
		name := part.FormName()
		switch {
		case name == "file":
			if len(r.files) == d.cfg.MaxFiles {
				return d.refuse("too_many_files", httpapi.NewProblem(http.StatusBadRequest,
					"the request has more than %d files; send the rest in another request", d.cfg.MaxFiles))
			}
			label := fmt.Sprintf("file %d", len(r.files)+1)
			if fn := part.FileName(); fn != "" {
				label += fmt.Sprintf(" (%s)", intake.SanitizeFilename(fn, "", ""))
			}
			sent := rawFilename(part)
			st, err := store(ctx, ids(len(r.files)), sent, part)
			if err != nil {
				return d.refusal(err, label)
			}
			r.add(st, sent)
		case part.FileName() != "":
			return d.refuse("malformed", httpapi.NewProblem(http.StatusBadRequest,
				"the part %q carries a file; documents go in parts named \"file\"", truncate(name, 64)))
		default:
			v, err := io.ReadAll(io.LimitReader(part, maxFieldValueLen+1))
			if err != nil {
				return d.refusal(err, fmt.Sprintf("the field %q", truncate(name, 64)))
			}
			if len(v) > maxFieldValueLen {
				return d.refuse("bad_field", httpapi.NewProblem(http.StatusBadRequest,
					"the field %q is longer than %d bytes", truncate(name, 64), maxFieldValueLen))
			}
			if err := r.field(name, string(v)); err != nil {
				return d.refuse("bad_field", err)
			}
		}
		part.Close()
	}
	if len(r.files) == 0 {
		return d.refuse("no_file", httpapi.NewProblem(http.StatusBadRequest,
			"the multipart body has no document: put each one in a part named file"))
	}
	return nil
}

// rawFilename is the part's filename parameter as sent; Part.FileName would already cut it to
// its base name, and SanitizeFilename does that and more.
func rawFilename(p *multipart.Part) string {
	if _, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition")); err == nil {
		return params["filename"]
	}
	return p.FileName()
}

func (r *request) add(st intake.Staged, name string) {
	r.files = append(r.files, st)
	r.names = append(r.names, name)
}

// field takes a form field or query parameter: vendor and route steer dispatch, anything else is
// metadata carried in the received event.
func (r *request) field(k, v string) error {
	switch k {
	case "vendor":
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			if !events.ValidToken(name) {
				return httpapi.NewProblem(http.StatusBadRequest, "vendor %q is not a vendor name (lower-case letters, digits, - and _)", truncate(name, 64))
			}
			if !contains(r.vendors, name) {
				r.vendors = append(r.vendors, name)
			}
		}
		return nil
	case "route":
		if !events.ValidToken(v) {
			return httpapi.NewProblem(http.StatusBadRequest, "route %q is not a route name (lower-case letters, digits, - and _)", truncate(v, 64))
		}
		r.route = v
		return nil
	}
	if !validFieldKey(k) {
		return httpapi.NewProblem(http.StatusBadRequest,
			"metadata field name %q is not allowed: use up to %d letters, digits, '.', '-' and '_'", truncate(k, 64), maxFieldKeyLen)
	}
	if len(v) > maxFieldValueLen || !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return httpapi.NewProblem(http.StatusBadRequest,
			"metadata field %q must be UTF-8 text of at most %d bytes", k, maxFieldValueLen)
	}
	if _, seen := r.metadata[k]; !seen && len(r.metadata) == maxFields {
		return httpapi.NewProblem(http.StatusBadRequest, "more than %d metadata fields", maxFields)
	}
	r.metadata[k] = v
	return nil
}

// refusal turns an error met while reading a part of the request into the answer the client needs.
func (d *Drop) refusal(err error, what string) error {
	var tooLarge *intake.TooLargeError
	var unsupported *intake.UnsupportedTypeError
	var maxBytes *http.MaxBytesError
	var slow *httpapi.SlowBodyError
	switch {
	case errors.As(err, &slow):
		return d.refuse("slow", httpapi.SlowBodyProblem(slow))
	case errors.As(err, &tooLarge):
		return d.refuse("too_large", httpapi.NewProblem(http.StatusRequestEntityTooLarge,
			"%s is larger than the limit of %s per document", what, intake.HumanBytes(tooLarge.Limit)).WithLimit(tooLarge.Limit))
	case errors.As(err, &maxBytes):
		return d.refuse("too_large", httpapi.NewProblem(http.StatusRequestEntityTooLarge,
			"the request is larger than the limit of %s per request", intake.HumanBytes(maxBytes.Limit)).WithLimit(maxBytes.Limit))
	case errors.As(err, &unsupported):
		p := httpapi.NewProblem(http.StatusUnsupportedMediaType, "%s: %s", what, unsupported.Error())
		p.Detected = unsupported.Detected
		return d.refuse("unsupported_type", p)
	case errors.Is(err, intake.ErrEmpty):
		return d.refuse("empty", httpapi.NewProblem(http.StatusBadRequest, "%s is empty", what))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), isMultipartSyntax(err):
		return d.refuse("malformed", httpapi.NewProblem(http.StatusBadRequest,
			"%s is malformed or was cut off before its end (%v)", what, err))
	}
	var p *httpapi.Problem
	var body *clientReadError
	switch {
	case errors.As(err, &p):
		return err
	case errors.As(err, &body):
		// The client's connection failed under us (reset, timeout); it may not hear this.
		return d.refuse("malformed", httpapi.NewProblem(http.StatusBadRequest, "%s could not be read: %v", what, body.err))
	}
	d.log.Error("could not store an uploaded document", "part", what, "err", err)
	return storeUnavailable(what+" could not be stored", err)
}

// clientBody marks errors of the request body as the client's, so that they are not mistaken
// for a failure of the store the bytes go to.
type clientBody struct{ r io.ReadCloser }

type clientReadError struct{ err error }

func (e *clientReadError) Error() string { return "reading the request: " + e.err.Error() }
func (e *clientReadError) Unwrap() error { return e.err }

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		var maxBytes *http.MaxBytesError
		if !errors.As(err, &maxBytes) && !errors.Is(err, io.ErrUnexpectedEOF) {
			err = &clientReadError{err}
		}
	}
	return n, err
}

func (b *clientBody) Close() error { return b.r.Close() }

func isMultipartSyntax(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "multipart:") || strings.Contains(s, "malformed MIME header")
}

func (d *Drop) refuse(reason string, err error) error {
	d.rejected.WithLabelValues(reason).Inc()
	return err
}

func clientOf(c echo.Context) string {
	s, _ := c.Get(httpapi.ClientKey).(string)
	return s
}

func validFieldKey(s string) bool {
	if s == "" || len(s) > maxFieldKeyLen {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
