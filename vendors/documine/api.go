package documine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ingest-dev/ingest/config"
)

// API is the shape of every request after login. DocuMine gives its OpenAPI file to subscribers
// only, so each path, field name and status value here is a guess (the defaults) that an
// operator corrects from the customer's copy of that file. Only the login, the X-TENANT-ID
// header, the list of operations (upload, file list, file status, components export, result
// package create/status/download/delete) and the create-download path are documented.
type API struct {
	Upload     UploadShape  `yaml:"upload"`
	Status     StatusShape  `yaml:"status"`
	List       RequestShape `yaml:"list"`
	Components ResultShape  `yaml:"components"`
	// ResultMode is how the result is fetched once the file is processed: "components" (the
	// components export) or "package" (create a result package, wait for it, download it).
	ResultMode string       `yaml:"result_mode"`
	Package    PackageShape `yaml:"package"`
}

// RequestShape is one request: an HTTP method and a path template.
type RequestShape struct {
	Method string `yaml:"method"`
	Path   string `yaml:"path"`
}

// UploadShape is the upload: a multipart request with the document under FileField, answered
// with the new file's id at the first of IDKeys that is there.
type UploadShape struct {
	RequestShape `yaml:",inline"`
	FileField    string `yaml:"file_field"`
	// IDKeys are dotted JSON paths ("fileId", "data.file.id"); a one-element list there is taken
	// as its element, several elements are an error (DocuMine split our one upload).
	IDKeys []string `yaml:"id_keys"`
}

// StatusShape is a status request and how its answer reads.
type StatusShape struct {
	RequestShape `yaml:",inline"`
	// Field is the dotted JSON path of the status value.
	Field        string   `yaml:"field"`
	DoneValues   []string `yaml:"done_values"`
	FailedValues []string `yaml:"failed_values"`
	// PendingValues, when set, are the only other values expected: any value in none of the
	// three lists is then an error. Empty: any other value means "not yet".
	PendingValues []string `yaml:"pending_values"`
	// ErrorKeys are dotted JSON paths where a failure's message may be.
	ErrorKeys []string `yaml:"error_keys"`
}

// ResultShape is the components export.
type ResultShape struct {
	RequestShape `yaml:",inline"`
	// TextKey is the dotted JSON path of the document's text in the answer, empty when the
	// answer has none.
	TextKey string `yaml:"text_key"`
}

// PackageShape is the result-package flow: create a package for the file, poll its status,
// download it, and delete it once the result is stored.
type PackageShape struct {
	Create CreateShape `yaml:"create"`
	Status StatusShape `yaml:"status"`
	// Download answers with the package: a ZIP (its *.json entries read as component reports,
	// entries matching TextFiles as the text) or one JSON component report.
	Download DownloadShape `yaml:"download"`
	// Delete removes the package after the completed event is stored; an empty path leaves
	// packages to DocuMine.
	Delete RequestShape `yaml:"delete"`
}

// CreateShape is the request that creates a package.
type CreateShape struct {
	RequestShape `yaml:",inline"`
	// Body is the JSON request body; {fileId}, {dossierId} and {templateId} inside its strings
	// are replaced by the (JSON-escaped) values.
	Body string `yaml:"body"`
	// IDKeys are dotted JSON paths of the package (download) id in the answer.
	IDKeys []string `yaml:"id_keys"`
}

// DownloadShape is the package download.
type DownloadShape struct {
	RequestShape `yaml:",inline"`
	// MaxBytes bounds the package held in memory (and each ZIP's unpacked content).
	MaxBytes config.ByteSize `yaml:"max_bytes"`
	// TextFiles is a file name pattern (path.Match) of ZIP entries holding the document's text;
	// empty: none.
	TextFiles string `yaml:"text_files"`
	// TextKey is the dotted JSON path of the text inside a JSON component report; empty: none.
	TextKey string `yaml:"text_key"`
}

// Result modes.
const (
	ResultComponents = "components"
	ResultPackage    = "package"
)

const dossierFiles = "/api/dossier-templates/{templateId}/dossiers/{dossierId}/files"

