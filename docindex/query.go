package docindex

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
)

// Limits of a list request.
const (
	DefaultLimit = 50
	MaxLimit     = 500
	maxQ         = 200 // characters of q
	maxQTerms    = 8
)

// Query selects documents. Zero fields match everything; the filters combine with AND.
type Query struct {
	Status     events.Status
	Vendor     string // documents sent (or to be sent) to this vendor
	SourceKind string // http, imap, webdav
	SourceName string // with SourceKind: that configured source
	Route      string
	Q          string    // words (3 characters or more) each found in the filename or a metadata value (substring, any case)
	Since      time.Time // received at or after
	Until      time.Time // received before
	Limit      int       // default DefaultLimit, at most MaxLimit
	Cursor     string    // next_cursor of the previous page
}

// BadQueryError is a list request the index cannot answer as asked; its message is a sentence
// for the person who wrote the request.
type BadQueryError struct{ msg string }

func (e *BadQueryError) Error() string { return e.msg }

func bad(format string, args ...any) error { return &BadQueryError{msg: fmt.Sprintf(format, args...)} }

// ParseQuery reads the query parameters of GET /v1/documents: status, vendor, source (kind or
// kind/name), route, q, since and until (RFC 3339, or a duration back from now such as 2h or 30d),
// limit and cursor. Anything else, or a parameter given twice, is an error.
func ParseQuery(v url.Values, now time.Time) (Query, error) {
	q := Query{Limit: DefaultLimit}
	for _, key := range slices.Sorted(maps.Keys(v)) { // in order: the same request, the same answer
		vals := v[key]
		if len(vals) > 1 {
			return Query{}, bad("parameter %q is given %d times; give it once", key, len(vals))
		}
		if err := q.set(key, vals[0], now); err != nil {
			return Query{}, err
		}
	}
	return q, nil
}

func (q *Query) set(key, val string, now time.Time) error {
	var err error
	switch key {
	case "status":
		switch s := events.Status(val); s {
		case events.StatusReceived, events.StatusSubmitted, events.StatusCompleted, events.StatusFailed, events.StatusRejected:
			q.Status = s
		default:
			return bad("status %q is not one of received, submitted, completed, failed, rejected", clip(val))
		}
	case "vendor":
		q.Vendor, err = token("vendor", val)
	case "route":
		q.Route, err = token("route", val)
	case "source":
		kind, name, _ := strings.Cut(val, "/")
		if q.SourceKind, err = token("source", kind); err == nil && name != "" {
			q.SourceName, err = token("source name", name)
		}
	case "q":
		q.Q, err = text(val)
	case "since":
		q.Since, err = instant("since", val, now)
	case "until":
		q.Until, err = instant("until", val, now)
	case "limit":
		n, perr := strconv.Atoi(val)
		if perr != nil || n < 1 || n > MaxLimit {
			return bad("limit %q must be a whole number from 1 to %d", clip(val), MaxLimit)
		}
		q.Limit = n
	case "cursor":
		if _, _, err = decodeCursor(val); err == nil {
			q.Cursor = val
		}
	default:
		return bad("unknown parameter %q; use status, vendor, source, route, q, since, until, limit or cursor", clip(key))
	}
	return err
}

func token(what, val string) (string, error) {
	if !events.ValidToken(val) {
		return "", bad("%s %q is not a name (1-64 characters of a-z, 0-9, _ or -)", what, clip(val))
	}
	return val, nil
}

func text(val string) (string, error) {
	if !utf8.ValidString(val) || strings.ContainsRune(val, 0) {
		return "", bad("q must be UTF-8 text")
	}
	if utf8.RuneCountInString(val) > maxQ {
		return "", bad("q is longer than %d characters", maxQ)
	}
	words := strings.Fields(val)
	if len(words) > maxQTerms {
		return "", bad("q has more than %d words", maxQTerms)
	}
	for _, w := range words {
		// The text index is made of three-character pieces: a shorter word could only be
		// looked for by reading every document.
		if utf8.RuneCountInString(w) < 3 {
			return "", bad("q: the word %q is too short; search words need at least 3 characters", clip(w))
		}
	}
	return val, nil
}

