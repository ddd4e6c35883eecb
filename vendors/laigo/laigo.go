// Package laigo is the client for Laigo smartICR, Laigo GmbH's OCR tool: a document is uploaded, a
// job id comes back, and the result endpoint answers 202 until the text is ready.
//
// Laigo has no way to list jobs or to look one up by its content, so Client does not implement
// vendors.Reconciler: an upload whose answer was lost cannot be found again.
package laigo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors"
)

// Name is the vendor's name in config, subjects and events.
const Name = "laigo"

// Defaults, from Laigo's documents. Those marked [I] or [U] in the vendor reference are guesses a
// real account may prove wrong, hence configurable.
const (
	DefaultBaseURL  = "https://use.laigo.io"
	DefaultTokenURL = "https://account.laigo.io/realms/SmartTools/protocol/openid-connect/token"
	// DefaultUploadPath has one "/api/": Laigo's marketing pages write "/api/api/", taken for a
	// typo [I].
	DefaultUploadPath = "/api/FileUpload/v1/Upload/smartICR"
	DefaultResultPath = "/api/Result/v1/JobResults"
	// DefaultMaxBytes is the limit Laigo documents for its sibling tools [I].
	DefaultMaxBytes = 10 << 20
	// DefaultRateLimit is Laigo's documented 1 request per second.
	DefaultRateLimit = 1.0
	// DefaultExpiredMessage is how Laigo says a result is gone; the status it comes with is [U].
	DefaultExpiredMessage = "Result not available any more."
	// DefaultPendingMessage is how Laigo says a result is not ready. Its document lists it among
	// its error messages without a status [U]: 202 is the documented "not ready", but the words
	// are recognised whatever status carries them.
	DefaultPendingMessage = "Result not yet available"
)

// Config configures a Client. Zero values take the defaults.
type Config struct {
	BaseURL      string // default DefaultBaseURL
	TokenURL     string // default DefaultTokenURL
	ClientID     string
	ClientSecret string
	// TokenBasicAuth sends the client credentials as HTTP Basic, as Laigo's smartICR page says,
	// instead of in the form body as its docs site's curl does (the default) [I].
	TokenBasicAuth bool
	// OutputFormats: "PDF", "TEXT" (smartICR); siblings take "JSON". Default PDF and TEXT.
	OutputFormats []string
	// LanguageHint is an ISO 639-1 code; Laigo assumes English when it is empty.
	LanguageHint string
	// Email, when set, has Laigo mail the result there too.
	Email string
	// FetchZIP adds the result ZIP (searchable PDF and text file) as an artifact.
	FetchZIP bool
	// UploadPath and ResultPath are the API paths under BaseURL [I].
	UploadPath string
	ResultPath string
	// MaxBytes refuses larger documents before uploading them, sparing a round trip and an upload
	// Laigo would refuse anyway. 0: DefaultMaxBytes; negative: no check here.
	MaxBytes int64
	// ExpiredMessage is matched (case-insensitively, anywhere in an answer) to tell an expired
	// result, whatever status carries it [U]. Laigo's document pairs each message with a
	// rewording ("Outcome information no longer accessible."); both are recognised.
	ExpiredMessage string
	// PendingMessage is matched the same way to tell a result that is not ready yet, whatever
	// status carries it [U] (reworded: "Outcome data currently unavailable").
	PendingMessage string
	// Timeout bounds one request including its body; the caller's default (5 min) when 0.
	Timeout time.Duration
	// RateLimit is requests per second: 0 means DefaultRateLimit, negative no limit (tests).
	RateLimit float64
	// Concurrency caps requests in flight; 0 means no cap.
	Concurrency int
	// HTTPClient, when set, carries token requests, and its Transport the API requests (tests, a
	// proxy).
	HTTPClient *http.Client
}

// Client talks to Laigo smartICR. It is safe for concurrent use.
type Client struct {
	cfg       Config
	uploadURL string
	resultURL *url.URL
	fields    [][2]string
	caller    *vendors.Caller
}

