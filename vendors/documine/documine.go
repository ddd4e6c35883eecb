// Package documine is the client for DocuMine (knecon, the sister product of RedactManager).
// Files are uploaded into a dossier, DocuMine analyses them, and the extracted "components" are
// exported as JSON.
//
// What the documentation confirms: OAuth2 against the instance's Keycloak with client_id and
// client_secret in the form, the password grant for a service user with a local password,
// refresh tokens (300 s access, 1800 s refresh by default), "Authorization: Bearer" and
// "X-TENANT-ID" on every call, error bodies {"timestamp","message"}, and 429s.
//
// What is inferred and therefore configurable (the OpenAPI spec is only given to subscribers):
//   - the token URL: BaseURL + /auth/realms/{tenant}/protocol/openid-connect/token (Keycloak);
//   - the paths: DefaultUploadPath, DefaultStatusPath, DefaultComponentsPath, DefaultListPath;
//   - the upload answer: {"fileId": …}; {"id": …} and a one-element {"fileIds": […]} are also
//     taken, because RedactManager-style services name it either way;
//   - the status answer: {"processingStatus": …}; PROCESSED is done, ERROR and FAILED are
//     failures, any other value (UNPROCESSED, PROCESSING, OCR_PROCESSING, …) is still pending;
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

const vendorName = "documine"

// Default path templates. {templateId}, {dossierId} and {fileId} are replaced by the configured
// dossier template, the configured dossier and the file's id, path-escaped.
const (
	DefaultTokenPath      = "/auth/realms/{tenant}/protocol/openid-connect/token"
	DefaultUploadPath     = "/api/dossier-templates/{templateId}/dossiers/{dossierId}/files"
	DefaultStatusPath     = "/api/dossier-templates/{templateId}/dossiers/{dossierId}/files/{fileId}"
	DefaultComponentsPath = "/api/dossier-templates/{templateId}/dossiers/{dossierId}/files/{fileId}/components"
	// DefaultListPath is the files collection: the same resource as the upload, read with GET.
	DefaultListPath = DefaultUploadPath
)

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
	// Path templates; defaults are the Default*Path constants.
	UploadPath, StatusPath, ComponentsPath, ListPath string
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
	base   string
	caller *vendors.Caller
	tokens *vendors.Tokens
}

var (
	_ vendors.Vendor     = (*Client)(nil)
	_ vendors.Reconciler = (*Client)(nil)
)

var placeholder = regexp.MustCompile(`\{[^}]*\}`)