// instant reads an RFC 3339 time, or a duration back from now (2h, 90m, 30d).
func instant(what, val string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, val); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(val)
	if err != nil || val == "" {
		return time.Time{}, bad("%s %q is neither an RFC 3339 time (2025-01-31T08:00:00Z) nor a duration back from now (2h, 30d)", what, clip(val))
	}
	return now.Add(-d), nil
}

func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}

// A cursor is where a page ended: the sort time and id of its last document, opaque to clients.
func encodeCursor(sortAt int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(sortAt, 10) + "|" + id))
}

func decodeCursor(c string) (int64, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		at, id, ok := strings.Cut(string(raw), "|")
		n, perr := strconv.ParseInt(at, 10, 64)
		if ok && perr == nil && events.ValidDocumentID(id) {
			return n, id, nil
		}
	}
	return 0, "", bad("cursor %q is not one this server gave out; start again without it", clip(c))
}

// Page is one answer to a list request.
type Page struct {
	Documents []json.RawMessage `json:"documents"` // events.Document as GET /v1/documents/{id} has it
	// NextCursor continues the list; nil on the last page.
	NextCursor *string  `json:"next_cursor"`
	Counts     Counts   `json:"counts"`
	Index      Progress `json:"index"`
}

// Counts are the documents matching the filters (all pages), by status and by vendor; a
// document sent to two vendors counts once for each.
type Counts struct {
	Status map[string]int64 `json:"status"`
	Vendor map[string]int64 `json:"vendor"`
}

// List answers a query from the index as far as it is (see Page.Index): it never waits for the
// index to catch up.
func (ix *Index) List(ctx context.Context, q Query) (Page, error) {
	if q.Limit <= 0 || q.Limit > MaxLimit {
		q.Limit = DefaultLimit
	}
	p := Page{Documents: []json.RawMessage{}, Index: ix.Progress()}
	where, args, err := q.filters()
	if err != nil {
		return Page{}, err
	}
	lo, hi := q.bounds()
	pageWhere, pageArgs := within(where, args, lo, hi)
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return Page{}, err
		}
		pageWhere, pageArgs = append(pageWhere, "(d.sort_at, d.id) < (?, ?)"), append(pageArgs, at, id)
	}
	if err := ix.page(ctx, &p, q.Limit, pageWhere, pageArgs); err != nil {
		return Page{}, err
	}
	if p.Counts, err = ix.counts(ctx, q, where, args); err != nil {
		return Page{}, err
	}
	return p, nil
}

// filters turns the query into SQL conditions on docs d, every value a parameter.
func (q Query) filters() ([]string, []any, error) {
	var where []string
	var args []any
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	if q.Status != "" {
		add("d.status = ?", string(q.Status))
	}
	if q.SourceKind != "" {
		add("d.source_kind = ?", q.SourceKind)
	}
	if q.SourceName != "" {
		add("d.source_name = ?", q.SourceName)
	}
	if q.Route != "" {
		add("d.route = ?", q.Route)
	}
	if q.Vendor != "" {
		add("instr(d.vendors, ?) > 0", ","+q.Vendor+",")
	}
	if q.Q != "" {
		// One FTS5 query for all the words (implicit AND), each quoted as an FTS5 string so that
		// nothing in q is FTS syntax; the value is a parameter, so nothing in it is SQL either.
		var phrases []string
		for _, term := range strings.Fields(q.Q) {
			phrases = append(phrases, `"`+strings.ReplaceAll(term, `"`, `""`)+`"`)
		}
		add("d.rowid IN (SELECT rowid FROM docs_text WHERE docs_text MATCH ?)", strings.Join(phrases, " "))
	}
	return where, args, nil
}

// bounds is the query's time range in Unix ns, [lo, hi); unbounded ends are the extremes.
func (q Query) bounds() (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	if !q.Since.IsZero() {
		lo = q.Since.UnixNano()
	}
	if !q.Until.IsZero() {
		hi = q.Until.UnixNano()
	}
	return lo, hi
}

// within adds the time range [lo, hi) to conditions (copies: the callers' slices stay as they were).
func within(where []string, args []any, lo, hi int64) ([]string, []any) {
	where, args = slices.Clone(where), slices.Clone(args)
	if lo != math.MinInt64 {
		where, args = append(where, "d.sort_at >= ?"), append(args, lo)
	}
	if hi != math.MaxInt64 {
		where, args = append(where, "d.sort_at < ?"), append(args, hi)
	}
	return where, args
}