var _ vendors.Vendor = (*Client)(nil)

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	cfg.ClientID, cfg.ClientSecret = strings.TrimSpace(cfg.ClientID), strings.TrimSpace(cfg.ClientSecret)
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("laigo: a client id and a client secret are required (Laigo dashboard, API page)")
	}
	cfg.BaseURL = or(cfg.BaseURL, DefaultBaseURL)
	cfg.TokenURL = or(cfg.TokenURL, DefaultTokenURL)
	cfg.UploadPath = or(cfg.UploadPath, DefaultUploadPath)
	cfg.ResultPath = or(cfg.ResultPath, DefaultResultPath)
	cfg.ExpiredMessage = or(cfg.ExpiredMessage, DefaultExpiredMessage)
	cfg.PendingMessage = or(cfg.PendingMessage, DefaultPendingMessage)
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.Concurrency < 0 {
		return nil, fmt.Errorf("laigo: concurrency %d is negative", cfg.Concurrency)
	}
	base, err := vendors.ParseHTTPURL("base URL", cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if _, err := vendors.ParseHTTPURL("token URL", cfg.TokenURL); err != nil {
		return nil, err
	}
	for _, p := range []string{cfg.UploadPath, cfg.ResultPath} {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("laigo: API path %q must start with /", p)
		}
	}
	if len(cfg.OutputFormats) == 0 {
		cfg.OutputFormats = []string{"PDF", "TEXT"}
	}
	formats := make([]string, 0, len(cfg.OutputFormats))
	for _, f := range cfg.OutputFormats {
		f = strings.ToUpper(strings.TrimSpace(f))
		if f == "" || strings.ContainsAny(f, ", ") {
			return nil, fmt.Errorf("laigo: output format %q is not one format name (PDF, TEXT)", f)
		}
		formats = append(formats, f)
	}
	fields := [][2]string{{"outputFormats", strings.Join(formats, ",")}}
	if h := strings.ToLower(strings.TrimSpace(cfg.LanguageHint)); h != "" {
		if len(h) != 2 || h[0] < 'a' || h[0] > 'z' || h[1] < 'a' || h[1] > 'z' {
			return nil, fmt.Errorf("laigo: language hint %q is not a two-letter ISO 639-1 code", cfg.LanguageHint)
		}
		fields = append(fields, [2]string{"languageHint", h})
	}
	if cfg.Email != "" {
		a, err := mail.ParseAddress(cfg.Email)
		if err != nil {
			return nil, fmt.Errorf("laigo: result email %q: %w", cfg.Email, err)
		}
		fields = append(fields, [2]string{"email", a.Address})
	}

	var transport http.RoundTripper
	if cfg.HTTPClient != nil {
		transport = cfg.HTTPClient.Transport
	}
	c := &Client{
		cfg:       cfg,
		uploadURL: base.JoinPath(cfg.UploadPath).String(),
		resultURL: base.JoinPath(cfg.ResultPath),
		fields:    fields,
	}
	style := oauth2.AuthStyleInParams
	if cfg.TokenBasicAuth {
		style = oauth2.AuthStyleInHeader
	}
	callerCfg := vendors.CallerConfig{
		Vendor: Name, Timeout: cfg.Timeout, RateLimit: max(cfg.RateLimit, 0),
		Concurrency: cfg.Concurrency, Transport: transport,
	}
	tokenHTTP := cfg.HTTPClient
	if tokenHTTP == nil {
		// Not http.DefaultClient: a token endpoint that hangs must not hang us for ever.
		tokenHTTP = &http.Client{Timeout: time.Minute}
	}
	// vendors.ClientCredentials renews 30 s before expiry; Laigo's tokens last 300 s and come
	// without a refresh token, so a renewal is a new client_credentials grant.
	tokens := vendors.ClientCredentials(vendors.OAuthConfig{
		Vendor: Name, TokenURL: cfg.TokenURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		AuthStyle: style, HTTP: tokenHTTP,
	})
	callerCfg.Authorize, callerCfg.Reauthorize = vendors.BearerAuth(tokens)
	c.caller = vendors.NewCaller(callerCfg)
	return c, nil
}

