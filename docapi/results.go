package docapi

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
)

// Results is the answer of GET /v1/documents/{id}/results: what each vendor made of the document.
// Results holds one entry per vendor that completed or failed it; vendors still at work (or not
// started yet) are in Pending. A document without results yet answers with an empty Results.
type Results struct {
	ID       string                   `json:"id"`
	Status   events.Status            `json:"status"`
	Filename string                   `json:"filename"`
	Results  map[string]*VendorResult `json:"results"`
	Pending  []string                 `json:"pending"`
}

// VendorResult is one vendor's result: the data of its completed event (fields, text, result
// files), and the failures it reported on the way (a document may fail, be retried and complete).
type VendorResult struct {
	Status      events.Status  `json:"status"` // completed or failed
	VendorRef   string         `json:"vendor_ref,omitempty"`
	CompletedAt time.Time      `json:"completed_at,omitzero"`
	Fields      []events.Field `json:"fields,omitempty"`
	Text        string         `json:"text,omitempty"`
	Artifacts   []ArtifactLink `json:"artifacts,omitempty"`
	// ResultObjectKey: the result was too large for its event; text and the vendor's JSON (and
	// the fields, when even they were too many) are in this Object Store object.
	ResultObjectKey string    `json:"result_object_key,omitempty"`
	Failures        []Failure `json:"failures,omitempty"`
	// Unavailable says why some of the data could not be read: its event is no longer in the
	// stream (older than nats.stream.max_age).
	Unavailable string `json:"unavailable,omitempty"`
}

// ArtifactLink is a result file and where to download it.
type ArtifactLink struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	URL         string `json:"url"`
}

// Failure is one failed event of a vendor.
type Failure struct {
	Error     string    `json:"error"`
	Permanent bool      `json:"permanent"`
	Attempts  int       `json:"attempts,omitempty"`
	VendorRef string    `json:"vendor_ref,omitempty"`
	FailedAt  time.Time `json:"failed_at"`
}

// ArtifactURL is where a document's result file is downloaded.
func ArtifactURL(id, vendor, name string) string {
	return "/v1/documents/" + id + "/artifacts/" + url.PathEscape(name) + "?vendor=" + url.QueryEscape(vendor)
}

