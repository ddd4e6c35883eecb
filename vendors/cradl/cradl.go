// Package cradl is the client of Cradl (formerly Lucidtech "las"), classic API generation (A) on
// api.lucidtech.ai/v1. A document is uploaded (inline base64, or through a fileUrl for large
// ones) and then either
//   - predicted synchronously with a model (mode "predictions"),
//   - run through a workflow as an execution (mode "workflow"), or
//   - e-mailed to the workflow's address, where each attachment starts an execution (mode
//     "email"); the execution is then found again by the subject we gave the mail.
//
// Executions are polled until they leave "running"; the result is the execution's output, and
// Finish marks the execution "completed" as Cradl's own integrations do after taking a result.
//
// Choices where Cradl's documents leave room (REFERENCE.md [I]/[U]):
//   - The token flow follows the token host: auth.cradl.ai gets the form body with client_id,
//     client_secret and audience (Kinde); any other host Basic client credentials (Cognito).
//     Config.AuthStyle overrides it.
//   - An e-mail execution is ours when a subject anywhere in its input (input.email.subject as
//     documented, or any "subject" key a few levels down, since the merge with
//     additionalWorkflowInput is undocumented) contains the words "ingest <document id>" followed
//     by the end or a space; prefixes such as "Fwd: " do not matter.
//   - Prediction pages are Cradl's 0-based page numbers plus one, as Gini counts pages.
package cradl

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/ingest-dev/ingest/vendors"
)

// Defaults from Cradl's documents.
const (
	DefaultBaseURL  = "https://api.lucidtech.ai/v1"
	DefaultTokenURL = "https://auth.lucidtech.ai/oauth2/token"
	// DefaultAudience is what the auth.cradl.ai token endpoint wants in the form.
	DefaultAudience = "https://api.cradl.ai/v1"
	// FormTokenHost is the token host that takes form credentials with an audience.
	FormTokenHost = "auth.cradl.ai"
	// MaxInlineBase64 is the longest base64 content POST /documents takes (≈ 4.5 MB of document).
	MaxInlineBase64 = 6_250_000
	// MaxDocumentBytes is the largest document a fileUrl takes.
	MaxDocumentBytes = 64 << 20
	// DefaultListPageSize and DefaultListPages bound the walks through a workflow's executions
	// (finding an e-mailed document, Find, RefOf of a document id).
	DefaultListPageSize = 100
	DefaultListPages    = 10
	// maxPredictionPages bounds the nextPage chain of one document (preprocessConfig.maxPages is
	// at most 100, so a longer chain is a loop).
	maxPredictionPages = 100
)

// Modes.
const (
	ModePredictions = "predictions"
	ModeWorkflow    = "workflow"
	ModeEmail       = "email"
)

// Auth styles for Config.AuthStyle.
const (
	AuthAuto  = ""
	AuthBasic = "basic"
	AuthForm  = "form"
)

// SMTP TLS modes.
const (
	SMTPStartTLS = "starttls"
	SMTPTLS      = "tls"
	SMTPNone     = "none"
)

// name is the vendor's name in config, subjects and events.
const name = "cradl"

// mailRefPrefix starts the reference of an e-mailed document: its execution is not known when
// the mail is sent.
const mailRefPrefix = "mail:"

// SMTPConfig is the mail server the e-mail mode sends through.
type SMTPConfig struct {
	Host string
	// Port defaults to 587 (starttls), 465 (tls) or 25 (none).
	Port               int
	Username, Password string // AUTH PLAIN when Username is set
	From               string
	// TLS is "starttls" (default), "tls" (implicit) or "none" (tests only: credentials and
	// documents in clear).
	TLS string
	// TLSConfig sets roots or a server name (a private CA, tests); nil: system roots, Host.
	TLSConfig *tls.Config
}

// Config configures a Client.
type Config struct {
	// BaseURL of the API; DefaultBaseURL if empty.
	BaseURL string
	// TokenURL of the OAuth2 token endpoint; DefaultTokenURL if empty.
	TokenURL               string
	ClientID, ClientSecret string
	// AuthStyle: "" picks by the token host (auth.cradl.ai: form with audience; else Basic),
	// "basic" or "form" force one.
	AuthStyle string
	// Audience sent with form credentials; DefaultAudience if empty.
	Audience string
	// Mode is "predictions", "workflow" or "email".
	Mode string
	// ModelID for predictions, e.g. las:organization:cradl/las:model:invoice.
	ModelID string
	// WorkflowID for the workflow and e-mail modes.
	WorkflowID string
	// WorkflowEmail is where the e-mail mode sends documents; if empty it is read from
	// GET /workflows/{id} (emailConfig.email).
	WorkflowEmail string
	SMTP          SMTPConfig
	// WebhookSecret checks Cradl's signed webhooks (CallbackVerifier); empty accepts unsigned
	// (classic) exports.
	WebhookSecret string
	// RequireSignedWebhooks refuses unsigned webhooks when a WebhookSecret is set. Off, Cradl's
	// classic workflow exports (which Cradl never signs) are taken on the secret URL alone, while
	// signed ones are still checked.
	RequireSignedWebhooks bool
	// ListPageSize and ListPages bound walks through the executions (DefaultListPageSize,
	// DefaultListPages).
	ListPageSize, ListPages int
	// Timeout bounds one request including an upload; vendors.Caller's default if zero.
	Timeout time.Duration
	// RateLimit is requests per second, 0 for none; Concurrency caps requests in flight.
	RateLimit   float64
	Concurrency int
	// HTTPClient supplies the transport (and a timeout when Timeout is zero); nil for the default.
	HTTPClient *http.Client
	// Logger notes what is odd but not an error; nil for none.
	Logger *slog.Logger
}