func whereSQL(where []string) string {
	if len(where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(where, " AND ")
}

func (ix *Index) page(ctx context.Context, p *Page, limit int, where []string, args []any) error {
	rows, err := ix.db.QueryContext(ctx, `SELECT d.sort_at, d.id, d.doc FROM docs d`+whereSQL(where)+
		` ORDER BY d.sort_at DESC, d.id DESC LIMIT ?`, append(args, limit+1)...)
	if err != nil {
		return fmt.Errorf("list documents: %w", err)
	}
	defer rows.Close()
	var lastAt int64
	var lastID string
	for rows.Next() {
		if len(p.Documents) == limit {
			c := encodeCursor(lastAt, lastID)
			p.NextCursor = &c
			break
		}
		var body []byte
		if err := rows.Scan(&lastAt, &lastID, &body); err != nil {
			return fmt.Errorf("list documents: %w", err)
		}
		p.Documents = append(p.Documents, json.RawMessage(body))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list documents: %w", err)
	}
	return nil
}

// counts counts the documents the filters select, all in queries grouped by status and vendor
// set (one pass gives both counts). Without q, every other filter is on a column the aggregates
// are kept by: agg answers a list without a time range by summing a few rows, and agg_hour the
// whole hours of a time range, the documents of the partial hours at its ends being counted
// from the covering time index. With q the selected documents are counted one by one.
func (ix *Index) counts(ctx context.Context, q Query, where []string, args []any) (Counts, error) {
	c := Counts{Status: map[string]int64{}, Vendor: map[string]int64{}}
	add := func(status, vendors string, n int64) {
		if n <= 0 {
			return
		}
		c.Status[status] += n
		for _, v := range strings.Split(strings.Trim(vendors, ","), ",") {
			if v != "" {
				c.Vendor[v] += n
			}
		}
	}
	scan := func(lo, hi int64) error {
		w, a := within(where, args, lo, hi)
		return ix.group(ctx, `SELECT d.status, d.vendors, count(*) FROM docs d`+whereSQL(w)+` GROUP BY d.status, d.vendors`, a, add)
	}
	lo, hi := q.bounds()
	switch {
	case q.Q != "":
		return c, scan(lo, hi)
	case lo == math.MinInt64 && hi == math.MaxInt64:
		return c, ix.group(ctx, `SELECT d.status, d.vendors, sum(d.n) FROM agg d`+whereSQL(where)+` GROUP BY d.status, d.vendors`, args, add)
	}
	// Whole hours [h1, h2) from agg_hour, the rest from the documents.
	h1, h2 := ceilHour(lo), floorHour(hi)
	if h1 >= h2 {
		return c, scan(lo, hi)
	}
	w := append(slices.Clone(where), "d.hour >= ?", "d.hour < ?")
	a := append(slices.Clone(args), h1, h2)
	if err := ix.group(ctx, `SELECT d.status, d.vendors, sum(d.n) FROM agg_hour d`+whereSQL(w)+` GROUP BY d.status, d.vendors`, a, add); err != nil {
		return Counts{}, err
	}
	if lo != math.MinInt64 {
		if err := scan(lo, h1*hourNs); err != nil {
			return Counts{}, err
		}
	}
	if hi != math.MaxInt64 {
		if err := scan(h2*hourNs, hi); err != nil {
			return Counts{}, err
		}
	}
	return c, nil
}

const hourNs = int64(time.Hour)

// hourOf is the hour (since 1970) a sort time falls in.
func hourOf(ns int64) int64 { return floorHour(ns) }

func floorHour(ns int64) int64 {
	if ns == math.MaxInt64 {
		return math.MaxInt64 / hourNs
	}
	h := ns / hourNs
	if ns%hourNs < 0 {
		h--
	}
	return h
}

func ceilHour(ns int64) int64 {
	if ns == math.MinInt64 {
		return math.MinInt64 / hourNs
	}
	h := floorHour(ns)
	if h*hourNs < ns {
		h++
	}
	return h
}

func (ix *Index) group(ctx context.Context, query string, args []any, fn func(status, vendors string, n int64)) error {
	rows, err := ix.db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("count documents: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var status, vendors string
		var n int64
		if err := rows.Scan(&status, &vendors, &n); err != nil {
			return fmt.Errorf("count documents: %w", err)
		}
		fn(status, vendors, n)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("count documents: %w", err)
	}
	return nil
}
