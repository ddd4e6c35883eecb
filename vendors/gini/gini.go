// Package gini is the client of the Gini documents API (api.gini.net): a document is uploaded as
// the raw request body, its progress polled until COMPLETED or ERROR, and its extractions (and, if
// asked, its layout text) fetched and normalised.
//
// Two ways of authenticating, as Gini documents them:
//   - backend mode: every call carries the API client's credentials as Basic auth and an
//     X-User-Identifier; Gini creates the "derived user" that owns the documents;
//   - user mode: a User Center user logs in with the password grant (Basic client auth at the
//     token endpoint), and calls carry the user's bearer token.
package gini

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors"
)

// Defaults from Gini's documents.
const (
	DefaultBaseURL  = "https://api.gini.net"
	DefaultTokenURL = "https://user.gini.net/oauth/token"
	// DefaultAccept pins API version 1: unversioned answers may change without notice.
	DefaultAccept = "application/vnd.gini.v1+json"
	// DefaultListLimit is the page size when looking for a lost submission (Gini's own example
	// asks for 50; its default is 20 and its maximum is not documented).
	DefaultListLimit = 50
	// DefaultListPages bounds that look-up.
	DefaultListPages = 40
)

// name is the vendor's name in config, subjects and events.
const name = "gini"

// Config configures a Client. Exactly one auth mode must be given: UserIdentifier (backend mode)
// or Username and Password (user mode); both need ClientID and ClientSecret.
type Config struct {
	// BaseURL of the documents API; DefaultBaseURL if empty.
	BaseURL string
	// ClientID and ClientSecret are the API client's credentials.
	ClientID, ClientSecret string
	// UserIdentifier selects backend mode: Basic client credentials and this X-User-Identifier on
	// every call. It must be stable: it names the Gini user that owns our documents.
	UserIdentifier string
	// TokenURL is the User Center token endpoint for user mode; DefaultTokenURL if empty.
	TokenURL string
	// Username and Password select user mode (password grant, bearer token on calls).
	Username, Password string
	// Accept is the media type sent on every API call; DefaultAccept if empty.
	Accept string
	// DocType is an optional ?doctype= hint on uploads (e.g. "Invoice").
	DocType string
	// FetchLayout also fetches /documents/{id}/layout and makes its words Result.Text.
	FetchLayout bool
	// Timeout bounds one request including an upload; vendors.Caller's default if zero.
	Timeout time.Duration
	// RateLimit is requests per second, 0 for none: Gini documents no rate limit.
	RateLimit float64
	// Concurrency caps requests in flight, 0 for no cap.
	Concurrency int
	// ListLimit and ListPages bound Find's walk through the document list (DefaultListLimit,
	// DefaultListPages).
	ListLimit, ListPages int
	// ListNewestFirst says the account's document list comes newest first (Gini does not
	// document an order): Find may then stop at documents older than the submission instead of
	// reading the whole list. It is checked as the list is read; a list out of order is read
	// whole all the same.
	ListNewestFirst bool
	// HTTPClient supplies the transport (and a timeout when Timeout is zero); nil for the default.
	HTTPClient *http.Client
	// Logger notes what is odd but not an error (an unknown progress value); nil for none.
	Logger *slog.Logger
}

// Client talks to Gini. It implements vendors.Vendor and vendors.Reconciler and is safe for
// concurrent use.
type Client struct {
	cfg    Config
	base   *url.URL
	caller *vendors.Caller
	log    *slog.Logger
}

