package docapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
)

// RejectedList is the answer of GET /v1/rejected: inputs refused at intake, newest first.
type RejectedList struct {
	Rejected []RejectedInput `json:"rejected"`
	// NextCursor continues the list (pass it as cursor); null on the last page.
	NextCursor *string `json:"next_cursor"`
}

// RejectedInput is one rejected event: an input that could not become a document (a mail over
// the MIME limits, a WebDAV file that is no document), with its raw bytes when they were kept.
type RejectedInput struct {
	ID          string            `json:"id"`
	Source      events.SourceRef  `json:"source"`
	Filename    string            `json:"filename,omitempty"`
	Reason      string            `json:"reason"`
	Detail      string            `json:"detail"`
	Size        int64             `json:"size,omitempty"`
	ContentType string            `json:"content_type,omitempty"` // as the sender declared it: not checked
	Metadata    map[string]string `json:"metadata,omitempty"`
	RejectedAt  time.Time         `json:"rejected_at"`
	RawKept     bool              `json:"raw_kept"`
	ContentURL  string            `json:"content_url,omitempty"` // set when RawKept
}

// RejectedContentURL is where the kept raw bytes of a rejected input are read.
func RejectedContentURL(id string) string { return "/v1/rejected/" + id + "/content" }

const (
	defaultRejectedLimit = 50
	maxRejectedLimit     = 500
)

// rejectedList answers GET /v1/rejected?limit=&cursor=, read from the stream's rejected events
// (they are kept nats.stream.max_age). The cursor is the stream sequence the page ended at.
func (d *API) rejectedList(c echo.Context) error {
	if err := onlyParams(c, "cursor", "limit"); err != nil {
		return err
	}
	limit := defaultRejectedLimit
	if s := c.QueryParam("limit"); c.QueryParams().Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxRejectedLimit {
			return httpapi.NewProblem(http.StatusBadRequest, "limit: %q is not a number from 1 to %d", truncate(s, 40), maxRejectedLimit)
		}
		limit = n
	}
	var before uint64
	if s := c.QueryParam("cursor"); c.QueryParams().Has("cursor") {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return httpapi.NewProblem(http.StatusBadRequest, "cursor: %q is not a cursor this server gave out", truncate(s, 40))
		}
		before = n
	}
	evs, err := d.bus.ScanBack(c.Request().Context(), d.bus.Names().KindSubjects(events.Rejected), before, limit+1)
	if err != nil {
		return err
	}
	out := RejectedList{Rejected: []RejectedInput{}}
	for i, ev := range evs {
		if i == limit {
			next := strconv.FormatUint(evs[i-1].Sequence, 10)
			out.NextCursor = &next
			break
		}
		var rd events.RejectedData
		if err := ev.DecodeData(&rd); err != nil {
			d.log.WarnContext(c.Request().Context(), "a rejected event cannot be read; left out of the list", "event_id", ev.ID, "err", err)
			continue
		}
		in := RejectedInput{ID: ev.Subject, Source: rd.Source, Filename: rd.Filename, Reason: rd.Reason, Detail: rd.Detail,
			Size: rd.Size, ContentType: rd.ContentType, Metadata: rd.Metadata, RejectedAt: rd.RejectedAt, RawKept: rd.ObjectKey != ""}
		if in.RawKept {
			in.ContentURL = RejectedContentURL(ev.Subject)
		}
		out.Rejected = append(out.Rejected, in)
	}
	return c.JSON(http.StatusOK, out)
}

// rejectedContent streams the raw bytes kept of a rejected input. They are whatever the sender
// sent (that is why they were refused), so they always go out as application/octet-stream, as an
// attachment, never to be rendered.
func (d *API) rejectedContent(c echo.Context) error {
	if err := onlyParams(c); err != nil {
		return err
	}
	doc, err := d.lookup(c)
	var p *httpapi.Problem
	if errors.As(err, &p) && p.Status == http.StatusNotFound || err == nil && !wasRejected(doc) {
		return httpapi.NewProblem(http.StatusNotFound, "there is no rejected input with id %q", truncate(c.Param("id"), 80))
	}
	if err != nil {
		return err
	}
	if !strings.HasPrefix(doc.ObjectKey, "rejected/") {
		return httpapi.NewProblem(http.StatusNotFound, "no raw bytes were kept of rejected input %s", doc.ID)
	}
	r, info, err := d.bus.Blobs().Open(c.Request().Context(), doc.ObjectKey)
	if errors.Is(err, events.ErrBlobNotFound) {
		return httpapi.NewProblem(http.StatusGone, "the raw bytes of rejected input %s are no longer stored", doc.ID)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	d.stream(c, r, info, "application/octet-stream", attachmentName(doc.Filename, "rejected-"+doc.ID))
	return nil
}

func wasRejected(doc events.Document) bool {
	for _, h := range doc.History {
		if h.Type == events.Rejected.Type() {
			return true
		}
	}
	return false
}
