// Package allspark is the client for Allspark, ikarus.ai's document-AI service
// (https://apidocs.ikarus.ai/). A document becomes a "case": direct-upload makes a one-file case
// and starts processing it; the multi-file flow creates a case, adds files and marks it complete.
// Cases are polled with GET /cases/{id}; extracted fields come with the case, OCR text per file.
//
// The API looks like Django REST Framework: every documented path is kept exactly as the vendor's
// samples write it, trailing slash or not, because DRF cannot redirect a POST that lacks its slash.
package allspark

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors"
)

// Name is the vendor's name in config, subjects and events.
const Name = "allspark"

// DefaultBaseURL is the production API.
const DefaultBaseURL = "https://api-prod.ikarus.ai/api/v1"

// Defaults for what the documentation leaves open.
const (
	// defaultClockSkew widens Find's window: created_at is Allspark's clock, since is ours.
	defaultClockSkew = time.Minute
	// defaultListPageSize and defaultListPages bound how far back Find looks (500 cases).
	defaultListPageSize = 50
	defaultListPages    = 10
	// fallbackFilename is sent when a document has no name: Allspark keys OCR output by name.
	fallbackFilename = "document"
)

// Config configures a Client.
type Config struct {
	// BaseURL is the API root up to and including /api/v1; DefaultBaseURL when empty.
	BaseURL string
	// UploadPath is the direct upload under BaseURL: DefaultUploadPath when empty. Allspark's
	// document shows it both as /cases/direct-upload/ and as /direct-upload/ [U].
	UploadPath string
	// APIKey is the key made in the Allspark UI (APIs section). Required.
	APIKey string
	// DocumentType is sent as document_type with each file when set: one of the document types
	// defined in the account's process.
	DocumentType string
	// DoneStatuses are the case statuses that mean "finished"; default ["completed"]. Processes
	// can define custom statuses [I], so this is configurable.
	DoneStatuses []string
	// FailedStatuses are the statuses that mean Allspark gave up on a case; default
	// ["failed","error"]. The documentation names none [U]; these are a guess to be confirmed.
	FailedStatuses []string
	// FetchOCR makes Result fetch each file's OCR text (one more request per file). The zero value
	// is false so that a Config literal stays explicit; the service configuration defaults it to
	// true.
	FetchOCR bool
	// ClockSkew is how far before since Find still looks, because created_at comes from
	// Allspark's clock; default one minute.
	ClockSkew time.Duration
	// ListPageSize and ListPages bound Find's walk through the case list (50 and 10: the newest
	// 500 cases). A crashed submission older than that is in doubt, never submitted again on a
	// guess.
	ListPageSize, ListPages int
	// Timeout bounds one request including an upload; 0 takes HTTPClient's timeout, then the
	// caller's default (5 minutes).
	Timeout time.Duration
	// RateLimit is requests per second, 0 for none (Allspark documents no limit [U]).
	RateLimit float64
	// Concurrency caps requests in flight, 0 for no cap.
	Concurrency int
	// HTTPClient supplies the transport (proxies, TLS, tests). Only its Transport and Timeout are
	// used: redirects are followed by the shared caller's own client.
	HTTPClient *http.Client
}

// Client talks to Allspark. It is safe for concurrent use.
type Client struct {
	cfg    Config
	base   string // BaseURL without the trailing slash
	caller *vendors.Caller
}

