// Package documine is the client for DocuMine (knecon, the sister product of RedactManager).
// Files are uploaded into a dossier, DocuMine analyses them, and the result is either the
// extracted "components" exported as JSON or a "result package" (create → status → download).
//
// What the documentation confirms: OAuth2 against the instance's Keycloak with client_id and
// client_secret in the form, the password grant for a service user with a local password,
// refresh tokens (300 s access, 1800 s refresh by default), "Authorization: Bearer" and
// "X-TENANT-ID" on every call, error bodies {"timestamp","message"}, 429s, the list of
// operations, and the create-download path of a result package.
//
// Everything else is a guess and configurable through API (the OpenAPI spec is only given to
// subscribers; the customer's copy says the real values):
//   - the token URL: BaseURL + /auth/realms/{tenant}/protocol/openid-connect/token (Keycloak);
//   - each request's method and path, the upload's multipart field, the id keys of the upload
//     and package answers, the status fields and their values: see DefaultAPI;
//   - the components answer: see ComponentFields;
//   - the file list: an array of file objects (or one wrapped in "files", "content", "items" or
//     "data") with "fileId" (or "id"), "filename" (or "fileName") and "added" / "lastUploaded".
package documine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors"
)

const vendorName = "documine"

// DefaultTokenPath is the guessed token endpoint under BaseURL: Keycloak, realm = workspace.
const DefaultTokenPath = "/auth/realms/{tenant}/protocol/openid-connect/token"

// Config configures a Client.
type Config struct {
	// BaseURL is the instance, e.g. https://acme.documine.ai (required). A path prefix is kept.
	BaseURL string
	// TokenURL is the full token endpoint; {tenant} in it is replaced by Tenant. Default:
	// BaseURL + DefaultTokenPath (Keycloak, realm = workspace; inferred, not documented).
	TokenURL string
	// ClientID and ClientSecret of the instance's OAuth client; they travel in the form body.
	ClientID, ClientSecret string
	// Username and Password of a dedicated service user with a local DocuMine password (not an
	// SSO one): the password grant is the only documented way to log in without a browser.
	Username, Password string
	// Tenant is the workspace id sent as X-TENANT-ID (required).
	Tenant string
	// DossierTemplateID and DossierID say where uploads go (required).
	DossierTemplateID, DossierID string
	// API is the shape of every request after login; the zero value means DefaultAPI().
	API API
	// Timeout bounds one request including an upload's body; default 5 minutes.
	Timeout time.Duration
	// RateLimit is requests per second (0: unlimited). DocuMine answers 429 when pressed.
	RateLimit float64
	// Concurrency caps requests in flight (0: unlimited).
	Concurrency int
	// HTTPClient supplies the transport (and the timeout when Timeout is zero); its other
	// settings are not used. Nil: http.DefaultTransport.
	HTTPClient *http.Client
}

// Client talks to one DocuMine dossier. It is safe for concurrent use.
type Client struct {
	cfg    Config
	api    API
	base   string
	caller *vendors.Caller
	tokens *vendors.Tokens
	// packages remembers the result package made for a file between Check and Result; see
	// packageIDs for why memory is enough.
	packages *packageIDs
}

var (
	_ vendors.Vendor     = (*Client)(nil)
	_ vendors.Reconciler = (*Client)(nil)
	_ vendors.Finisher   = (*Client)(nil)
)

// New checks cfg and returns a Client. No request is made until the first call.
func New(cfg Config) (*Client, error) {
	if reflect.ValueOf(cfg.API).IsZero() {
		cfg.API = DefaultAPI()
	}
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("documine config: %w", err)
	}
	c := &Client{cfg: cfg, api: cfg.API, base: strings.TrimRight(cfg.BaseURL, "/"), packages: newPackageIDs(maxRememberedPackages)}
	if c.cfg.TokenURL == "" {
		c.cfg.TokenURL = c.base + DefaultTokenPath
	}
	c.cfg.TokenURL = strings.ReplaceAll(c.cfg.TokenURL, "{tenant}", url.PathEscape(cfg.Tenant))

	var transport http.RoundTripper
	timeout := cfg.Timeout
	if cfg.HTTPClient != nil {
		transport = cfg.HTTPClient.Transport
		if timeout == 0 {
			timeout = cfg.HTTPClient.Timeout
		}
	}
	c.caller = vendors.NewCaller(vendors.CallerConfig{
		Vendor:      vendorName,
		Timeout:     timeout,
		RateLimit:   cfg.RateLimit,
		Concurrency: cfg.Concurrency,
		Authorize:   c.authorize,
		Reauthorize: c.reauthorize,
		Transport:   transport,
	})
	c.tokens = vendors.PasswordGrant(vendors.OAuthConfig{
		Vendor:       vendorName,
		TokenURL:     c.cfg.TokenURL,
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		// The documentation's curl examples put the client in the form; Keycloak would also
		// take Basic, but auto-detection costs a refused request per login.
		AuthStyle: oauth2.AuthStyleInParams,
		HTTP:      c.caller.HTTPClient(),
	}, cfg.Username, cfg.Password)
	return c, nil
}