// DefaultAPI is the guessed API: RedactManager-style paths under the dossier, the file's
// processingStatus, and a result package made by the documented create-download operation.
func DefaultAPI() API {
	return API{
		Upload: UploadShape{RequestShape: RequestShape{http.MethodPost, dossierFiles},
			FileField: "file", IDKeys: []string{"fileId", "id", "fileIds"}},
		Status: StatusShape{RequestShape: RequestShape{http.MethodGet, dossierFiles + "/{fileId}"},
			Field: "processingStatus", DoneValues: []string{"PROCESSED"}, FailedValues: []string{"ERROR", "FAILED"},
			PendingValues: []string{},
			ErrorKeys:     []string{"fileErrorInfo.cause", "fileErrorInfo.message", "errorMessage", "error", "message"}},
		List:       RequestShape{http.MethodGet, dossierFiles},
		Components: ResultShape{RequestShape: RequestShape{http.MethodGet, dossierFiles + "/{fileId}/components"}},
		ResultMode: ResultComponents,
		Package: PackageShape{
			// The create-download path is in the published spec diff; its body is not.
			Create: CreateShape{RequestShape: RequestShape{http.MethodPost, "/api/dossier-templates/{templateId}/dossiers/{dossierId}/create-download"},
				Body: `{"fileIds":["{fileId}"]}`, IDKeys: []string{"downloadId", "id", "storageId"}},
			Status: StatusShape{RequestShape: RequestShape{http.MethodGet, "/api/downloads/{downloadId}"},
				Field: "status", DoneValues: []string{"READY"}, FailedValues: []string{"FAILED"},
				PendingValues: []string{}, ErrorKeys: []string{"errorMessage", "error", "message"}},
			Download: DownloadShape{RequestShape: RequestShape{http.MethodGet, "/api/downloads/{downloadId}/download"},
				MaxBytes: 64 << 20},
			Delete: RequestShape{http.MethodDelete, "/api/downloads/{downloadId}"},
		},
	}
}

// problem is one thing wrong with the API settings, at a key relative to api:.
type problem struct{ key, msg string }

var placeholder = regexp.MustCompile(`\{[^}]*\}`)

// need says which placeholders a path must, may and must not hold.
type need struct {
	must   []string
	others []string // allowed besides must
}

var (
	dossierLevel = need{others: []string{"{templateId}", "{dossierId}"}}
	fileLevel    = need{must: []string{"{fileId}"}, others: []string{"{templateId}", "{dossierId}"}}
	packageLevel = need{must: []string{"{downloadId}"}, others: []string{"{templateId}", "{dossierId}", "{fileId}"}}
)

// problems checks every shape; an empty list means the client can use it.
func (a API) problems() []problem {
	var out []problem
	report := func(key, format string, args ...any) { out = append(out, problem{key, fmt.Sprintf(format, args...)}) }
	checkRequest := func(key string, r RequestShape, n need, methods ...string) {
		checkMethod(report, key+".method", r.Method, methods)
		checkPath(report, key+".path", r.Path, n)
	}
	checkRequest("upload", a.Upload.RequestShape, dossierLevel, http.MethodPost, http.MethodPut)
	if !validField(a.Upload.FileField) {
		report("upload.file_field", "%q is not a multipart field name", a.Upload.FileField)
	}
	checkKeys(report, "upload.id_keys", a.Upload.IDKeys)
	a.Status.check(report, "status", fileLevel)
	checkRequest("list", a.List, dossierLevel, http.MethodGet, http.MethodPost)
	switch a.ResultMode {
	case ResultComponents:
		checkRequest("components", a.Components.RequestShape, fileLevel, http.MethodGet, http.MethodPost)
		checkOptionalKey(report, "components.text_key", a.Components.TextKey)
	case ResultPackage:
		a.Package.check(report)
	default:
		report("result_mode", "%q is not one of %s, %s", a.ResultMode, ResultComponents, ResultPackage)
	}
	return out
}

func (p PackageShape) check(report func(key, format string, args ...any)) {
	checkMethod(report, "package.create.method", p.Create.Method, []string{http.MethodPost, http.MethodPut})
	checkPath(report, "package.create.path", p.Create.Path, need{others: []string{"{templateId}", "{dossierId}", "{fileId}"}})
	if p.Create.Body != "" {
		if b := expandBody(p.Create.Body, map[string]string{"{fileId}": "f", "{dossierId}": "d", "{templateId}": "t"}); !json.Valid(b) {
			report("package.create.body", "is not JSON: %s", p.Create.Body)
		}
	}
	checkKeys(report, "package.create.id_keys", p.Create.IDKeys)
	p.Status.check(report, "package.status", packageLevel)
	checkMethod(report, "package.download.method", p.Download.Method, []string{http.MethodGet, http.MethodPost})
	checkPath(report, "package.download.path", p.Download.Path, packageLevel)
	if p.Download.MaxBytes <= 0 {
		report("package.download.max_bytes", "must be positive")
	}
	if _, err := path.Match(p.Download.TextFiles, "x"); err != nil {
		report("package.download.text_files", "%q is not a file name pattern: %v", p.Download.TextFiles, err)
	}
	checkOptionalKey(report, "package.download.text_key", p.Download.TextKey)
	if p.Delete.Path != "" {
		checkMethod(report, "package.delete.method", p.Delete.Method, []string{http.MethodDelete, http.MethodPost})
		checkPath(report, "package.delete.path", p.Delete.Path, packageLevel)
	}
}