var (
	_ vendors.Vendor     = (*Client)(nil)
	_ vendors.Reconciler = (*Client)(nil)
)

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, errors.New("allspark: an API key is required (make one in the Allspark UI, APIs section)")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := vendors.ParseHTTPURL("base URL", cfg.BaseURL)
	if err != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("allspark: base URL %q is not an http(s) URL without query, like %s", cfg.BaseURL, DefaultBaseURL)
	}
	if len(cfg.DoneStatuses) == 0 {
		cfg.DoneStatuses = []string{"completed"}
	}
	if len(cfg.FailedStatuses) == 0 {
		cfg.FailedStatuses = []string{"failed", "error"}
	}
	for _, s := range cfg.DoneStatuses {
		if hasStatus(cfg.FailedStatuses, s) {
			return nil, fmt.Errorf("allspark: status %q is both done and failed", s)
		}
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = defaultClockSkew
	}
	if cfg.UploadPath == "" {
		cfg.UploadPath = DefaultUploadPath
	}
	if !strings.HasPrefix(cfg.UploadPath, "/") || strings.ContainsAny(cfg.UploadPath, "?#") {
		return nil, fmt.Errorf("allspark: upload path %q must be a path starting with /", cfg.UploadPath)
	}
	if cfg.ListPageSize <= 0 {
		cfg.ListPageSize = defaultListPageSize
	}
	if cfg.ListPages <= 0 {
		cfg.ListPages = defaultListPages
	}
	var next http.RoundTripper = vendors.NewTransport(cfg.Concurrency)
	if cfg.HTTPClient != nil {
		if cfg.HTTPClient.Transport != nil {
			next = cfg.HTTPClient.Transport
		}
		if cfg.Timeout == 0 {
			cfg.Timeout = cfg.HTTPClient.Timeout
		}
	}
	c := &Client{cfg: cfg, base: strings.TrimRight(u.String(), "/")}
	c.caller = vendors.NewCaller(vendors.CallerConfig{
		Vendor:      Name,
		Timeout:     cfg.Timeout,
		RateLimit:   cfg.RateLimit,
		Concurrency: cfg.Concurrency,
		// The key is set by the transport, not by Authorize: Go forwards custom headers on a
		// redirect to another host, and a key-only API must not hand its key to whoever a
		// redirect names. The transport adds it only for Allspark's own scheme and host.
		Transport: keyTransport{next: next, key: cfg.APIKey, scheme: u.Scheme, host: u.Host},
	})
	return c, nil
}

// keyTransport sets the API-KEY header on requests to the configured API host only.
type keyTransport struct {
	next         http.RoundTripper
	key          string
	scheme, host string
}

func (t keyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == t.scheme && strings.EqualFold(req.URL.Host, t.host) {
		req = req.Clone(req.Context()) // a RoundTripper must not change the caller's request
		req.Header.Set("API-KEY", t.key)
	}
	return t.next.RoundTrip(req)
}

// Name is "allspark".
func (c *Client) Name() string { return Name }

// DefaultUploadPath is the direct upload as the API reference's endpoint list writes it.
const DefaultUploadPath = "/cases/direct-upload/"

// Submit uploads doc as a one-file case (POST UploadPath); processing starts at once. The
// reference is the case id in decimal.
func (c *Client) Submit(ctx context.Context, doc vendors.Document) (string, error) {
	const op = "submit"
	res, err := c.upload(ctx, op, c.base+c.cfg.UploadPath, doc)
	if err != nil {
		return "", err
	}
	return c.readCaseID(op, res)
}

// CreateCase opens an empty case for several files (POST /cases/). Nothing is processed until
// MarkComplete.
func (c *Client) CreateCase(ctx context.Context) (string, error) {
	const op = "create-case"
	res, err := c.do(ctx, op, http.MethodPost, c.base+"/cases/")
	if err != nil {
		return "", err
	}
	return c.readCaseID(op, res)
}

// AddFile uploads doc into the case made by CreateCase (POST /cases/{id}/add-file/).
func (c *Client) AddFile(ctx context.Context, caseID string, doc vendors.Document) error {
	const op = "add-file"
	id, err := c.ref(op, caseID)
	if err != nil {
		return err
	}
	res, err := c.upload(ctx, op, c.base+"/cases/"+id+"/add-file/", doc)
	if err != nil {
		return err
	}
	return c.readSuccess(op, res)
}

// MarkComplete tells Allspark that every file is in and the case may be processed
// (POST /cases/{id}/mark-complete/).
func (c *Client) MarkComplete(ctx context.Context, caseID string) error {
	const op = "mark-complete"
	id, err := c.ref(op, caseID)
	if err != nil {
		return err
	}
	res, err := c.do(ctx, op, http.MethodPost, c.base+"/cases/"+id+"/mark-complete/")
	if err != nil {
		return err
	}
	return c.readSuccess(op, res)
}