func (d *API) results(c echo.Context) error {
	if err := onlyParams(c); err != nil {
		return err
	}
	doc, err := d.lookup(c)
	if err != nil {
		return err
	}
	res, err := d.collect(c.Request().Context(), doc)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// collect reads the completed and failed events the document's history names.
func (d *API) collect(ctx context.Context, doc events.Document) (Results, error) {
	res := Results{ID: doc.ID, Status: doc.Status, Filename: doc.Filename, Results: map[string]*VendorResult{}, Pending: []string{}}
	vendors := make([]string, 0, len(doc.Vendors))
	for name := range doc.Vendors {
		vendors = append(vendors, name)
	}
	for _, name := range doc.Chosen {
		if _, ok := doc.Vendors[name]; !ok {
			vendors = append(vendors, name)
		}
	}
	slices.Sort(vendors)
	for _, name := range vendors {
		vs := doc.Vendors[name]
		if vs == nil || vs.Status != events.StatusCompleted && vs.Status != events.StatusFailed {
			res.Pending = append(res.Pending, name)
			continue
		}
		vr := &VendorResult{Status: vs.Status, VendorRef: vs.Ref}
		res.Results[name] = vr
		if completed := lastEntry(doc, name, events.Completed); completed != nil && vs.Status == events.StatusCompleted {
			if err := d.readCompleted(ctx, doc.ID, name, *completed, vr); err != nil {
				return res, err
			}
		}
		for _, h := range doc.History {
			if h.Vendor != name || h.Type != events.Failed.Type() {
				continue
			}
			ev, err := d.find(ctx, events.Failed, name, h)
			if errors.Is(err, events.ErrEventNotFound) {
				vr.Failures = append(vr.Failures, Failure{Error: vs.Error, FailedAt: h.Time})
				vr.Unavailable = unavailable
				continue
			}
			if err != nil {
				return res, err
			}
			var fd events.FailedData
			if err := ev.DecodeData(&fd); err != nil {
				return res, err
			}
			vr.Failures = append(vr.Failures, Failure{Error: fd.Error, Permanent: fd.Permanent, Attempts: fd.Attempts,
				VendorRef: fd.VendorRef, FailedAt: fd.FailedAt})
		}
	}
	return res, nil
}

const unavailable = "the event is no longer in the event stream (kept for nats.stream.max_age)"

func (d *API) readCompleted(ctx context.Context, id, vendor string, h events.HistoryEntry, vr *VendorResult) error {
	ev, err := d.find(ctx, events.Completed, vendor, h)
	if errors.Is(err, events.ErrEventNotFound) {
		vr.CompletedAt, vr.Unavailable = h.Time, unavailable
		return nil
	}
	if err != nil {
		return err
	}
	var cd events.CompletedData
	if err := ev.DecodeData(&cd); err != nil {
		return err
	}
	vr.VendorRef, vr.CompletedAt, vr.Fields, vr.Text, vr.ResultObjectKey = cd.VendorRef, cd.CompletedAt, cd.Fields, cd.Text, cd.ResultObjectKey
	for _, a := range cd.Artifacts {
		vr.Artifacts = append(vr.Artifacts, ArtifactLink{Name: a.Name, ContentType: a.ContentType, Size: a.Size,
			URL: ArtifactURL(id, vendor, a.Name)})
	}
	return nil
}

func (d *API) find(ctx context.Context, k events.Kind, vendor string, h events.HistoryEntry) (events.StreamEvent, error) {
	subject, err := d.bus.Names().Subject(k, vendor)
	if err != nil {
		return events.StreamEvent{}, err
	}
	return d.bus.FindEvent(ctx, subject, h)
}

// maxArtifactName bounds an artifact name in a URL: stored names are at most 128 bytes.
const maxArtifactName = 255

// artifact streams a result file: GET /v1/documents/{id}/artifacts/{name}[?vendor=V]. The name
// is only ever compared with the names the document's completed events list; the object read is
// the one such an event names, so no name can reach another object.
func (d *API) artifact(c echo.Context) error {
	if err := onlyParams(c, "vendor"); err != nil {
		return err
	}
	// echo routes on the raw path, when Go kept one (the path had escapes of its own: %2F, %25),
	// and then hands the parameter over escaped; otherwise it is decoded already.
	name, err := c.Param("name"), error(nil)
	if c.Request().URL.RawPath != "" {
		name, err = url.PathUnescape(name)
	}
	if err != nil || name == "" || len(name) > maxArtifactName || !utf8.ValidString(name) ||
		strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == '/' || r == '\\' }) >= 0 {
		return httpapi.NewProblem(http.StatusBadRequest, "name: %q cannot be the name of a result file", truncate(name, 80))
	}
	vendor := c.QueryParam("vendor")
	if c.QueryParams().Has("vendor") && !events.ValidToken(vendor) {
		return httpapi.NewProblem(http.StatusBadRequest, "vendor: %q cannot be a vendor name", truncate(vendor, 80))
	}
	doc, err := d.lookup(c)
	if err != nil {
		return err
	}
	if vendor != "" {
		if vs := doc.Vendors[vendor]; vs == nil || vs.Status != events.StatusCompleted {
			return httpapi.NewProblem(http.StatusNotFound, "document %s has no result from vendor %s", doc.ID, vendor)
		}
	}
	ctx := c.Request().Context()
	type match struct {
		vendor string
		a      events.Artifact
	}
	var found []match
	var aged []string // vendors whose completed event is no longer in the stream
	for _, v := range sortedVendors(doc) {
		if vendor != "" && v != vendor || doc.Vendors[v].Status != events.StatusCompleted {
			continue
		}
		h := lastEntry(doc, v, events.Completed)
		if h == nil {
			continue
		}
		ev, err := d.find(ctx, events.Completed, v, *h)
		if errors.Is(err, events.ErrEventNotFound) {
			aged = append(aged, v)
			continue
		}
		if err != nil {
			return err
		}
		var cd events.CompletedData
		if err := ev.DecodeData(&cd); err != nil {
			return err
		}
		for _, a := range cd.Artifacts {
			if a.Name == name {
				found = append(found, match{v, a})
			}
		}
	}
	switch {
	case len(found) == 0 && len(aged) > 0:
		return httpapi.NewProblem(http.StatusGone, "the results of document %s from %s are no longer in the event stream (kept for nats.stream.max_age)",
			doc.ID, strings.Join(aged, ", "))
	case len(found) == 0:
		return httpapi.NewProblem(http.StatusNotFound, "document %s has no result file named %q", doc.ID, truncate(name, 80))
	case len(found) > 1:
		var vs []string
		for _, f := range found {
			vs = append(vs, f.vendor)
		}
		return httpapi.NewProblem(http.StatusConflict, "vendors %s each have a result file named %q: say which with ?vendor=",
			strings.Join(vs, ", "), name)
	}
	a := found[0].a
	r, info, err := d.bus.Blobs().Open(ctx, a.ObjectKey)
	if errors.Is(err, events.ErrBlobNotFound) {
		return httpapi.NewProblem(http.StatusGone, "result file %q of document %s is no longer stored", name, doc.ID)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	d.stream(c, r, info, contentTypeOr(a.ContentType), attachmentName(a.Name, "result"))
	return nil
}