// Name returns "laigo".
func (c *Client) Name() string { return Name }

// Submit uploads doc and returns Laigo's job id.
func (c *Client) Submit(ctx context.Context, doc vendors.Document) (string, error) {
	if doc.Open == nil {
		return "", &vendors.Error{Vendor: Name, Op: "submit", Permanent: true, Message: "the document has no content to upload"}
	}
	if c.cfg.MaxBytes > 0 && doc.Size > c.cfg.MaxBytes {
		return "", &vendors.Error{Vendor: Name, Op: "submit", Permanent: true,
			Message: fmt.Sprintf("the document is %d bytes, more than the %d Laigo accepts", doc.Size, c.cfg.MaxBytes)}
	}
	res, err := c.caller.Do(ctx, "submit", func(ctx context.Context) (*http.Request, error) {
		// Called again after a 401: the document is opened anew for each attempt.
		body, ctype, n, err := vendors.Multipart(ctx, doc, "file", c.fields)
		if err != nil {
			return nil, fmt.Errorf("open document %s: %w", doc.ID, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.uploadURL, body)
		if err != nil {
			body.Close()
			return nil, err
		}
		req.ContentLength = n
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Accept", "application/json")
		return req, nil
	})
	if err != nil {
		return "", c.classify(err)
	}
	body, err := vendors.ReadJSON(Name, "submit", res, nil)
	if err != nil {
		return "", err
	}
	id, err := parseJobID(body)
	if err != nil {
		return "", vendors.Malformed(Name, "submit", err, body)
	}
	return id, nil
}

// Check polls the JSON result: Laigo has no status endpoint and no webhook. Its document gives
// 202 for "not ready" and lists "Result not yet available" and "Result not available any more."
// among its messages without saying which status carries them, so the words decide first,
// whatever the status: pending means look again, expired means failed. Otherwise 202 is pending
// and another 2xx is done only if it holds a result; anything else is an error the poller
// retries (a proxy's HTML page, a 200 without files) or, for Laigo's own 4xx, a permanent one.
func (c *Client) Check(ctx context.Context, ref string) (vendors.Progress, error) {
	u, err := c.jobURL(ref, "json", "status")
	if err != nil {
		return vendors.Progress{}, err
	}
	res, err := c.caller.Do(ctx, "status", c.get(u, "application/json"))
	if err != nil {
		switch {
		case c.said(err, c.cfg.ExpiredMessage, expiredRewording):
			return vendors.Progress{Done: true, Failed: true, Error: messageOf(err)}, nil
		case c.said(err, c.cfg.PendingMessage, pendingRewording):
			return vendors.Progress{RetryAfter: retryAfterOf(err)}, nil
		}
		return vendors.Progress{}, c.classify(err)
	}
	defer res.Body.Close()
	// Only a short answer can be one of Laigo's messages; a finished result may be megabytes,
	// and is fetched again by Result, so it is not read here past this prefix.
	const peek = 4 << 10
	head, _ := io.ReadAll(io.LimitReader(res.Body, peek+1))
	if len(head) > peek {
		return vendors.Progress{Done: true}, nil
	}
	retryAfter := vendors.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())
	switch kind, msg := c.answerOf(head); {
	case kind == answerExpired:
		return vendors.Progress{Done: true, Failed: true, Error: msg}, nil
	case kind == answerPending, res.StatusCode == http.StatusAccepted:
		return vendors.Progress{RetryAfter: retryAfter}, nil
	case kind == answerResult:
		return vendors.Progress{Done: true}, nil
	}
	return vendors.Progress{}, &vendors.Error{Vendor: Name, Op: "status", Status: res.StatusCode, RetryAfter: retryAfter,
		Message: "Laigo answered without a result, a known message or 202: " + describe(res.Header.Get("Content-Type"), head)}
}