var (
	_ vendors.Vendor     = (*Client)(nil)
	_ vendors.Reconciler = (*Client)(nil)
)

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.TokenURL == "" {
		cfg.TokenURL = DefaultTokenURL
	}
	if cfg.Accept == "" {
		cfg.Accept = DefaultAccept
	}
	if cfg.ListLimit == 0 {
		cfg.ListLimit = DefaultListLimit
	}
	if cfg.ListPages == 0 {
		cfg.ListPages = DefaultListPages
	}
	base, err := vendors.ParseHTTPURL("base URL", cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	base.Path, base.RawPath = strings.TrimRight(base.Path, "/"), ""
	base.RawQuery, base.Fragment = "", ""
	switch {
	case cfg.ClientID == "" || cfg.ClientSecret == "":
		return nil, errors.New("gini: the client id and client secret are required in both auth modes")
	case cfg.UserIdentifier != "" && (cfg.Username != "" || cfg.Password != ""):
		return nil, errors.New("gini: choose one auth mode: a user identifier (backend mode) or a username and password (user mode), not both")
	case cfg.UserIdentifier == "" && cfg.Username == "" && cfg.Password == "":
		return nil, errors.New("gini: no auth mode: set a user identifier (backend mode) or a username and password (user mode)")
	case cfg.UserIdentifier == "" && (cfg.Username == "" || cfg.Password == ""):
		return nil, errors.New("gini: user mode needs both a username and a password")
	case cfg.Timeout < 0 || cfg.RateLimit < 0 || cfg.Concurrency < 0 || cfg.ListLimit < 0 || cfg.ListPages < 0:
		return nil, errors.New("gini: timeout, rate limit, concurrency and list bounds must not be negative")
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
	cc := vendors.CallerConfig{
		Vendor: name, Timeout: timeout, RateLimit: cfg.RateLimit, Concurrency: cfg.Concurrency,
		Transport: requestIDTransport{next: transport},
	}
	if cfg.UserIdentifier != "" {
		// No token to renew: a 401 means the credentials are wrong, and retrying cannot help.
		cc.Authorize = func(_ context.Context, req *http.Request) error {
			req.SetBasicAuth(cfg.ClientID, cfg.ClientSecret)
			req.Header.Set("X-User-Identifier", cfg.UserIdentifier)
			return nil
		}
	} else {
		if _, err := vendors.ParseHTTPURL("token URL", cfg.TokenURL); err != nil {
			return nil, err
		}
		tokenTimeout := timeout
		if tokenTimeout == 0 {
			tokenTimeout = time.Minute
		}
		tokens := vendors.PasswordGrant(vendors.OAuthConfig{
			Vendor: name, TokenURL: cfg.TokenURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
			// The User Center takes client credentials as Basic auth only.
			AuthStyle: oauth2.AuthStyleInHeader,
			HTTP:      &http.Client{Transport: transport, Timeout: tokenTimeout},
		}, cfg.Username, cfg.Password)
		cc.Authorize, cc.Reauthorize = vendors.BearerAuth(tokens)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, base: base, caller: vendors.NewCaller(cc), log: log}, nil
}

// Name is "gini".
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

// get builds a GET with the pinned media type.
func (c *Client) get(uri string) func(ctx context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", c.cfg.Accept)
		return req, nil
	}
}

