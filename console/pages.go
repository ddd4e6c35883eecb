package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/docindex"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
)

// noIndex is shown where a list would be when the document index is turned off.
const noIndex = "The document index is off (index.enabled: false), so there are no lists or counts here."

func (c *Console) list(ctx context.Context, q docindex.Query) (docindex.Page, []events.Document, error) {
	page, err := c.cfg.Index.List(ctx, q)
	if err != nil {
		return page, nil, err
	}
	docs := make([]events.Document, 0, len(page.Documents))
	for _, raw := range page.Documents {
		var d events.Document
		if json.Unmarshal(raw, &d) == nil {
			docs = append(docs, d)
		}
	}
	return page, docs, nil
}

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// hourBar is one hour of the overview's chart.
type hourBar struct {
	Label          string
	N              int64
	X, Y, W, H     int
	LabelX, LabelY int
	ShowLabel      bool
}

type overviewData struct {
	Status   map[string]int64
	Vendor   map[string]int64
	Total    int64
	Bars     []hourBar
	Peak     int64
	Last24   int64
	Failures []events.Document
	Behind   uint64
	NoIndex  string
}

// chart geometry: 24 bars in an SVG of chartW × chartH, labels below.
const (
	chartW, chartH, barGap = 720, 160, 4
	labelH                 = 18
)

func (c *Console) overview(ec echo.Context, s *session) error {
	d := overviewData{}
	if c.cfg.Index == nil {
		d.NoIndex = noIndex
		return c.render(ec, http.StatusOK, "overview", pageFor(s, "Overview", "overview", "overview", d))
	}
	ctx := ec.Request().Context()
	page, _, err := c.list(ctx, docindex.Query{Limit: 1})
	if err != nil {
		return c.failed(ec, s, err)
	}
	d.Status, d.Vendor, d.Total, d.Behind = page.Counts.Status, page.Counts.Vendor, total(page.Counts.Status), page.Index.Behind
	_, d.Failures, err = c.list(ctx, docindex.Query{Status: events.StatusFailed, Limit: 10})
	if err != nil {
		return c.failed(ec, s, err)
	}
	// Documents received per hour: whole hours, which the index counts from its per-hour table.
	now := c.cfg.Now().UTC()
	end := now.Truncate(time.Hour).Add(time.Hour)
	counts := make([]int64, 24)
	for i := range counts {
		from := end.Add(time.Duration(i-24) * time.Hour)
		p, _, err := c.list(ctx, docindex.Query{Since: from, Until: from.Add(time.Hour), Limit: 1})
		if err != nil {
			return c.failed(ec, s, err)
		}
		counts[i] = total(p.Counts.Status)
		d.Last24 += counts[i]
		d.Peak = max(d.Peak, counts[i])
	}
	bw := chartW / 24
	for i, n := range counts {
		h := 0
		if d.Peak > 0 {
			h = int(n * (chartH - 2) / d.Peak)
		}
		if n > 0 && h < 2 {
			h = 2 // a non-empty hour is never invisible
		}
		from := end.Add(time.Duration(i-24) * time.Hour)
		d.Bars = append(d.Bars, hourBar{Label: from.Format("15:04") + "–" + from.Add(time.Hour).Format("15:04") + " UTC",
			N: n, X: i*bw + barGap/2, Y: chartH - h, W: bw - barGap, H: h,
			LabelX: i * bw, LabelY: chartH + labelH - 4, ShowLabel: i%6 == 0})
	}
	return c.render(ec, http.StatusOK, "overview", pageFor(s, "Overview", "overview", "overview", d))
}

// failed renders an error page for a problem reading the index or NATS.
func (c *Console) failed(ec echo.Context, s *session, err error) error {
	var bq *docindex.BadQueryError
	if errors.As(err, &bq) {
		v := pageFor(s, "Bad request", "", "", nil)
		v.Error = bq.Error()
		return c.render(ec, http.StatusBadRequest, "error", v)
	}
	c.log.Error("console page failed", "path", ec.Request().URL.Path, "err", err)
	v := pageFor(s, "Error", "", "", nil)
	v.Error = "The page could not be made: the index or NATS did not answer. The log has the details."
	return c.render(ec, http.StatusInternalServerError, "error", v)
}