// Result fetches the JSON result and, when FetchZIP is set, offers the ZIP as an artifact.
func (c *Client) Result(ctx context.Context, ref string) (vendors.Result, error) {
	u, err := c.jobURL(ref, "json", "result")
	if err != nil {
		return vendors.Result{}, err
	}
	res, err := c.caller.Do(ctx, "result", c.get(u, "application/json"))
	if err != nil {
		if c.said(err, c.cfg.PendingMessage, pendingRewording) {
			// Not ready after all (Check saw it ready): retryable whatever the status.
			var e *vendors.Error
			if errors.As(err, &e) {
				e.Permanent = false
			}
			return vendors.Result{}, err
		}
		return vendors.Result{}, c.classify(err)
	}
	if res.StatusCode == http.StatusAccepted {
		return vendors.Result{}, notReady("result", res)
	}
	body, err := vendors.ReadJSON(Name, "result", res, nil)
	if err != nil {
		return vendors.Result{}, err
	}
	switch kind, msg := c.answerOf(body); kind {
	case answerExpired:
		return vendors.Result{}, &vendors.Error{Vendor: Name, Op: "result", Status: res.StatusCode, Permanent: true, Message: msg}
	case answerPending:
		return vendors.Result{}, &vendors.Error{Vendor: Name, Op: "result", Status: res.StatusCode, Message: msg,
			RetryAfter: vendors.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())}
	}
	r, err := parseResult(body)
	if err != nil {
		return vendors.Result{}, vendors.Malformed(Name, "result", err, body)
	}
	if c.cfg.FetchZIP {
		zipURL, err := c.jobURL(ref, "zip", "artifact")
		if err != nil {
			return vendors.Result{}, err
		}
		r.Artifacts = append(r.Artifacts, vendors.Artifact{
			Name: "result.zip", ContentType: "application/zip",
			Open: func(ctx context.Context) (io.ReadCloser, error) { return c.openZIP(ctx, zipURL) },
		})
	}
	return r, nil
}

// openZIP streams the result ZIP: the body goes to the caller's reader as it arrives.
func (c *Client) openZIP(ctx context.Context, u string) (io.ReadCloser, error) {
	res, err := c.caller.Do(ctx, "artifact", c.get(u, "application/zip"))
	if err != nil {
		return nil, c.classify(err)
	}
	if res.StatusCode == http.StatusAccepted {
		return nil, notReady("artifact", res)
	}
	return res.Body, nil
}

func (c *Client) get(u, accept string) func(ctx context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", accept)
		return req, nil
	}
}

// jobURL builds .../JobResults/{ref}/{kind}. ref goes into a path, so it must be a job id and
// nothing that could walk elsewhere.
func (c *Client) jobURL(ref, kind, op string) (string, error) {
	if !validJobID(ref) {
		return "", &vendors.Error{Vendor: Name, Op: op, Permanent: true, Message: fmt.Sprintf("%q is not a Laigo job id", ref)}
	}
	return c.resultURL.JoinPath(ref, kind).String(), nil
}

// classify adjusts the shared error classification where Laigo says more.
func (c *Client) classify(err error) error {
	var e *vendors.Error
	if !errors.As(err, &e) {
		return err
	}
	switch {
	case e.Op == "token" && e.Permanent && !strings.Contains(strings.ToLower(e.Message), "credential"):
		e.Message = "client credentials refused: " + e.Message
	case containsFold(e.Message, c.cfg.ExpiredMessage), containsFold(e.Message, expiredRewording):
		// Gone is gone, whatever status Laigo chose to say it with.
		e.Permanent = true
	case strings.HasPrefix(e.Message, "ServerError:"):
		// Laigo's own "code" says its side failed: worth another try whatever the status.
		e.Permanent = false
	}
	return err
}

// Laigo's document pairs each message with a rewording; either may come.
const (
	expiredRewording = "Outcome information no longer accessible"
	pendingRewording = "Outcome data currently unavailable"
)

// said reports whether an error answer from Laigo carries one of the words.
func (c *Client) said(err error, words ...string) bool {
	var e *vendors.Error
	if !errors.As(err, &e) || e.Status == 0 {
		return false
	}
	for _, w := range words {
		if containsFold(e.Message, w) {
			return true
		}
	}
	return false
}