// stream sends stored bytes as a download; headers first, then the bytes as they come.
func (d *API) stream(c echo.Context, r io.Reader, info events.BlobInfo, contentType, filename string) {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, contentType)
	h.Set(echo.HeaderContentLength, strconv.FormatInt(info.Size, 10))
	disp := mime.FormatMediaType("attachment", map[string]string{"filename": filename})
	if disp == "" {
		disp = "attachment"
	}
	h.Set(echo.HeaderContentDisposition, disp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("ETag", strconv.Quote("sha256:"+info.SHA256))
	c.Response().WriteHeader(http.StatusOK)
	if c.Request().Method == http.MethodHead {
		return
	}
	// A digest mismatch shows up as a read error here; the status is sent already, so the client
	// sees a short body, which its Content-Length check catches.
	if _, err := io.Copy(c.Response(), r); err != nil {
		d.log.WarnContext(c.Request().Context(), "download ended early", "doc_id", c.Get(httpapi.DocIDKey), "key", info.Key, "err", err)
	}
}

// contentTypeOr keeps a stored content type only when it is one (a vendor's says what it says).
func contentTypeOr(ct string) string {
	if mt, params, err := mime.ParseMediaType(ct); err == nil {
		return mime.FormatMediaType(mt, params)
	}
	return "application/octet-stream"
}

// attachmentName makes a name safe for Content-Disposition: no path, control or invisible
// formatting characters, at most 200 bytes.
func attachmentName(name, fallback string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError || r == '"' {
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, ""))
	name = strings.Trim(name, " .")
	for len(name) > 200 {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	if name == "" {
		return fallback
	}
	return name
}

// lastEntry is the document's latest event of kind k from vendor (nil: none).
func lastEntry(doc events.Document, vendor string, k events.Kind) *events.HistoryEntry {
	var last *events.HistoryEntry
	for i, h := range doc.History {
		if h.Vendor == vendor && h.Type == k.Type() {
			last = &doc.History[i]
		}
	}
	return last
}

func sortedVendors(doc events.Document) []string {
	out := make([]string, 0, len(doc.Vendors))
	for v := range doc.Vendors {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// onlyParams refuses query parameters other than those named, and any given twice: a mistyped
// parameter should not be silently ignored.
func onlyParams(c echo.Context, allowed ...string) error {
	q := c.QueryParams()
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !slices.Contains(allowed, k) {
			return httpapi.NewProblem(http.StatusBadRequest, "%s: unknown parameter (this endpoint takes %s)", truncate(k, 40), paramList(allowed))
		}
		if len(q[k]) > 1 {
			return httpapi.NewProblem(http.StatusBadRequest, "%s: given %d times; give it once", k, len(q[k]))
		}
	}
	return nil
}

func paramList(allowed []string) string {
	if len(allowed) == 0 {
		return "none"
	}
	return strings.Join(allowed, ", ")
}