// New checks cfg and returns a Client. No request is made until the first call.
func New(cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("documine config: %w", err)
	}
	c := &Client{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/")}
	if c.cfg.TokenURL == "" {
		c.cfg.TokenURL = c.base + DefaultTokenPath
	}
	c.cfg.TokenURL = strings.ReplaceAll(c.cfg.TokenURL, "{tenant}", url.PathEscape(cfg.Tenant))
	for _, p := range []struct {
		v   *string
		def string
	}{
		{&c.cfg.UploadPath, DefaultUploadPath},
		{&c.cfg.StatusPath, DefaultStatusPath},
		{&c.cfg.ComponentsPath, DefaultComponentsPath},
		{&c.cfg.ListPath, DefaultListPath},
	} {
		if *p.v == "" {
			*p.v = p.def
		}
	}

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
	for _, p := range []struct {
		name, v string
		fileID  bool // whether the path must address one file
	}{
		{"UploadPath", cfg.UploadPath, false},
		{"StatusPath", cfg.StatusPath, true},
		{"ComponentsPath", cfg.ComponentsPath, true},
		{"ListPath", cfg.ListPath, false},
	} {
		if p.v == "" {
			continue
		}
		if !strings.HasPrefix(p.v, "/") {
			errs = append(errs, fmt.Errorf("%s %q must start with /", p.name, p.v))
		}
		// A misspelt placeholder ({fileID}) would otherwise go to DocuMine literally.
		for _, ph := range placeholder.FindAllString(p.v, -1) {
			if ph != "{templateId}" && ph != "{dossierId}" && ph != "{fileId}" {
				errs = append(errs, fmt.Errorf("%s %q: unknown placeholder %s (known: {templateId} {dossierId} {fileId})", p.name, p.v, ph))
			}
		}
		if has := strings.Contains(p.v, "{fileId}"); has != p.fileID {
			if p.fileID {
				errs = append(errs, fmt.Errorf("%s %q must contain {fileId}", p.name, p.v))
			} else {
				errs = append(errs, fmt.Errorf("%s %q cannot contain {fileId}: it is not about one file", p.name, p.v))
			}
		}
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

// url expands a path template into a full URL.
func (c *Client) url(tmpl, fileID string) string {
	return c.base + strings.NewReplacer(
		"{templateId}", url.PathEscape(c.cfg.DossierTemplateID),
		"{dossierId}", url.PathEscape(c.cfg.DossierID),
		"{fileId}", url.PathEscape(fileID),
	).Replace(tmpl)
}

func get(u string) func(ctx context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
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
	u := c.url(c.cfg.UploadPath, "")
	res, err := c.caller.Do(ctx, "submit", func(ctx context.Context) (*http.Request, error) {
		// Called again after a 401: each attempt re-opens the document.
		body, ctype, n, err := vendors.Multipart(ctx, doc, "file", nil)
		if err != nil {
			return nil, fmt.Errorf("open document %s: %w", doc.ID, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
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
	var ans map[string]json.RawMessage
	body, err := vendors.ReadJSON(vendorName, "submit", res, &ans)
	if err != nil {
		return "", err
	}
	id := uploadedID(ans)
	if id == "" {
		return "", vendors.Malformed(vendorName, "submit", errors.New("the upload answer has no fileId"), body)
	}
	return id, nil
}

func uploadedID(ans map[string]json.RawMessage) string {
	for _, k := range []string{"fileId", "id"} {
		if s, ok := text(ans[k]); ok && s != "" {
			return s
		}
	}
	// Several ids would mean DocuMine split our one upload (an archive): we cannot tell which
	// is the document, so only a single one is taken.
	var ids []json.RawMessage
	if json.Unmarshal(ans["fileIds"], &ids) == nil && len(ids) == 1 {
		if s, ok := text(ids[0]); ok {
			return s
		}
	}
	return ""
}

// text reads a JSON string, or a number as written, as text.
func text(raw json.RawMessage) (string, bool) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if len(raw) == 0 || dec.Decode(&v) != nil {
		return "", false
	}
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	}
	return "", false
}

// Check reads the file's processingStatus.
func (c *Client) Check(ctx context.Context, ref string) (vendors.Progress, error) {
	if ref == "" {
		return vendors.Progress{}, &vendors.Error{Vendor: vendorName, Op: "status", Permanent: true, Message: "empty file id"}
	}
	res, err := c.caller.Do(ctx, "status", get(c.url(c.cfg.StatusPath, ref)))
	if err != nil {
		return vendors.Progress{}, err
	}
	retry := vendors.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())
	var st map[string]json.RawMessage
	body, err := vendors.ReadJSON(vendorName, "status", res, &st)
	if err != nil {
		return vendors.Progress{}, err
	}
	raw, ok := st["processingStatus"]
	if !ok {
		return vendors.Progress{}, vendors.Malformed(vendorName, "status", errors.New("the status answer has no processingStatus"), body)
	}
	var status string
	if err := json.Unmarshal(raw, &status); err != nil {
		return vendors.Progress{}, vendors.Malformed(vendorName, "status", errors.New("processingStatus is not a string"), body)
	}
	switch strings.ToUpper(strings.TrimSpace(status)) {
	case "PROCESSED":
		return vendors.Progress{Done: true}, nil
	case "ERROR", "FAILED":
		return vendors.Progress{Done: true, Failed: true, Error: failureMessage(st, status)}, nil
	default:
		// The enum is not documented: a value we do not know is more likely a new intermediate
		// step (OCR_PROCESSING, INDEXING, …) than an end.
		return vendors.Progress{RetryAfter: retry}, nil
	}
}

// failureMessage finds DocuMine's words for a failed analysis; where it is said is not
// documented, so the likely places are tried.
func failureMessage(st map[string]json.RawMessage, status string) string {
	var info map[string]json.RawMessage
	if json.Unmarshal(st["fileErrorInfo"], &info) == nil {
		for _, k := range []string{"cause", "message"} {
			if s, ok := text(info[k]); ok && s != "" {
				return s
			}
		}
	}
	for _, k := range []string{"errorMessage", "error", "message"} {
		if s, ok := text(st[k]); ok && s != "" {
			return s
		}
	}
	return fmt.Sprintf("DocuMine could not analyse the file (processingStatus %s)", status)
}

// Result fetches the file's components. Raw is DocuMine's body, verbatim.
func (c *Client) Result(ctx context.Context, ref string) (vendors.Result, error) {
	if ref == "" {
		return vendors.Result{}, &vendors.Error{Vendor: vendorName, Op: "result", Permanent: true, Message: "empty file id"}
	}
	res, err := c.caller.Do(ctx, "result", get(c.url(c.cfg.ComponentsPath, ref)))
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
	return vendors.Result{Fields: fields, Raw: json.RawMessage(body)}, nil
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
	res, err := c.caller.Do(ctx, "list", get(c.url(c.cfg.ListPath, "")))
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