func (s StatusShape) check(report func(key, format string, args ...any), key string, n need) {
	checkMethod(report, key+".method", s.Method, []string{http.MethodGet, http.MethodPost})
	checkPath(report, key+".path", s.Path, n)
	checkKeys(report, key+".field", []string{s.Field})
	if len(s.DoneValues) == 0 {
		report(key+".done_values", "needs at least one value")
	}
	lists := []struct {
		name string
		vs   []string
	}{{"done_values", s.DoneValues}, {"failed_values", s.FailedValues}, {"pending_values", s.PendingValues}}
	seen := map[string]string{}
	for _, l := range lists {
		for _, v := range l.vs {
			u := strings.ToUpper(strings.TrimSpace(v))
			switch prev, dup := seen[u]; {
			case u == "":
				report(key+"."+l.name, "has an empty value")
			case dup && prev != l.name:
				report(key+"."+l.name, "%q is also in %s: a status cannot mean both", v, prev)
			}
			seen[u] = l.name
		}
	}
	for i, k := range s.ErrorKeys {
		checkKeys(report, fmt.Sprintf("%s.error_keys[%d]", key, i), []string{k})
	}
}

func checkMethod(report func(key, format string, args ...any), key, m string, allowed []string) {
	if !slices.Contains(allowed, m) {
		report(key, "%q is not one of %s", m, strings.Join(allowed, ", "))
	}
}

func checkPath(report func(key, format string, args ...any), key, p string, n need) {
	if !strings.HasPrefix(p, "/") {
		report(key, "%q must start with /", p)
		return
	}
	if strings.ContainsAny(p, "?# ") {
		report(key, "%q must be a path only (no query, fragment or space)", p)
	}
	found := placeholder.FindAllString(p, -1)
	for _, ph := range found {
		// A misspelt placeholder ({fileID}) would otherwise go to DocuMine literally.
		if !slices.Contains(n.must, ph) && !slices.Contains(n.others, ph) {
			report(key, "%q: placeholder %s is not known here (known: %s)", p, ph, strings.Join(append(slices.Clone(n.must), n.others...), " "))
		}
	}
	for _, m := range n.must {
		if !slices.Contains(found, m) {
			report(key, "%q must contain %s", p, m)
		}
	}
}

func checkKeys(report func(key, format string, args ...any), key string, keys []string) {
	if len(keys) == 0 {
		report(key, "needs at least one key")
	}
	for _, k := range keys {
		if !validKey(k) {
			report(key, "%q is not a dotted JSON path like data.fileId", k)
		}
	}
}

func checkOptionalKey(report func(key, format string, args ...any), key, k string) {
	if k != "" && !validKey(k) {
		report(key, "%q is not a dotted JSON path like data.text", k)
	}
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for _, seg := range strings.Split(k, ".") {
		if seg == "" {
			return false
		}
	}
	return true
}

func validField(f string) bool {
	return f != "" && !strings.ContainsAny(f, "\"\r\n")
}

// expandBody fills the placeholders inside a JSON body template with JSON-escaped values, so
// that an id with a quote cannot break out of its string.
func expandBody(tmpl string, values map[string]string) []byte {
	var pairs []string
	for k, v := range values {
		q, _ := json.Marshal(v)
		pairs = append(pairs, k, string(q[1:len(q)-1]))
	}
	return []byte(strings.NewReplacer(pairs...).Replace(tmpl))
}

// lookup reads the value at a dotted path ("data.files.0.id": numbers index lists) of a decoded
// JSON value (decoded with UseNumber).
func lookup(v any, key string) (any, bool) {
	for _, seg := range strings.Split(key, ".") {
		switch t := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = t[seg]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// decode reads a JSON body keeping numbers as written.
func decode(body []byte) (any, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return v, nil
}

// textAt reads a string, or a number as written, at key.
func textAt(v any, key string) (string, bool) {
	x, ok := lookup(v, key)
	if !ok {
		return "", false
	}
	return asText(x)
}

func asText(x any) (string, bool) {
	switch t := x.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	}
	return "", false
}

// idAt reads an id at the first of keys that holds one. A list of exactly one id is taken as
// that id; a longer list is an error, since we cannot tell which is ours.
func idAt(v any, keys []string) (string, error) {
	for _, k := range keys {
		x, ok := lookup(v, k)
		if !ok || x == nil {
			continue
		}
		if list, isList := x.([]any); isList {
			if len(list) != 1 {
				return "", fmt.Errorf("%s holds %d ids where one was expected", k, len(list))
			}
			x = list[0]
		}
		if s, ok := asText(x); ok && s != "" {
			return s, nil
		}
		return "", fmt.Errorf("%s is not an id (a string or number)", k)
	}
	return "", fmt.Errorf("the answer has none of the configured id keys (%s)", strings.Join(keys, ", "))
}