// Check reads the case's status (GET /cases/{id}). A done status is Done, a failed status is
// Done and Failed, and anything else (pending, a process's custom step such as "in_review") is
// still pending.
func (c *Client) Check(ctx context.Context, ref string) (vendors.Progress, error) {
	const op = "status"
	id, err := c.ref(op, ref)
	if err != nil {
		return vendors.Progress{}, err
	}
	res, err := c.do(ctx, op, http.MethodGet, c.base+"/cases/"+id)
	if err != nil {
		return vendors.Progress{}, aboutCase(id, err)
	}
	p := vendors.Progress{RetryAfter: vendors.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())}
	body, err := vendors.ReadJSON(Name, op, res, nil)
	if err != nil {
		return vendors.Progress{}, err
	}
	// Only the status is read here: a half-built case (files still being extracted) must not
	// make a status check fail.
	var head struct {
		Status *string `json:"status"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return vendors.Progress{}, vendors.Malformed(Name, op, fmt.Errorf("case is not a JSON object with a text status: %w", err), body)
	}
	if head.Status == nil {
		return vendors.Progress{}, vendors.Malformed(Name, op, errors.New("case has no status"), body)
	}
	switch status := *head.Status; {
	case hasStatus(c.cfg.DoneStatuses, status):
		p.Done = true
	case hasStatus(c.cfg.FailedStatuses, status):
		p.Done, p.Failed = true, true
		p.Error = messageOf(body)
		if p.Error == "" {
			p.Error = fmt.Sprintf("Allspark marked case %s as %q", id, status)
		}
	}
	return p, nil
}

// Result fetches the finished case: its fields, each file's OCR text when FetchOCR is set, and
// the case JSON verbatim.
func (c *Client) Result(ctx context.Context, ref string) (vendors.Result, error) {
	const op = "result"
	id, err := c.ref(op, ref)
	if err != nil {
		return vendors.Result{}, err
	}
	cs, raw, err := c.getCase(ctx, op, id)
	if err != nil {
		return vendors.Result{}, err
	}
	r := vendors.Result{Raw: raw}
	for _, f := range cs.Files {
		r.Fields = append(r.Fields, f.Fields...)
	}
	// A failed case has no text to give, and asking would turn the vendor's verdict into an
	// OCR error.
	if !c.cfg.FetchOCR || hasStatus(c.cfg.FailedStatuses, cs.Status) {
		return r, nil
	}
	var texts []string
	for _, f := range cs.Files {
		if f.Name == "" {
			continue // OCR output is asked for by name; a nameless file cannot be asked for
		}
		t, err := c.ocr(ctx, id, f.Name)
		if err != nil {
			return vendors.Result{}, err
		}
		texts = append(texts, t)
	}
	r.Text = strings.Join(texts, "\n\n")
	return r, nil
}

// Find looks for a case holding a file whose name carries doc's tag among the cases made since
// then (less ClockSkew), newest first as Allspark's list documents. The answer is Absent only
// when the list reached a case older than that, or its end; Unknown when ListPages ran out
// first.
func (c *Client) Find(ctx context.Context, doc vendors.Document, since time.Time) (vendors.Lookup, error) {
	const op = "find"
	from := since.Add(-c.cfg.ClockSkew)
	m := vendors.Matcher{DocID: doc.ID}
	offset := 0
	for range c.cfg.ListPages {
		q := url.Values{
			"order":   {"desc"},
			"sort_by": {"created_at"},
			"limit":   {strconv.Itoa(c.cfg.ListPageSize)},
		}
		if offset > 0 {
			q.Set("offset", strconv.Itoa(offset))
		}
		res, err := c.do(ctx, op, http.MethodGet, c.base+"/cases/?"+q.Encode())
		if err != nil {
			return vendors.Lookup{}, err
		}
		var page struct {
			Next    json.RawMessage `json:"next"`
			Results []struct {
				CaseID    json.RawMessage `json:"case_id"`
				CreatedAt string          `json:"created_at"`
			} `json:"results"`
		}
		body, err := vendors.ReadJSON(Name, op, res, &page)
		if err != nil {
			return vendors.Lookup{}, err
		}
		reachedOlder := false
		for _, it := range page.Results {
			// A time we cannot read cannot rule the case out: look at it.
			if t, err := time.Parse(time.RFC3339Nano, it.CreatedAt); err == nil && t.Before(from) {
				reachedOlder = true
				continue
			}
			id, err := ParseCaseID(it.CaseID)
			if err != nil {
				return vendors.Lookup{}, vendors.Malformed(Name, op, fmt.Errorf("case list: %w", err), body)
			}
			cs, _, err := c.getCase(ctx, op, id)
			if err != nil {
				var ve *vendors.Error
				if errors.As(err, &ve) && ve.Status == http.StatusNotFound {
					continue // deleted between the list and now: not a case that holds anything
				}
				return vendors.Lookup{}, err
			}
			for _, f := range cs.Files {
				m.Offer(id, f.Name)
			}
		}
		// The list is newest first: a case older than the window means the rest is older still.
		// The next page is asked for by offset on our own base URL rather than by following next
		// literally: DRF behind a proxy often writes http:// or an inner host name into it.
		if len(page.Results) == 0 || reachedOlder || isNull(page.Next) || m.Any() {
			return m.Lookup(true, ""), nil
		}
		offset += len(page.Results)
	}
	return m.Lookup(false, fmt.Sprintf("Allspark's case list was read to %d cases (the bound) without reaching %s",
		offset, from.UTC().Format(time.RFC3339))), nil
}

// ParseCaseID reads a case id as Allspark sends it: a JSON integer as documented, or a string of
// digits from a lenient serializer (or a callback). The id is returned in plain decimal, so it is
// safe in a URL path.
func ParseCaseID(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", errors.New("case_id is missing")
	}
	if !json.Valid(raw) {
		return "", fmt.Errorf("case_id %s is not JSON", vendors.Excerpt(raw))
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("case_id %s is not a valid JSON string", vendors.Excerpt(raw))
		}
		s = strings.TrimSpace(s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		// 0 is refused too: DRF ids start at 1, and 0 is what a missing value defaults to.
		return "", fmt.Errorf("case_id %s is not a positive whole number", vendors.Excerpt(raw))
	}
	return strconv.FormatUint(n, 10), nil
}

// Case is an Allspark case as GET /cases/{id} returns it, normalised.
type Case struct {
	ID        string
	Status    string
	Files     []File
	CreatedAt time.Time // zero when absent or unreadable
	UpdatedAt time.Time
	// Message is the vendor's words about the case (a failure reason) where it gave any. The
	// documentation shows none, so several usual keys are tried.
	Message string
}

// File is one file of a case with its extracted fields.
type File struct {
	Name   string
	Fields []events.Field
}

// ParseCase normalises a case's JSON: case_id is required (int or string), files must be a list,
// each file's fields a list. A field's Name is its name, else its display_name, else
// "field_<field_id>"; its Value is the vendor's value as text whatever its JSON type (a number
// keeps its digits, null is empty, an object stays JSON).
func ParseCase(raw []byte) (Case, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return Case{}, errors.New("case is not a JSON object")
	}
	var c Case
	var err error
	if c.ID, err = ParseCaseID(top["case_id"]); err != nil {
		return Case{}, err
	}
	if c.Status, err = optString(top["status"]); err != nil {
		return Case{}, fmt.Errorf("status: %w", err)
	}
	for _, k := range []string{"created_at", "updated_at"} {
		s, _ := optString(top[k])
		t, _ := time.Parse(time.RFC3339Nano, s)
		if k == "created_at" {
			c.CreatedAt = t
		} else {
			c.UpdatedAt = t
		}
	}
	c.Message = messageOf(raw)
	var files []json.RawMessage
	if v := top["files"]; !isNull(v) {
		if err := json.Unmarshal(v, &files); err != nil {
			return Case{}, errors.New("files is not a list")
		}
	}
	for i, fr := range files {
		var f struct {
			FileName json.RawMessage `json:"file_name"`
			Fields   json.RawMessage `json:"fields"`
		}
		if err := json.Unmarshal(fr, &f); err != nil {
			return Case{}, fmt.Errorf("file %d is not a JSON object", i+1)
		}
		name, err := optString(f.FileName)
		if err != nil {
			return Case{}, fmt.Errorf("file %d: file_name: %w", i+1, err)
		}
		file := File{Name: name}
		var fields []json.RawMessage
		if !isNull(f.Fields) {
			if err := json.Unmarshal(f.Fields, &fields); err != nil {
				return Case{}, fmt.Errorf("file %q: fields is not a list", name)
			}
		}
		for j, fr := range fields {
			var fld struct {
				DisplayName json.RawMessage `json:"display_name"`
				Name        json.RawMessage `json:"name"`
				FieldID     json.RawMessage `json:"field_id"`
				Value       json.RawMessage `json:"value"`
			}
			if err := json.Unmarshal(fr, &fld); err != nil {
				return Case{}, fmt.Errorf("file %q: field %d is not a JSON object", name, j+1)
			}
			n := text(fld.Name)
			if n == "" {
				n = text(fld.DisplayName)
			}
			if n == "" {
				if id := text(fld.FieldID); id != "" {
					n = "field_" + id
				}
			}
			file.Fields = append(file.Fields, events.Field{Name: n, Value: text(fld.Value)})
		}
		c.Files = append(c.Files, file)
	}
	return c, nil
}

// getCase fetches and parses one case; raw is the answer verbatim.
func (c *Client) getCase(ctx context.Context, op, id string) (Case, []byte, error) {
	res, err := c.do(ctx, op, http.MethodGet, c.base+"/cases/"+id)
	if err != nil {
		return Case{}, nil, aboutCase(id, err)
	}
	body, err := vendors.ReadJSON(Name, op, res, nil)
	if err != nil {
		return Case{}, nil, err
	}
	cs, err := ParseCase(body)
	if err != nil {
		return Case{}, nil, vendors.Malformed(Name, op, err, body)
	}
	if cs.ID != id {
		return Case{}, nil, vendors.Malformed(Name, op, fmt.Errorf("asked for case %s, got case %s", id, cs.ID), body)
	}
	return cs, body, nil
}

// ocr fetches one file's OCR text (GET /cases/{id}/ocr-output?file_name=…).
func (c *Client) ocr(ctx context.Context, id, fileName string) (string, error) {
	const op = "ocr"
	// %20 rather than QueryEscape's "+": unambiguous to any query parser.
	q := strings.ReplaceAll(url.QueryEscape(fileName), "+", "%20")
	res, err := c.do(ctx, op, http.MethodGet, c.base+"/cases/"+id+"/ocr-output?file_name="+q)
	if err != nil {
		return "", err
	}
	var out map[string]json.RawMessage
	body, err := vendors.ReadJSON(Name, op, res, &out)
	if err != nil {
		var ve *vendors.Error
		if errors.As(err, &ve) {
			ve.Message = fmt.Sprintf("OCR text of %q: %s", fileName, ve.Message)
		}
		return "", err
	}
	raw, ok := out["text"]
	if !ok {
		return "", vendors.Malformed(Name, op, fmt.Errorf("OCR answer for %q has no text", fileName), body)
	}
	t, err := optString(raw) // null: the file has no text layer
	if err != nil {
		return "", vendors.Malformed(Name, op, fmt.Errorf("OCR text of %q: %w", fileName, err), body)
	}
	return t, nil
}

// do sends a bodiless request.
func (c *Client) do(ctx context.Context, op, method, u string) (*http.Response, error) {
	res, err := c.caller.Do(ctx, op, func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		return req, nil
	})
	return res, explain(err)
}

// upload sends doc as multipart field "file", with document_type when configured. The body is
// rebuilt from doc.Open on each attempt.
func (c *Client) upload(ctx context.Context, op, u string, doc vendors.Document) (*http.Response, error) {
	if doc.Open == nil {
		return nil, &vendors.Error{Vendor: Name, Op: op, Permanent: true, Message: "document has no content to upload"}
	}
	if doc.Filename == "" {
		doc.Filename = fallbackFilename
	}
	if doc.ContentType == "" {
		doc.ContentType = "application/octet-stream"
	}
	var fields [][2]string
	if c.cfg.DocumentType != "" {
		fields = append(fields, [2]string{"document_type", c.cfg.DocumentType})
	}
	res, err := c.caller.Do(ctx, op, func(ctx context.Context) (*http.Request, error) {
		body, ct, n, err := vendors.Multipart(ctx, doc, "file", fields)
		if err != nil {
			return nil, fmt.Errorf("open %q: %w", doc.Filename, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
		if err != nil {
			body.Close()
			return nil, err
		}
		req.ContentLength = n
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Accept", "application/json")
		return req, nil
	})
	return res, explain(err)
}

func (c *Client) readCaseID(op string, res *http.Response) (string, error) {
	var out struct {
		CaseID json.RawMessage `json:"case_id"`
	}
	body, err := vendors.ReadJSON(Name, op, res, &out)
	if err != nil {
		return "", err
	}
	id, err := ParseCaseID(out.CaseID)
	if err != nil {
		return "", vendors.Malformed(Name, op, err, body)
	}
	return id, nil
}

// readSuccess checks the {"status":"success","message":…} answer of add-file and mark-complete.
func (c *Client) readSuccess(op string, res *http.Response) error {
	var out struct {
		Status  *string `json:"status"`
		Message string  `json:"message"`
	}
	body, err := vendors.ReadJSON(Name, op, res, &out)
	if err != nil {
		return err
	}
	if out.Status == nil {
		return vendors.Malformed(Name, op, errors.New(`no "status" in the answer`), body)
	}
	if !strings.EqualFold(*out.Status, "success") {
		// A 2xx that says otherwise is the vendor's refusal; repeating it would add the file twice
		// if it did in fact go through, so it is not retried.
		msg := out.Message
		if msg == "" {
			msg = fmt.Sprintf("Allspark answered status %q", *out.Status)
		}
		return &vendors.Error{Vendor: Name, Op: op, Status: res.StatusCode, Permanent: true, Message: msg}
	}
	return nil
}

// ref checks a case id before it goes into a URL path.
func (c *Client) ref(op, ref string) (string, error) {
	id, err := ParseCaseID(json.RawMessage(strconv.Quote(ref)))
	if err != nil {
		return "", &vendors.Error{Vendor: Name, Op: op, Permanent: true, Err: err,
			Message: fmt.Sprintf("%q is not an Allspark case id", ref)}
	}
	return id, nil
}

// aboutCase names the case in a 404: "Not found." alone does not say what was missing.
func aboutCase(id string, err error) error {
	var e *vendors.Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		e.Message = fmt.Sprintf("case %s: %s", id, e.Message)
	}
	return err
}

const refused = "credentials refused: "

// explain rewrites an error answer into words: DRF's field errors ({"file":["…"]}) become
// "file: …", and a refused key says where to look.
func explain(err error) error {
	var e *vendors.Error
	if !errors.As(err, &e) || e.Status == 0 {
		return err
	}
	if rest, ok := strings.CutPrefix(e.Message, refused); ok {
		// Allspark has no tokens to renew: the key is wrong, revoked, or this address is not on
		// the account's IP allow-list. Either way a person must act.
		e.Message = refused + drfMessage(rest) + " (check the API key and the IP allow-list in Allspark's APIs settings)"
		return e
	}
	e.Message = drfMessage(e.Message)
	return e
}

// drfMessage turns a DRF error body into a sentence; anything else is returned unchanged.
func drfMessage(s string) string {
	var m map[string]any
	if json.Unmarshal([]byte(s), &m) != nil || len(m) == 0 {
		return s
	}
	for _, k := range []string{"detail", "non_field_errors"} {
		if v := flatten(m[k]); v != "" {
			return v
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+flatten(m[k]))
	}
	return strings.Join(parts, "; ")
}

func flatten(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []any:
		parts := make([]string, 0, len(v))
		for _, x := range v {
			if s := flatten(x); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, " ")
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// messageOf finds a failure reason in a case body. Undocumented [U]: the usual keys are tried.
func messageOf(body []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	for _, k := range []string{"message", "error", "error_message", "detail", "reason", "status_message"} {
		if s, err := optString(m[k]); err == nil && strings.TrimSpace(s) != "" {
			return vendors.Excerpt([]byte(s))
		}
	}
	return ""
}

// text renders any JSON value as a field value: strings as they are, null as "", numbers and
// booleans as written, objects and arrays as compact JSON.
func text(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) == nil {
		return b.String()
	}
	return string(raw)
}

// optString reads a JSON string that may be absent or null.
func optString(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s is not text", vendors.Excerpt(raw))
	}
	return s, nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// hasStatus compares statuses without regard to case or surrounding space: they are process
// configuration typed by people.
func hasStatus(list []string, s string) bool {
	s = strings.TrimSpace(s)
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(strings.TrimSpace(x), s) })
}