// filterKeys are the list filters the documents page takes (those of GET /v1/documents).
var filterKeys = []string{"status", "vendor", "source", "route", "q", "since", "until"}

type documentsData struct {
	Filters  map[string]string
	Statuses []string
	Vendors  []string
	Docs     []events.Document
	Counts   docindex.Counts
	Matching int64
	Next     string // URL of the next page; "" on the last
	First    string // URL of the first page when this is not it
	Behind   uint64
	NoIndex  string
}

func (c *Console) documents(ec echo.Context, s *session) error {
	d := documentsData{Filters: map[string]string{},
		Statuses: []string{"received", "submitted", "completed", "failed", "rejected"}}
	for _, v := range c.cfg.Vendors {
		d.Vendors = append(d.Vendors, v.Name)
	}
	if c.cfg.Index == nil {
		d.NoIndex = noIndex
		return c.render(ec, http.StatusOK, "documents", pageFor(s, "Documents", "documents", "", d))
	}
	// The form sends every field, empty ones too: those mean "any". Everything else goes to the
	// index's own parser, which refuses what GET /v1/documents refuses, in the same words.
	params := url.Values{}
	for k, vals := range ec.QueryParams() {
		if len(vals) == 1 && vals[0] == "" {
			continue
		}
		params[k] = vals
	}
	q, err := docindex.ParseQuery(params, c.cfg.Now())
	if err != nil {
		return c.failed(ec, s, err)
	}
	page, docs, err := c.list(ec.Request().Context(), q)
	if err != nil {
		return c.failed(ec, s, err)
	}
	for _, k := range filterKeys {
		d.Filters[k] = params.Get(k)
	}
	d.Docs, d.Counts, d.Matching, d.Behind = docs, page.Counts, total(page.Counts.Status), page.Index.Behind
	keep := url.Values{}
	for _, k := range append(slices.Clone(filterKeys), "limit") {
		if v := params.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	if page.NextCursor != nil {
		next := url.Values{}
		for k, v := range keep {
			next[k] = v
		}
		next.Set("cursor", *page.NextCursor)
		d.Next = "/ui/documents?" + next.Encode()
	}
	if q.Cursor != "" {
		d.First = "/ui/documents?" + keep.Encode()
	}
	return c.render(ec, http.StatusOK, "documents", pageFor(s, "Documents", "documents", "documents", d))
}

// vendorSlot is one vendor's part in a document, with its results.
type vendorSlot struct {
	Name     string
	State    events.VendorState
	Result   *events.CompletedData
	ResultOK bool   // the completed event was found
	Problem  string // why the result could not be read
	CanRetry bool
}

type documentData struct {
	Doc     events.Document
	Slots   []vendorSlot
	Preview string // "img", "frame" or "" (no inline preview for this type)
	Meta    []kv
}

type kv struct{ K, V string }

// loadDocument reads the document the path names; when ok is false the answer (404, 500) is
// made and err is what to return.
func (c *Console) loadDocument(ec echo.Context, s *session) (doc events.Document, ok bool, err error) {
	id := ec.Param("id")
	ec.Set(httpapi.DocIDKey, id)
	doc, err = c.bus.States().Get(ec.Request().Context(), id)
	if errors.Is(err, events.ErrUnknownDocument) {
		v := pageFor(s, "Not found", "documents", "", nil)
		v.Error = "There is no document with this id."
		return doc, false, c.render(ec, http.StatusNotFound, "error", v)
	}
	if err != nil {
		return doc, false, c.failed(ec, s, err)
	}
	return doc, true, nil
}

func (c *Console) document(ec echo.Context, s *session) error {
	doc, ok, err := c.loadDocument(ec, s)
	if !ok {
		return err
	}
	ctx := ec.Request().Context()
	if c.cfg.Enrich != nil {
		c.cfg.Enrich(ctx, &doc)
	}
	d := documentData{Doc: doc, Preview: previewKind(doc.ContentType)}
	for _, k := range sortedStrings(doc.Metadata) {
		d.Meta = append(d.Meta, kv{k, doc.Metadata[k]})
	}
	results := c.results(ctx, doc)
	for _, name := range sortedStrings(doc.Vendors) {
		vs := doc.Vendors[name]
		slot := vendorSlot{Name: name, State: *vs, CanRetry: c.cfg.Retry != nil && vs.Status == events.StatusFailed}
		if r, ok := results[name]; ok {
			slot.Result, slot.ResultOK, slot.Problem = r.data, r.data != nil, r.problem
		}
		d.Slots = append(d.Slots, slot)
	}
	v := pageFor(s, doc.Filename, "documents", "document:"+doc.ID, d)
	if r := ec.QueryParam("retried"); r != "" && events.ValidToken(r) {
		v.Flash = "A new attempt at " + r + " was requested."
	}
	return c.render(ec, http.StatusOK, "document", v)
}

func sortedStrings[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// previewKind says how a type is shown inline: only types a browser shows without running
// anything of the document's (no SVG, no HTML), and only those a browser can show at all.
func previewKind(contentType string) string {
	switch mediaType(contentType) {
	case "image/png", "image/jpeg", "image/gif":
		return "img"
	case "application/pdf", "text/plain":
		return "frame"
	}
	return ""
}

func (c *Console) retry(ec echo.Context, s *session) error {
	id, vendor := ec.Param("id"), ec.Request().PostForm.Get("vendor")
	if !events.ValidDocumentID(id) {
		return problem(http.StatusNotFound, "there is no document with this id")
	}
	if !events.ValidToken(vendor) {
		return problem(http.StatusBadRequest, "vendor %q is not a vendor name", clip(vendor))
	}
	if c.cfg.Retry == nil {
		return problem(http.StatusNotImplemented, "retrying is not available in this build")
	}
	ec.Set(httpapi.DocIDKey, id)
	if err := c.cfg.Retry(ec.Request().Context(), id, vendor); err != nil {
		var p *httpapi.Problem
		if errors.As(err, &p) {
			return p
		}
		if errors.Is(err, events.ErrUnknownDocument) {
			return problem(http.StatusNotFound, "there is no document with this id")
		}
		c.log.Warn("console retry failed", "doc_id", id, "vendor", vendor, "err", err)
		return problem(http.StatusConflict, "the retry was not started: %v", err)
	}
	c.log.Info("console retry requested", "doc_id", id, "vendor", vendor, "client", s.Client)
	return ec.Redirect(http.StatusSeeOther, "/ui/documents/"+url.PathEscape(id)+"?retried="+url.QueryEscape(vendor))
}

func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}

type sourceRow struct {
	Source
	Holder   string
	HeldHere bool
	Status   string
	Problem  string // the current error
	// Reported is when the lease holder last wrote the state shown (zero: this instance's own).
	Reported    time.Time
	Since       time.Time
	LastError   string
	LastErrorAt time.Time
	LastPass    time.Time
	DocsToday   int64
	Counted     bool
	// LastDocument is when the newest document from it was received.
	LastDocument time.Time
}

func (c *Console) sourcesPage(ec echo.Context, s *session) error {
	ctx := ec.Request().Context()
	leases, leaseErr := c.leases(ctx)
	midnight := c.cfg.Now().UTC().Truncate(24 * time.Hour)
	var rows []sourceRow
	for _, src := range c.cfg.Sources {
		r := sourceRow{Source: src}
		switch {
		case src.Lease == "":
			r.Holder, r.HeldHere = "every instance", true
		case errors.Is(leaseErr, jetstream.ErrBucketNotFound):
			r.Holder = "nobody (no instance holds its lease right now)"
		case leaseErr != nil:
			r.Holder = "unknown (the leases bucket does not answer)"
		default:
			if e, err := leases.Get(ctx, src.Lease); err == nil {
				r.Holder = string(e.Value())
				r.HeldHere = r.Holder == c.cfg.Self
			} else if errors.Is(err, jetstream.ErrKeyNotFound) {
				r.Holder = "nobody (no instance holds its lease right now)"
			} else {
				r.Holder = "unknown (" + err.Error() + ")"
			}
		}
		st, reported := sourceStatus{}, false
		if src.Lease != "" {
			st, reported = c.readStatus(ctx, src.Lease)
			r.LastError, r.LastErrorAt, r.LastPass = st.LastError, st.LastErrorAt, st.LastPass
		}
		if r.HeldHere && src.LastPass != nil {
			r.LastPass = src.LastPass() // this instance's own watcher: newer than its last report
		}
		switch {
		case src.Lease == "":
			r.Status = "taking uploads"
		case r.HeldHere && src.Health != nil:
			if err := src.Health(); err != nil {
				r.Status, r.Problem = "failing", err.Error()
			} else {
				r.Status = "working"
			}
			if reported && st.Instance == c.cfg.Self && st.Working == (r.Problem == "") {
				r.Since = st.Since
			}
		case reported && st.Instance == r.Holder:
			r.Status, r.Problem, r.Reported, r.Since = "working", st.Error, st.CheckedAt, st.Since
			if !st.Working {
				r.Status = "failing"
			}
		case r.HeldHere:
			r.Status = "unknown"
		default:
			r.Status = "not reported yet by the instance that holds it"
		}
		if c.cfg.Index != nil {
			today, _, err1 := c.list(ctx, docindex.Query{SourceKind: src.Kind, SourceName: src.Name, Since: midnight, Limit: 1})
			_, last, err2 := c.list(ctx, docindex.Query{SourceKind: src.Kind, SourceName: src.Name, Limit: 1})
			if err1 == nil && err2 == nil {
				r.DocsToday, r.Counted = total(today.Counts.Status), true
				if len(last) > 0 {
					r.LastDocument = last[0].ReceivedAt
				}
			}
		}
		rows = append(rows, r)
	}
	return c.render(ec, http.StatusOK, "sources", pageFor(s, "Sources", "sources", "sources",
		map[string]any{"Rows": rows, "Self": c.cfg.Self, "Since": midnight}))
}

// leases binds the leases bucket without provisioning it: the sources create it with their
// settings, and a deployment without mailboxes or folders has none.
func (c *Console) leases(ctx context.Context) (jetstream.KeyValue, error) {
	return c.bus.JetStream().KeyValue(ctx, c.bus.Names().Bucket("leases"))
}

type vendorRow struct {
	Vendor
	InFlight, Failed24h int64
	Counted             bool
}

func (c *Console) vendorsPage(ec echo.Context, s *session) error {
	ctx := ec.Request().Context()
	since := c.cfg.Now().Add(-24 * time.Hour)
	var rows []vendorRow
	for _, v := range c.cfg.Vendors {
		r := vendorRow{Vendor: v}
		if c.cfg.Index != nil {
			all, _, err1 := c.list(ctx, docindex.Query{Vendor: v.Name, Status: events.StatusSubmitted, Limit: 1})
			day, _, err2 := c.list(ctx, docindex.Query{Vendor: v.Name, Status: events.StatusFailed, Since: since, Limit: 1})
			if err1 == nil && err2 == nil {
				r.InFlight, r.Failed24h, r.Counted = total(all.Counts.Status), total(day.Counts.Status), true
			}
		}
		rows = append(rows, r)
	}
	return c.render(ec, http.StatusOK, "vendors", pageFor(s, "Vendors", "vendors", "vendors", map[string]any{"Rows": rows}))
}