// Submit uploads the document as the raw request body with ?filename= (Gini's variant for
// non-browser clients: no multipart framing, the bytes stream straight from doc.Open). Gini answers
// 201 with the new document's URI in Location; its last segment is the id.
func (c *Client) Submit(ctx context.Context, doc vendors.Document) (string, error) {
	// The name carries the document's tag: Gini keeps it as the document's "name", which is what
	// Find recognises after a crash.
	q := url.Values{"filename": {vendors.UploadName(doc)}}
	if c.cfg.DocType != "" {
		q.Set("doctype", c.cfg.DocType)
	}
	uri := c.endpoint(q, "documents")
	res, err := c.caller.Do(ctx, "submit", func(ctx context.Context) (*http.Request, error) {
		body, err := doc.Open(ctx)
		if err != nil {
			return nil, fmt.Errorf("open the document: %w", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri, body)
		if err != nil {
			body.Close()
			return nil, err
		}
		// A known length spares Gini a chunked upload; zero means unknown (chunked).
		if doc.Size > 0 {
			req.ContentLength = doc.Size
		}
		ct := doc.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Accept", c.cfg.Accept)
		return req, nil
	})
	if err != nil {
		return "", err
	}
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
	res.Body.Close()
	loc := res.Header.Get("Location")
	id, err := idFromLocation(loc)
	if err != nil {
		// The document may well be at Gini now; only the reference is lost. Find can recover it.
		return "", vendors.Malformed(name, "submit", err, raw)
	}
	return id, nil
}

// idFromLocation takes the document id from the Location of an upload: the last path segment
// of the document URI.
func idFromLocation(loc string) (string, error) {
	if loc == "" {
		return "", errors.New("the upload was accepted without a Location header")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("the Location %q is not a URI: %w", loc, err)
	}
	segs := strings.Split(u.Path, "/")
	id := segs[len(segs)-1]
	if len(segs) < 2 || id == "" || id == "documents" || id == "." || id == ".." {
		return "", fmt.Errorf("the Location %q does not name a document", loc)
	}
	return id, nil
}

// checkRef refuses references that cannot be Gini ids before they make a confusing URL.
func checkRef(op, ref string) error {
	if ref == "" || ref == "." || ref == ".." {
		return &vendors.Error{Vendor: name, Op: op, Permanent: true, Message: fmt.Sprintf("%q is not a Gini document id", ref)}
	}
	return nil
}

// Check reads the document's progress: PENDING, COMPLETED or ERROR.
func (c *Client) Check(ctx context.Context, ref string) (vendors.Progress, error) {
	if err := checkRef("status", ref); err != nil {
		return vendors.Progress{}, err
	}
	res, err := c.caller.Do(ctx, "status", c.get(c.endpoint(nil, "documents", ref)))
	if err != nil {
		return vendors.Progress{}, err
	}
	var doc struct {
		Progress *string `json:"progress"`
	}
	raw, err := vendors.ReadJSON(name, "status", res, &doc)
	if err != nil {
		return vendors.Progress{}, err
	}
	if doc.Progress == nil {
		return vendors.Progress{}, vendors.Malformed(name, "status", errors.New("the document has no progress"), raw)
	}
	switch p := *doc.Progress; p {
	case "COMPLETED":
		return vendors.Progress{Done: true}, nil
	case "ERROR":
		// Gini gives no reason with ERROR; the document is as far as it will get.
		return vendors.Progress{Done: true, Failed: true, Error: "Gini could not process the document (progress ERROR)"}, nil
	case "PENDING":
		return vendors.Progress{}, nil
	default:
		// A value added after this client was written: keep polling rather than guess it is an
		// end, but say so, since a new end state would otherwise poll forever unnoticed.
		c.log.WarnContext(ctx, "gini: unknown document progress, treating it as pending", "ref", ref, "progress", p)
		return vendors.Progress{}, nil
	}
}

// Result fetches the extractions; Raw is their JSON verbatim. With FetchLayout the layout's words
// become Text.
func (c *Client) Result(ctx context.Context, ref string) (vendors.Result, error) {
	if err := checkRef("result", ref); err != nil {
		return vendors.Result{}, err
	}
	res, err := c.caller.Do(ctx, "result", c.get(c.endpoint(nil, "documents", ref, "extractions")))
	if err != nil {
		return vendors.Result{}, err
	}
	raw, err := vendors.ReadJSON(name, "result", res, nil)
	if err != nil {
		return vendors.Result{}, err
	}
	fields, err := Normalize(raw)
	if err != nil {
		return vendors.Result{}, vendors.Malformed(name, "result", err, raw)
	}
	out := vendors.Result{Fields: fields, Raw: json.RawMessage(raw)}
	if !c.cfg.FetchLayout {
		return out, nil
	}
	text, err := c.layout(ctx, ref)
	switch {
	case err == nil:
		out.Text = text
	case vendors.IsPermanent(err):
		// The extractions are the result; a layout Gini will never give must not throw them away.
		c.log.WarnContext(ctx, "gini: no layout for the document, result without text", "ref", ref, "err", err)
	default:
		return vendors.Result{}, err
	}
	return out, nil
}

func (c *Client) layout(ctx context.Context, ref string) (string, error) {
	res, err := c.caller.Do(ctx, "layout", c.get(c.endpoint(nil, "documents", ref, "layout")))
	if err != nil {
		return "", err
	}
	raw, err := vendors.ReadJSON(name, "layout", res, nil)
	if err != nil {
		return "", err
	}
	text, err := LayoutText(raw)
	if err != nil {
		return "", vendors.Malformed(name, "layout", err, raw)
	}
	return text, nil
}

// clockSkew widens Find's window: creationDate is Gini's clock, since is ours.
const clockSkew = 2 * time.Minute

// Find looks through the document list for a document whose name carries doc's tag. Gini does
// not document the list's order, so the answer is Absent only when the whole list was read — or,
// with ListNewestFirst, when the list kept coming newest first and reached documents older than
// since. When ListPages run out first it is Unknown: a duplicate upload is not the price of a
// short look. A page with a match ends the walk (other attempts on it are reported as
// duplicates).
func (c *Client) Find(ctx context.Context, doc vendors.Document, since time.Time) (vendors.Lookup, error) {
	m := vendors.Matcher{DocID: doc.ID}
	fromMs := since.Add(-clockSkew).UnixMilli()
	ordered, sawOlder := true, false
	prev := int64(math.MaxInt64)
	seen := 0
	for range c.cfg.ListPages {
		// The offset is what was seen, not pages × limit: Gini may give fewer than asked for.
		q := url.Values{"limit": {strconv.Itoa(c.cfg.ListLimit)}, "offset": {strconv.Itoa(seen)}}
		res, err := c.caller.Do(ctx, "find", c.get(c.endpoint(q, "documents")))
		if err != nil {
			return vendors.Lookup{}, err
		}
		var list struct {
			TotalCount *int `json:"totalCount"`
			Documents  *[]struct {
				ID           string `json:"id"`
				Name         string `json:"name"`
				CreationDate int64  `json:"creationDate"`
			} `json:"documents"`
		}
		raw, err := vendors.ReadJSON(name, "find", res, &list)
		if err != nil {
			return vendors.Lookup{}, err
		}
		if list.Documents == nil {
			return vendors.Lookup{}, vendors.Malformed(name, "find", errors.New("the document list has no documents"), raw)
		}
		for _, d := range *list.Documents {
			m.Offer(d.ID, d.Name)
			if d.CreationDate > prev {
				ordered = false
			}
			prev = d.CreationDate
			if d.CreationDate < fromMs {
				sawOlder = true
			}
		}
		seen += len(*list.Documents)
		whole := len(*list.Documents) == 0 || (list.TotalCount != nil && seen >= *list.TotalCount)
		// Two documents at least are needed to see an order at all.
		if whole || (c.cfg.ListNewestFirst && ordered && sawOlder && seen >= 2) || m.Any() {
			return m.Lookup(true, ""), nil
		}
	}
	reason := fmt.Sprintf("Gini's document list was read to %d documents (the bound of %d pages) without reaching its end", seen, c.cfg.ListPages)
	if c.cfg.ListNewestFirst && !ordered {
		reason += "; it did not come newest first, so it had to be read whole"
	}
	return m.Lookup(false, reason), nil
}

// amountRE is Gini's amount format "24.99:EUR", recognised even where the entity is not "amount".
var amountRE = regexp.MustCompile(`^-?\d+(\.\d+)?:[A-Z]{3}$`)

// currencyRE splits an amount entity's value at its currency, whatever the number looks like.
var currencyRE = regexp.MustCompile(`^(.+):([A-Z]{3})$`)

// Normalize turns Gini's extractions answer into fields, one per label, sorted by label: amounts
// "24.99:EUR" become value 24.99 and currency EUR, boxes keep Gini's units (points from the top
// left of the page). Candidates are left in Raw.
func Normalize(body []byte) ([]events.Field, error) {
	var top struct {
		Extractions json.RawMessage `json:"extractions"`
	}
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("the extractions answer is not a JSON object: %w", err)
	}
	var labels map[string]json.RawMessage
	if t := bytes.TrimSpace(top.Extractions); len(t) == 0 || t[0] != '{' {
		return nil, errors.New("the extractions answer has no extractions object")
	}
	if err := json.Unmarshal(top.Extractions, &labels); err != nil {
		return nil, fmt.Errorf("the extractions are not an object: %w", err)
	}
	fields := make([]events.Field, 0, len(labels))
	for label, rawEx := range labels {
		var ex struct {
			Entity string          `json:"entity"`
			Value  json.RawMessage `json:"value"`
			Box    *struct {
				Page   *float64 `json:"page"`
				Left   float64  `json:"left"`
				Top    float64  `json:"top"`
				Width  float64  `json:"width"`
				Height float64  `json:"height"`
			} `json:"box"`
		}
		if t := bytes.TrimSpace(rawEx); len(t) == 0 || t[0] != '{' {
			return nil, fmt.Errorf("the extraction %q is not an object", label)
		}
		if err := json.Unmarshal(rawEx, &ex); err != nil {
			return nil, fmt.Errorf("the extraction %q: %w", label, err)
		}
		f := events.Field{Name: label, Value: valueText(ex.Value)}
		if m := currencyRE.FindStringSubmatch(f.Value); m != nil && (ex.Entity == "amount" || amountRE.MatchString(f.Value)) {
			f.Value, f.Currency = m[1], m[2]
		}
		if b := ex.Box; b != nil {
			f.Box = &events.Box{X: b.Left, Y: b.Top, Width: b.Width, Height: b.Height}
			if b.Page != nil {
				p := int(*b.Page)
				f.Page = &p
			}
		}
		fields = append(fields, f)
	}
	sort.Slice(fields, func(i, j int) bool { return fields[i].Name < fields[j].Name })
	return fields, nil
}