// Client talks to Cradl. It implements vendors.Vendor, Reconciler, Finisher and CallbackVendor
// and is safe for concurrent use.
type Client struct {
	cfg    Config
	base   *url.URL
	caller *vendors.Caller
	log    *slog.Logger

	mu    sync.Mutex
	email string // the workflow's address, once read
}

var (
	_ vendors.Vendor         = (*Client)(nil)
	_ vendors.Reconciler     = (*Client)(nil)
	_ vendors.Finisher       = (*Client)(nil)
	_ vendors.CallbackVendor = (*Client)(nil)
)

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = DefaultTokenURL
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.ListPageSize == 0 {
		cfg.ListPageSize = DefaultListPageSize
	}
	if cfg.ListPages == 0 {
		cfg.ListPages = DefaultListPages
	}
	base, err := vendors.ParseHTTPURL("base URL", cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("cradl: %w", err)
	}
	base.Path, base.RawPath = strings.TrimRight(base.Path, "/"), ""
	base.RawQuery, base.Fragment = "", ""
	tokenURL, err := vendors.ParseHTTPURL("token URL", cfg.TokenURL)
	if err != nil {
		return nil, fmt.Errorf("cradl: %w", err)
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("cradl: the client id and client secret are required (Cradl app, API credentials)")
	}
	if cfg.Timeout < 0 || cfg.RateLimit < 0 || cfg.Concurrency < 0 || cfg.ListPageSize < 0 || cfg.ListPages < 0 {
		return nil, errors.New("cradl: timeout, rate limit, concurrency and list bounds must not be negative")
	}
	style := cfg.AuthStyle
	switch style {
	case AuthAuto:
		style = AuthBasic
		if strings.EqualFold(tokenURL.Hostname(), FormTokenHost) {
			style = AuthForm
		}
	case AuthBasic, AuthForm:
	default:
		return nil, fmt.Errorf("cradl: unknown auth style %q: use %q, %q or leave it empty to go by the token host", cfg.AuthStyle, AuthBasic, AuthForm)
	}
	if err := checkMode(&cfg); err != nil {
		return nil, err
	}

	var transport http.RoundTripper = vendors.NewTransport(cfg.Concurrency)
	timeout := cfg.Timeout
	if hc := cfg.HTTPClient; hc != nil {
		if hc.Transport != nil {
			transport = hc.Transport
		}
		if timeout == 0 {
			timeout = hc.Timeout
		}
	}
	tokenTimeout := timeout
	if tokenTimeout == 0 {
		tokenTimeout = time.Minute
	}
	oc := vendors.OAuthConfig{
		Vendor: name, TokenURL: cfg.TokenURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		AuthStyle: oauth2.AuthStyleInHeader,
		HTTP:      &http.Client{Transport: transport, Timeout: tokenTimeout},
		// Cradl's SDKs keep a token until a minute before it expires.
		RenewBefore: time.Minute,
	}
	if style == AuthForm {
		oc.AuthStyle = oauth2.AuthStyleInParams
		oc.EndpointParams = url.Values{"audience": {cfg.Audience}}
	}
	authorize, reauthorize := vendors.BearerAuth(vendors.ClientCredentials(oc))
	cc := vendors.CallerConfig{
		Vendor: name, Timeout: timeout, RateLimit: cfg.RateLimit, Concurrency: cfg.Concurrency,
		Transport: transport, Reauthorize: reauthorize,
		Authorize: func(ctx context.Context, req *http.Request) error {
			err := authorize(ctx, req)
			var e *vendors.Error
			if err != nil && style == AuthForm && errors.As(err, &e) && e.Status == http.StatusBadRequest {
				// Cradl's own SDK retries the identity provider's spurious 400s; so does the
				// dispatcher when the error is transient.
				e.Permanent = false
			}
			return err
		},
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, base: base, caller: vendors.NewCaller(cc), log: log}, nil
}