func (cfg Config) check() error {
	var errs []error
	need := func(v, name, why string) {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s is required (%s)", name, why))
		}
	}
	need(cfg.BaseURL, "BaseURL", "the DocuMine instance, e.g. https://acme.documine.ai")
	need(cfg.Tenant, "Tenant", "the workspace id sent as X-TENANT-ID")
	need(cfg.DossierTemplateID, "DossierTemplateID", "the dossier template the dossier belongs to")
	need(cfg.DossierID, "DossierID", "the dossier that receives the uploads")
	need(cfg.ClientID, "ClientID", "the instance's OAuth client; ask DocuMine support if unknown")
	need(cfg.Username, "Username", "a service user with a local DocuMine password")
	need(cfg.Password, "Password", "the service user's local DocuMine password, not an SSO one")
	if cfg.BaseURL != "" {
		if _, err := vendors.ParseHTTPURL("BaseURL", cfg.BaseURL); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.TokenURL != "" {
		if _, err := vendors.ParseHTTPURL("TokenURL", cfg.TokenURL); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range cfg.API.problems() {
		errs = append(errs, fmt.Errorf("api.%s: %s", p.key, p.msg))
	}
	if cfg.Timeout < 0 || cfg.RateLimit < 0 || cfg.Concurrency < 0 {
		errs = append(errs, errors.New("Timeout, RateLimit and Concurrency cannot be negative"))
	}
	return errors.Join(errs...)
}

// Name is "documine".
func (c *Client) Name() string { return vendorName }

func (c *Client) authorize(ctx context.Context, req *http.Request) error {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return loginError(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-TENANT-ID", c.cfg.Tenant)
	return nil
}

func (c *Client) reauthorize(req *http.Request) {
	c.tokens.Invalidate(strings.TrimSpace(strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer")))
}

// loginError says what to fix when Keycloak refuses us for good: the raw "invalid_grant" or
// "Invalid user credentials" does not tell an operator which setting is wrong.
func loginError(err error) error {
	var e *vendors.Error
	if !errors.As(err, &e) || e.Op != "token" || !e.Permanent {
		return err
	}
	cp := *e
	if e.Status == http.StatusNotFound {
		cp.Message = "DocuMine's token endpoint was not found, check TokenURL and Tenant: " + e.Message
	} else {
		cp.Message = "DocuMine refused the login, check the credentials (ClientID, ClientSecret, Username, Password): " + e.Message
	}
	return &cp
}

// url expands a path template into a full URL; ids are path-escaped so that none can address
// another resource.
func (c *Client) url(tmpl, fileID, downloadID string) string {
	return c.base + strings.NewReplacer(
		"{templateId}", url.PathEscape(c.cfg.DossierTemplateID),
		"{dossierId}", url.PathEscape(c.cfg.DossierID),
		"{fileId}", url.PathEscape(fileID),
		"{downloadId}", url.PathEscape(downloadID),
	).Replace(tmpl)
}

// request builds a body-less request (or one with a JSON body) for a shape.
func (c *Client) request(r RequestShape, fileID, downloadID string, body []byte, accept string) func(ctx context.Context) (*http.Request, error) {
	u := c.url(r.Path, fileID, downloadID)
	return func(ctx context.Context) (*http.Request, error) {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, r.Method, u, rd)
		if err != nil {
			return nil, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", accept)
		return req, nil
	}
}

// Submit uploads doc into the dossier and returns DocuMine's file id.
func (c *Client) Submit(ctx context.Context, doc vendors.Document) (string, error) {
	if doc.Open == nil {
		return "", &vendors.Error{Vendor: vendorName, Op: "submit", Permanent: true,
			Message: fmt.Sprintf("document %s has no content to upload", doc.ID)}
	}
	if doc.ContentType == "" {
		doc.ContentType = "application/octet-stream"
	}
	up := c.api.Upload
	u := c.url(up.Path, "", "")
	res, err := c.caller.Do(ctx, "submit", func(ctx context.Context) (*http.Request, error) {
		// Called again after a 401: each attempt re-opens the document.
		body, ctype, n, err := vendors.Multipart(ctx, doc, up.FileField, nil)
		if err != nil {
			return nil, fmt.Errorf("open document %s: %w", doc.ID, err)
		}
		req, err := http.NewRequestWithContext(ctx, up.Method, u, body)
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
		return "", err
	}
	body, err := vendors.ReadJSON(vendorName, "submit", res, nil)
	if err != nil {
		return "", err
	}
	v, err := decode(body)
	if err != nil {
		return "", vendors.Malformed(vendorName, "submit", err, body)
	}
	id, err := idAt(v, up.IDKeys)
	if err != nil {
		return "", vendors.Malformed(vendorName, "submit", fmt.Errorf("no file id in the upload answer (api.upload.id_keys): %w", err), body)
	}
	return id, nil
}

// Check reads the file's status; in package mode a processed file is done only once its result
// package is ready.
func (c *Client) Check(ctx context.Context, ref string) (vendors.Progress, error) {
	if ref == "" {
		return vendors.Progress{}, &vendors.Error{Vendor: vendorName, Op: "status", Permanent: true, Message: "empty file id"}
	}
	p, err := c.status(ctx, "status", "api.status", c.api.Status, ref, "")
	if err != nil || !p.Done || p.Failed || c.api.ResultMode != ResultPackage {
		return p, err
	}
	return c.packageProgress(ctx, ref)
}

// status asks one status endpoint and reads the answer by shape s; key names s in the settings.
func (c *Client) status(ctx context.Context, op, key string, s StatusShape, fileID, downloadID string) (vendors.Progress, error) {
	res, err := c.caller.Do(ctx, op, c.request(s.RequestShape, fileID, downloadID, nil, "application/json"))
	if err != nil {
		return vendors.Progress{}, err
	}
	retry := vendors.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())
	body, err := vendors.ReadJSON(vendorName, op, res, nil)
	if err != nil {
		return vendors.Progress{}, err
	}
	p, err := readStatus(s, key, body)
	if err != nil {
		return vendors.Progress{}, vendors.Malformed(vendorName, op, err, body)
	}
	if !p.Done {
		p.RetryAfter = retry
	}
	return p, nil
}

// readStatus reads a status answer. A value in none of the configured lists is "not yet" while
// pending_values is empty: the enum is not documented, and an unknown value is far more likely
// a new intermediate step (OCR_PROCESSING, INDEXING) than an end, so the poll deadline is the
// bound. Once pending_values lists the enum (from the OpenAPI file), an unknown value means the
// configured shapes are wrong, and waiting would only hide that: it is a permanent error.
func readStatus(s StatusShape, key string, body []byte) (vendors.Progress, error) {
	v, err := decode(body)
	if err != nil {
		return vendors.Progress{}, err
	}
	x, ok := lookup(v, s.Field)
	if !ok || x == nil {
		return vendors.Progress{}, fmt.Errorf("the status answer has no %s (%s.field)", s.Field, key)
	}
	status, ok := x.(string)
	if !ok {
		return vendors.Progress{}, fmt.Errorf("%s is not a string (%s.field)", s.Field, key)
	}
	switch {
	case oneOf(status, s.DoneValues):
		return vendors.Progress{Done: true}, nil
	case oneOf(status, s.FailedValues):
		return vendors.Progress{Done: true, Failed: true, Error: failureMessage(v, s, status)}, nil
	case len(s.PendingValues) == 0 || oneOf(status, s.PendingValues):
		return vendors.Progress{}, nil
	}
	return vendors.Progress{}, fmt.Errorf("%s %q is none of the configured values (done %s, failed %s, pending %s): add it to %s.pending_values or correct the shapes from the OpenAPI file",
		s.Field, status, strings.Join(s.DoneValues, "/"), strings.Join(s.FailedValues, "/"), strings.Join(s.PendingValues, "/"), key)
}

func oneOf(v string, values []string) bool {
	v = strings.TrimSpace(v)
	for _, w := range values {
		if strings.EqualFold(v, strings.TrimSpace(w)) {
			return true
		}
	}
	return false
}

// failureMessage finds DocuMine's words for a failure at the configured error keys.
func failureMessage(v any, s StatusShape, status string) string {
	for _, k := range s.ErrorKeys {
		if msg, ok := textAt(v, k); ok && msg != "" {
			return msg
		}
	}
	return fmt.Sprintf("DocuMine could not analyse the file (%s %s)", s.Field, status)
}

// Result fetches the file's result: the components export, or the result package.
func (c *Client) Result(ctx context.Context, ref string) (vendors.Result, error) {
	if ref == "" {
		return vendors.Result{}, &vendors.Error{Vendor: vendorName, Op: "result", Permanent: true, Message: "empty file id"}
	}
	if c.api.ResultMode == ResultPackage {
		return c.packageResult(ctx, ref)
	}
	res, err := c.caller.Do(ctx, "result", c.request(c.api.Components.RequestShape, ref, "", nil, "application/json"))
	if err != nil {
		return vendors.Result{}, err
	}
	body, err := vendors.ReadJSON(vendorName, "result", res, nil)
	if err != nil {
		return vendors.Result{}, err
	}
	fields, err := ComponentFields(body)
	if err != nil {
		return vendors.Result{}, vendors.Malformed(vendorName, "result", err, body)
	}
	return vendors.Result{Text: textOf(body, c.api.Components.TextKey), Fields: fields, Raw: json.RawMessage(body)}, nil
}

// textOf reads the document's text at key of a JSON body ("" for no key or no text).
func textOf(body []byte, key string) string {
	if key == "" {
		return ""
	}
	v, err := decode(body)
	if err != nil {
		return ""
	}
	s, _ := textAt(v, key)
	return s
}

// ComponentFields normalises a components answer into fields. It is exported so that a stored
// Raw can be normalised again.
//
// The export format is not public, so several shapes are taken:
//   - a list of components: [{"name": "Study_Title", "value": "…"}, {"name": "Author",
//     "values": ["…", "…"]}]; "componentName" is taken for "name". A list of values gives one
//     field per value; a value that is an object gives its "value", else its JSON.
//   - a map: {"Study_Title": "…", "Author": ["…", "…"]}, fields in name order.
//   - either of these under "components" in an object, beside the file's details.
//
// A null value gives a field with an empty value: the component exists and nothing was found.
// Any other JSON gives no fields and no error (the caller keeps Raw); only a body that is not
// JSON is an error.
func ComponentFields(body []byte) ([]events.Field, error) {
	if !json.Valid(body) {
		return nil, errors.New("the components answer is not JSON")
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // numbers as DocuMine wrote them, not as float64 prints them
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("the components answer is not JSON: %w", err)
	}
	if m, ok := v.(map[string]any); ok {
		if inner, ok := m["components"]; ok {
			switch inner.(type) {
			case []any, map[string]any:
				v = inner
			}
		}
	}
	switch t := v.(type) {
	case []any:
		var out []events.Field
		for _, el := range t {
			comp, ok := el.(map[string]any)
			if !ok {
				continue
			}
			name := firstString(comp, "name", "componentName")
			if name == "" {
				continue
			}
			out = append(out, valueFields(name, comp)...)
		}
		return out, nil
	case map[string]any:
		names := make([]string, 0, len(t))
		for k := range t {
			if k != "" {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		var out []events.Field
		for _, name := range names {
			if obj, ok := t[name].(map[string]any); ok {
				if _, hasV := obj["value"]; hasV {
					out = append(out, valueFields(name, obj)...)
					continue
				}
				if _, hasV := obj["values"]; hasV {
					out = append(out, valueFields(name, obj)...)
					continue
				}
			}
			out = append(out, fieldsOf(name, t[name])...)
		}
		return out, nil
	}
	return nil, nil
}

// valueFields reads a component object's "values" (preferred: several findings) or "value".
// Components with neither are definitions rather than results and give nothing.
func valueFields(name string, comp map[string]any) []events.Field {
	if vs, ok := comp["values"]; ok {
		return fieldsOf(name, vs)
	}
	if v, ok := comp["value"]; ok {
		return fieldsOf(name, v)
	}
	return nil
}

func fieldsOf(name string, v any) []events.Field {
	if list, ok := v.([]any); ok {
		out := make([]events.Field, 0, len(list))
		for _, el := range list {
			out = append(out, events.Field{Name: name, Value: scalar(el)})
		}
		return out
	}
	return []events.Field{{Name: name, Value: scalar(v)}}
}

func scalar(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case map[string]any:
		if inner, ok := t["value"]; ok {
			if _, nested := inner.(map[string]any); !nested {
				if _, list := inner.([]any); !list {
					return scalar(inner)
				}
			}
		}
	}
	b, _ := json.Marshal(v) // sorted keys: the same value always reads the same
	return string(b)
}

func firstString(m map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := m[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

// Find looks in the dossier's file list for an upload whose file name carries doc's tag. Paging
// of the list is not documented: a bare list, or an object with no sign of further pages, is
// taken as the whole dossier (Absent when nothing matches); a Spring-style page that says there
// is more (last false, totalElements or totalPages beyond it, a next link) makes the answer
// Unknown, since only the first page was read.
func (c *Client) Find(ctx context.Context, doc vendors.Document, _ time.Time) (vendors.Lookup, error) {
	res, err := c.caller.Do(ctx, "list", c.request(c.api.List, "", "", nil, "application/json"))
	if err != nil {
		return vendors.Lookup{}, err
	}
	body, err := vendors.ReadJSON(vendorName, "list", res, nil)
	if err != nil {
		return vendors.Lookup{}, err
	}
	files, more, err := fileList(body)
	if err != nil {
		return vendors.Lookup{}, vendors.Malformed(vendorName, "list", err, body)
	}
	m := vendors.Matcher{DocID: doc.ID}
	for _, f := range files {
		// The tag is exact: no time window is needed to tell our upload from anyone else's.
		m.Offer(firstText(f, "fileId", "id"), firstText(f, "filename", "fileName"))
	}
	return m.Lookup(!more, fmt.Sprintf("DocuMine's file list says it has more than the %d files it gave, and its paging is not documented", len(files))), nil
}

// fileList reads the file list, and whether it says there is more of it than it gave.
func fileList(body []byte) ([]map[string]json.RawMessage, bool, error) {
	var list []map[string]json.RawMessage
	if json.Unmarshal(body, &list) == nil {
		return list, false, nil
	}
	var wrap map[string]json.RawMessage
	if err := json.Unmarshal(body, &wrap); err != nil {
		return nil, false, errors.New("the file list is neither a list nor an object")
	}
	for _, k := range []string{"files", "content", "items", "data"} {
		if json.Unmarshal(wrap[k], &list) == nil && list != nil {
			return list, hasMore(wrap, len(list)), nil
		}
	}
	return nil, false, errors.New("the file list answer holds no list of files")
}

// hasMore reads the paging hints a Spring Data page (last, totalElements, totalPages) or another
// paged answer (hasMore, next) may carry.
func hasMore(wrap map[string]json.RawMessage, n int) bool {
	var b bool
	if json.Unmarshal(wrap["last"], &b) == nil && wrap["last"] != nil && !b {
		return true
	}
	for _, k := range []string{"hasMore", "has_more"} {
		if json.Unmarshal(wrap[k], &b) == nil && b {
			return true
		}
	}
	var total float64
	if json.Unmarshal(wrap["totalElements"], &total) == nil && total > float64(n) {
		return true
	}
	if json.Unmarshal(wrap["totalPages"], &total) == nil && total > 1 {
		return true
	}
	next := bytes.TrimSpace(wrap["next"])
	return len(next) > 0 && string(next) != "null" && string(next) != `""`
}

func firstText(m map[string]json.RawMessage, keys ...string) string {
	for _, k := range keys {
		if s, ok := text(m[k]); ok && s != "" {
			return s
		}
	}
	return ""
}

// text reads a JSON string, or a number as written, as text.
func text(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	v, err := decode(raw)
	if err != nil {
		return "", false
	}
	return asText(v)
}