// valueText is an extraction's value as text: Gini sends strings; anything else is kept as its
// JSON so that nothing is lost.
func valueText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	if t := bytes.TrimSpace(v); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		return string(t)
	}
	return ""
}

// LayoutText is the text of Gini's layout: words joined by spaces, lines and paragraphs by
// newlines, pages by form feeds. It reads pages → textZones → paragraphs → lines → wds (or
// "words") and skips whatever else it meets, so an added or missing level costs text, not the
// result.
func LayoutText(body []byte) (string, error) {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("the layout is not a JSON object: %w", err)
	}
	var pages []string
	for _, page := range objects(doc["pages"]) {
		var paras []string
		for _, zone := range objects(page["textZones"]) {
			for _, para := range objects(zone["paragraphs"]) {
				var lines []string
				for _, line := range objects(para["lines"]) {
					words := objects(line["wds"])
					if len(words) == 0 {
						words = objects(line["words"])
					}
					var ws []string
					for _, w := range words {
						if t, ok := w["text"].(string); ok && t != "" {
							ws = append(ws, t)
						}
					}
					lines = append(lines, strings.Join(ws, " "))
				}
				paras = append(paras, strings.Join(lines, "\n"))
			}
		}
		pages = append(pages, strings.Join(paras, "\n"))
	}
	return strings.Join(pages, "\f"), nil
}

// objects is the JSON objects in v when v is an array; nothing otherwise.
func objects(v any) []map[string]any {
	arr, _ := v.([]any)
	out := make([]map[string]any, 0, len(arr))
	for _, e := range arr {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// requestIDTransport folds Gini's requestId into the message of an error answer. The shared
// vendors.Caller reads error bodies for "message" only, and the requestId is what Gini's support
// needs to find a failed call.
type requestIDTransport struct{ next http.RoundTripper }

func (t requestIDTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(req)
	if err != nil || res.StatusCode < 400 {
		return res, err
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	var e struct {
		Message   string `json:"message"`
		RequestID string `json:"requestId"`
	}
	if json.Unmarshal(body, &e) == nil && e.RequestID != "" {
		msg := e.Message
		if msg == "" {
			msg = http.StatusText(res.StatusCode)
		}
		body, _ = json.Marshal(map[string]string{"message": fmt.Sprintf("%s (Gini request id %s)", msg, e.RequestID)})
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	res.Header.Del("Content-Length")
	return res, nil
}