// checkMode validates what each mode needs and fills in the SMTP defaults.
func checkMode(cfg *Config) error {
	switch cfg.Mode {
	case ModePredictions:
		if cfg.ModelID == "" {
			return errors.New("cradl: mode predictions needs a model id (e.g. las:organization:cradl/las:model:invoice)")
		}
	case ModeWorkflow:
		if cfg.WorkflowID == "" {
			return errors.New("cradl: mode workflow needs a workflow id")
		}
	case ModeEmail:
		s := &cfg.SMTP
		switch {
		case cfg.WorkflowID == "":
			return errors.New("cradl: mode email needs the workflow id, to find the executions its mails start")
		case s.Host == "":
			return errors.New("cradl: mode email needs an SMTP host")
		case s.From == "":
			return errors.New("cradl: mode email needs an SMTP from address")
		case s.Port < 0 || s.Port > 65535:
			return fmt.Errorf("cradl: SMTP port %d is out of range", s.Port)
		case s.Username == "" && s.Password != "":
			return errors.New("cradl: an SMTP password without a username")
		}
		if _, err := mail.ParseAddress(s.From); err != nil {
			return fmt.Errorf("cradl: the SMTP from address %q: %w", s.From, err)
		}
		if cfg.WorkflowEmail != "" {
			if _, err := mail.ParseAddress(cfg.WorkflowEmail); err != nil {
				return fmt.Errorf("cradl: the workflow e-mail address %q: %w", cfg.WorkflowEmail, err)
			}
		}
		defaultPort := map[string]int{SMTPStartTLS: 587, SMTPTLS: 465, SMTPNone: 25}
		if s.TLS == "" {
			s.TLS = SMTPStartTLS
		}
		p, ok := defaultPort[s.TLS]
		if !ok {
			return fmt.Errorf("cradl: unknown SMTP TLS mode %q: use %q, %q or %q", s.TLS, SMTPStartTLS, SMTPTLS, SMTPNone)
		}
		if s.Port == 0 {
			s.Port = p
		}
	case "":
		return fmt.Errorf("cradl: no mode: set %q, %q or %q", ModePredictions, ModeWorkflow, ModeEmail)
	default:
		return fmt.Errorf("cradl: unknown mode %q: use %q, %q or %q", cfg.Mode, ModePredictions, ModeWorkflow, ModeEmail)
	}
	return nil
}

// Name is "cradl".
func (c *Client) Name() string { return name }

// endpoint is an API URL under BaseURL; path segments are escaped, so a reference cannot reach
// another resource.
func (c *Client) endpoint(query url.Values, segments ...string) string {
	var b strings.Builder
	b.WriteString(c.base.String())
	for _, s := range segments {
		b.WriteString("/")
		b.WriteString(url.PathEscape(s))
	}
	if len(query) > 0 {
		b.WriteString("?")
		b.WriteString(query.Encode())
	}
	return b.String()
}

// do sends a request through the Caller and reads Cradl's error conventions into the error.
func (c *Client) do(ctx context.Context, op string, build func(ctx context.Context) (*http.Request, error)) (*http.Response, error) {
	res, err := c.caller.Do(ctx, op, build)
	if err != nil {
		return nil, classify(err)
	}
	return res, nil
}

// classify adjusts the shared reading of an error answer to what Cradl means by it.
func classify(err error) error {
	var e *vendors.Error
	if !errors.As(err, &e) || e.Op == "token" {
		return err
	}
	msg := strings.TrimPrefix(e.Message, "credentials refused: ")
	switch {
	case e.Status == http.StatusTooManyRequests && strings.Contains(strings.ToLower(msg), "limit exceeded"):
		// The monthly quota: retrying before the month ends only burns requests.
		e.Permanent = true
		e.Message = "monthly quota used up (" + msg + "): Cradl takes no more requests this month on this plan"
	case e.Status == http.StatusTooManyRequests:
		e.Message = "rate limited (" + msg + "): too many requests per second"
	case e.Status == http.StatusForbidden && strings.EqualFold(msg, "Forbidden"):
		e.Message = "credentials refused (Forbidden): Cradl does not accept the client id and secret, or they may not use this resource"
	}
	return e
}

// jsonRequest builds a request with a JSON body (nil for none).
func jsonRequest(method, uri string, body any) func(ctx context.Context) (*http.Request, error) {
	var b []byte
	var merr error
	if body != nil {
		b, merr = json.Marshal(body)
	}
	return func(ctx context.Context) (*http.Request, error) {
		if merr != nil {
			return nil, merr
		}
		var r io.Reader
		if b != nil {
			r = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, uri, r)
		if err != nil {
			return nil, err
		}
		if b != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json")
		return req, nil
	}
}