func messageOf(err error) string {
	var e *vendors.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

func retryAfterOf(err error) time.Duration {
	var e *vendors.Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

type answerKind int

const (
	answerOther answerKind = iota
	answerResult
	answerPending
	answerExpired
)

// answerOf reads a 2xx body: a result (it has "files"), one of Laigo's messages (a bare JSON
// string, or an object with a message), or something else. A result whose recognised text
// happens to contain the words is still a result.
func (c *Client) answerOf(body []byte) (answerKind, string) {
	var probe map[string]json.RawMessage
	if json.Unmarshal(body, &probe) == nil {
		if _, ok := probe["files"]; ok {
			return answerResult, ""
		}
	}
	msg := vendors.MessageOf(body)
	switch {
	case containsFold(msg, c.cfg.ExpiredMessage), containsFold(msg, expiredRewording):
		return answerExpired, msg
	case containsFold(msg, c.cfg.PendingMessage), containsFold(msg, pendingRewording):
		return answerPending, msg
	}
	return answerOther, msg
}

// describe says in a few words what an unexpected answer was.
func describe(contentType string, body []byte) string {
	ct, _, _ := mime.ParseMediaType(contentType)
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return "an empty body"
	case ct == "text/html" || bytes.HasPrefix(bytes.TrimSpace(bytes.ToLower(body)), []byte("<")):
		return "an HTML page (a proxy or maintenance page?)"
	}
	const max = 200
	if len(body) > max {
		body = body[:max]
	}
	return fmt.Sprintf("%q", body)
}

func notReady(op string, res *http.Response) error {
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	return &vendors.Error{Vendor: Name, Op: op, Status: res.StatusCode, Message: "the result is not ready yet",
		RetryAfter: vendors.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())}
}

// parseJobID reads the upload's answer: a bare JSON string such as "754a9eff-…". Anything that is
// not a plain job id (an object, prose) is refused rather than put into a URL later.
func parseJobID(body []byte) (string, error) {
	var id string
	if err := json.Unmarshal(body, &id); err != nil {
		// Not JSON: perhaps the id without quotes, or with stray whitespace.
		id = strings.Trim(strings.TrimSpace(string(body)), `"`)
	}
	id = strings.TrimSpace(id)
	if id == "" {
		return "", errors.New("no job id in the answer")
	}
	if !validJobID(id) {
		return "", errors.New("the answer is not a job id")
	}
	return id, nil
}

// validJobID accepts what can safely be one path segment: Laigo's UUIDs and similar tokens.
func validJobID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case (r == '-' || r == '_' || r == '.') && i > 0: // no ".", ".." or leading dash
		default:
			return false
		}
	}
	return true
}

type resultFile struct {
	InputFileName string `json:"inputFileName"`
	Size          int64  `json:"size"`
	PageCount     int    `json:"pageCount"`
	Content       string `json:"content"`
}

// parseResult reads {"files":[{inputFileName,size,pageCount,content}]}. smartICR is OCR only: it
// extracts no business fields, so the one normalised field is the page count, which downstream
// uses for cost and plausibility checks.
func parseResult(body []byte) (vendors.Result, error) {
	var doc struct {
		Files *[]resultFile `json:"files"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return vendors.Result{}, err
	}
	if doc.Files == nil {
		return vendors.Result{}, errors.New(`no "files" list in the result`)
	}
	var (
		texts []string
		pages int
	)
	for _, f := range *doc.Files {
		if f.Content != "" {
			texts = append(texts, f.Content)
		}
		if f.PageCount < 0 {
			return vendors.Result{}, fmt.Errorf("negative page count %d for %q", f.PageCount, f.InputFileName)
		}
		pages += f.PageCount
	}
	r := vendors.Result{Text: strings.Join(texts, "\n\n"), Raw: json.RawMessage(bytes.Clone(body))}
	if pages > 0 {
		r.Fields = []events.Field{{Name: "page_count", Value: strconv.Itoa(pages)}}
	}
	return r, nil
}

func containsFold(s, sub string) bool {
	sub = strings.TrimRight(strings.TrimSpace(sub), ".")
	return sub != "" && strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func or(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return strings.TrimSpace(s)
}
