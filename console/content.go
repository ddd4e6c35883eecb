package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ingest-dev/ingest/events"
)

func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return mt
}

// content streams a document's bytes: inline for the types the detail page previews (the
// <img>/<iframe> there points here), as a download otherwise or with ?download=1. The bytes go
// from the Object Store to the client chunk by chunk, never whole in memory.
func (c *Console) content(ec echo.Context, s *session) error {
	doc, ok, err := c.loadDocument(ec, s)
	if !ok {
		return err
	}
	if doc.ObjectKey == "" {
		return c.gone(ec, s, http.StatusNotFound, "This document has no stored content.")
	}
	inline := previewKind(doc.ContentType) != "" && ec.QueryParam("download") == ""
	return c.stream(ec, s, doc.ObjectKey, doc.ContentType, doc.Filename, inline)
}

func (c *Console) gone(ec echo.Context, s *session, status int, msg string) error {
	v := pageFor(s, http.StatusText(status), "documents", "", nil)
	v.Error = msg
	return c.render(ec, status, "error", v)
}

func (c *Console) stream(ec echo.Context, s *session, key, contentType, filename string, inline bool) error {
	r, info, err := c.bus.Blobs().Open(ec.Request().Context(), key)
	if errors.Is(err, events.ErrBlobNotFound) {
		return c.gone(ec, s, http.StatusGone, "These bytes are no longer stored.")
	}
	if err != nil {
		return c.failed(ec, s, err)
	}
	defer r.Close()
	h := ec.Response().Header()
	disposition := "attachment"
	if inline {
		disposition = "inline"
		// Shown inside the console's own detail page, nowhere else.
		h.Set("X-Frame-Options", "SAMEORIGIN")
	}
	csp := "default-src 'none'; frame-ancestors 'self'"
	if mediaType(contentType) != "application/pdf" {
		// Nothing the document holds runs (browsers refuse PDF viewers in sandboxed frames, and
		// a PDF's own scripts are the viewer's to contain).
		csp += "; img-src 'self'; sandbox"
	}
	h.Set("Content-Security-Policy", csp)
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	h.Set(echo.HeaderContentType, contentType)
	h.Set(echo.HeaderContentLength, strconv.FormatInt(info.Size, 10))
	h.Set(echo.HeaderContentDisposition, mime.FormatMediaType(disposition, map[string]string{"filename": filename}))
	ec.Response().WriteHeader(http.StatusOK)
	if _, err := io.Copy(ec.Response(), r); err != nil {
		c.log.Warn("console download ended early", "key", key, "err", err)
	}
	return nil
}

func (c *Console) artifact(ec echo.Context, s *session) error {
	doc, ok, err := c.loadDocument(ec, s)
	if !ok {
		return err
	}
	vendor := ec.Param("vendor")
	n, err := strconv.Atoi(ec.Param("n"))
	if _, known := doc.Vendors[vendor]; !known || err != nil || n < 0 {
		return c.gone(ec, s, http.StatusNotFound, "This document has no such result file.")
	}
	r := c.results(ec.Request().Context(), events.Document{ID: doc.ID, Vendors: map[string]*events.VendorState{vendor: doc.Vendors[vendor]},
		History: doc.History})[vendor]
	if r.data == nil || n >= len(r.data.Artifacts) {
		return c.gone(ec, s, http.StatusNotFound, "This document has no such result file.")
	}
	a := r.data.Artifacts[n]
	return c.stream(ec, s, a.ObjectKey, a.ContentType, a.Name, false)
}

// result is one vendor's completed event, as far as it could be read.
type result struct {
	data    *events.CompletedData
	problem string
}

// maxResultJSON bounds a whole result read back from the Object Store.
const maxResultJSON = 32 << 20

// results reads the completed event of every vendor that completed the document (found by its id
// near its time: events.Bus.FindEvent).
func (c *Console) results(ctx context.Context, doc events.Document) map[string]result {
	out := map[string]result{}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for name, vs := range doc.Vendors {
		if vs.Status != events.StatusCompleted {
			continue
		}
		var entry *events.HistoryEntry
		for i := range doc.History {
			if h := &doc.History[i]; h.Vendor == name && (events.Event{Type: h.Type}).Kind() == events.Completed {
				entry = h // the last one: a retried document may have completed before
			}
		}
		if entry == nil {
			out[name] = result{problem: "its completed event is not in the document's history"}
			continue
		}
		data, err := c.findCompleted(ctx, name, *entry)
		if err != nil {
			out[name] = result{problem: err.Error()}
			continue
		}
		out[name] = result{data: data}
	}
	return out
}

func (c *Console) findCompleted(ctx context.Context, vendor string, entry events.HistoryEntry) (*events.CompletedData, error) {
	subject, err := c.bus.Names().Subject(events.Completed, vendor)
	if err != nil {
		return nil, err
	}
	ev, err := c.bus.FindEvent(ctx, subject, entry)
	if errors.Is(err, events.ErrEventNotFound) {
		return nil, errors.New("its completed event is no longer in the event stream (kept for nats.stream.max_age)")
	}
	if err != nil {
		return nil, fmt.Errorf("the result could not be read: %w", err)
	}
	var d events.CompletedData
	if err := ev.DecodeData(&d); err != nil {
		return nil, err
	}
	if d.ResultObjectKey != "" {
		return c.storedResult(ctx, d)
	}
	return &d, nil
}

// storedResult reads a result too large for its event from the Object Store; if that fails the
// event's own part (fields, artifacts) is shown.
func (c *Console) storedResult(ctx context.Context, d events.CompletedData) (*events.CompletedData, error) {
	r, _, err := c.bus.Blobs().Open(ctx, d.ResultObjectKey)
	if err != nil {
		return &d, nil
	}
	defer r.Close()
	var whole events.CompletedData
	if err := json.NewDecoder(io.LimitReader(r, maxResultJSON)).Decode(&whole); err != nil {
		return &d, nil
	}
	return &whole, nil
}

// text cut for display.
func excerpt(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := strings.LastIndexByte(s[:n], ' ')
	if cut < n/2 {
		cut = n
	}
	return s[:cut] + "…"
}