// Submit hands the document to Cradl as the mode says.
func (c *Client) Submit(ctx context.Context, doc vendors.Document) (string, error) {
	ct, err := c.checkDocument(doc)
	if err != nil {
		return "", err
	}
	if c.cfg.Mode == ModeEmail {
		return c.submitEmail(ctx, doc, ct)
	}
	docID, err := c.upload(ctx, doc, ct)
	if err != nil {
		return "", err
	}
	if c.cfg.Mode == ModePredictions {
		return c.predict(ctx, docID)
	}
	return c.startExecution(ctx, docID, vendors.UploadName(doc))
}

// Check asks whether Cradl is done with ref.
func (c *Client) Check(ctx context.Context, ref string) (vendors.Progress, error) {
	switch c.cfg.Mode {
	case ModePredictions:
		return c.checkPrediction(ctx, ref)
	case ModeEmail:
		ex, _, found, err := c.mailExecution(ctx, "status", ref)
		if err != nil || !found {
			return vendors.Progress{}, err
		}
		return c.progress(ctx, ex), nil
	}
	ex, _, err := c.getExecution(ctx, "status", ref)
	if err != nil {
		return vendors.Progress{}, err
	}
	return c.progress(ctx, ex), nil
}

// Result fetches what Cradl made of ref.
func (c *Client) Result(ctx context.Context, ref string) (vendors.Result, error) {
	switch c.cfg.Mode {
	case ModePredictions:
		return c.predictionResult(ctx, ref)
	case ModeEmail:
		ex, raw, found, err := c.mailExecution(ctx, "result", ref)
		if err != nil {
			return vendors.Result{}, err
		}
		if !found {
			return vendors.Result{}, notYet("result", ref)
		}
		return executionResult(ex, raw)
	}
	ex, raw, err := c.getExecution(ctx, "result", ref)
	if err != nil {
		return vendors.Result{}, err
	}
	return executionResult(ex, raw)
}

// Finish marks the execution "completed", as Cradl's UiPath integration does once it has taken
// a result; an execution that is completed already is fine. Predictions need nothing.
func (c *Client) Finish(ctx context.Context, ref string) error {
	switch c.cfg.Mode {
	case ModePredictions:
		return nil
	case ModeEmail:
		ex, _, found, err := c.mailExecution(ctx, "finish", ref)
		if err != nil {
			return err
		}
		if !found {
			return notYet("finish", ref)
		}
		ref = ex.ExecutionID
	}
	return c.completeExecution(ctx, ref)
}

// notYet is the (transient) error for an e-mailed document whose execution cannot be found.
func notYet(op, ref string) error {
	return &vendors.Error{Vendor: name, Op: op,
		Message: fmt.Sprintf("no Cradl execution found yet for %s", ref)}
}

// findSkew widens Find's window: startTime is Cradl's clock, since is ours.
const findSkew = 2 * time.Minute

// Find looks for a submission of doc made at or after since (less findSkew), through the
// workflow's executions listed oldest first from then on:
//   - workflow: an execution whose input.title carries the document's tag (Submit sets the title
//     to the tagged file name).
//   - email: an execution whose subject names the document id (reference "mail:<id>").
//   - predictions: ErrNotReconcilable. Cradl's prediction list carries no name to recognise; a
//     prediction is submitted again, counted, as for vendors that cannot be asked.
//
// The answer is Absent only when the list ran to its end; Unknown when ListPages ran out first.
func (c *Client) Find(ctx context.Context, doc vendors.Document, since time.Time) (vendors.Lookup, error) {
	from := since.Add(-findSkew)
	m := vendors.Matcher{DocID: doc.ID}
	var visit func(ex listedExecution) bool
	switch c.cfg.Mode {
	case ModeWorkflow:
		visit = func(ex listedExecution) bool {
			if title, _ := ex.input()["title"].(string); !ex.startedBefore(from) {
				m.Offer(ex.ExecutionID, title)
			}
			return true
		}
	case ModeEmail:
		visit = func(ex listedExecution) bool {
			if ex.ExecutionID != "" && ex.mentions(doc.ID) && !ex.startedBefore(from) {
				// The reference of an e-mailed document is the document id, whichever
				// execution its mail started.
				m.Add(mailRefPrefix+doc.ID, 1)
				return false
			}
			return true
		}
	default:
		return vendors.Lookup{}, vendors.ErrNotReconcilable
	}
	complete, err := c.listExecutions(ctx, "find", from, false, visit)
	if err != nil {
		return vendors.Lookup{}, err
	}
	return m.Lookup(complete, fmt.Sprintf("the workflow's executions since %s were read for %d pages (the bound) without reaching the end",
		from.UTC().Format(time.RFC3339), c.cfg.ListPages)), nil
}
