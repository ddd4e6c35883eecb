// Package docapi is the document read API: GET /v1/documents/{id} (the document's state, with
// what the dispatcher knows beyond its events), GET /v1/documents/{id}/content (its bytes),
// …/results (what each vendor made of it, read from its completed and failed events) and
// …/artifacts/{name} (a vendor's result file), and GET /v1/rejected[/{id}/content] (inputs refused
// at intake, and their kept raw bytes). It is registered whatever sources are configured: a mail's
// or a folder's document is read the same way as an upload. With a document index,
// GET /v1/documents lists documents (see docindex). Client is its Go client.
package docapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ingest-dev/ingest/docindex"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
)

// StatusURL is where a document's state is read.
func StatusURL(id string) string { return "/v1/documents/" + id }

// Config configures the API.
type Config struct {
	Bus     *events.Bus
	APIKeys []string
	// Enrich adds to a document's state what is not in its events (the dispatcher's attempts and
	// last errors, an in-doubt submission's candidates). Nil: the state as projected.
	Enrich func(ctx context.Context, doc *events.Document)
	// Index answers GET /v1/documents. Nil: no listing.
	Index  *docindex.Index
	Logger *slog.Logger

	// Idempotency keeps the Idempotency-Key records of retries (retry.go). Nil: a keyed retry is refused.
	Idempotency IdempotencyStore
}

// API serves the document read endpoints.
type API struct {
	cfg Config
	bus *events.Bus
	log *slog.Logger
}

// New returns the API.
func New(cfg Config) (*API, error) {
	if cfg.Bus == nil || len(cfg.APIKeys) == 0 {
		return nil, errors.New("docapi: a Bus and API keys are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &API{cfg: cfg, bus: cfg.Bus, log: cfg.Logger}, nil
}

// Register adds the routes to the server.
func (d *API) Register(e *echo.Echo) {
	g := e.Group("/v1/documents", httpapi.RequireAPIKey(d.cfg.APIKeys))
	if d.cfg.Index != nil {
		g.GET("", d.list)
	}
	g.GET("/:id", d.status)
	g.GET("/:id/content", d.content)
	g.GET("/:id/results", d.results)
	g.GET("/:id/artifacts/:name", d.artifact)
	g.POST("/:id/retry", d.retryHandler)
	r := e.Group("/v1/rejected", httpapi.RequireAPIKey(d.cfg.APIKeys))
	r.GET("", d.rejectedList)
	r.GET("/:id/content", d.rejectedContent)
}

func (d *API) lookup(c echo.Context) (events.Document, error) {
	id := c.Param("id")
	c.Set(httpapi.DocIDKey, id)
	doc, err := d.bus.States().Get(c.Request().Context(), id)
	if errors.Is(err, events.ErrUnknownDocument) {
		return doc, httpapi.NewProblem(http.StatusNotFound, "there is no document with id %q", truncate(id, 80))
	}
	return doc, err
}

func (d *API) status(c echo.Context) error {
	doc, err := d.lookup(c)
	if err != nil {
		return err
	}
	if d.cfg.Enrich != nil {
		d.cfg.Enrich(c.Request().Context(), &doc)
	}
	return c.JSON(http.StatusOK, doc)
}

// list answers GET /v1/documents from the index. The documents are their states as projected from
// the events, the same as GET /v1/documents/{id} less what Enrich adds there (the dispatcher's
// attempts and last errors): that costs a bucket watch per document, too much for a page of 500.
func (d *API) list(c echo.Context) error {
	q, err := docindex.ParseQuery(c.QueryParams(), time.Now())
	if err != nil {
		return badQuery(err)
	}
	page, err := d.cfg.Index.List(c.Request().Context(), q)
	if err != nil {
		return badQuery(err)
	}
	if !page.Index.CaughtUp {
		// Answered with what the index has: say how far behind it is rather than make the
		// client wait for a catch-up that may take a while.
		c.Response().Header().Set("Index-Behind", strconv.FormatUint(page.Index.Behind, 10))
	}
	return c.JSON(http.StatusOK, page)
}

func badQuery(err error) error {
	var bq *docindex.BadQueryError
	if errors.As(err, &bq) {
		return httpapi.NewProblem(http.StatusBadRequest, "%s", bq.Error())
	}
	return err
}

func (d *API) content(c echo.Context) error {
	doc, err := d.lookup(c)
	if err != nil {
		return err
	}
	if doc.ObjectKey == "" {
		return httpapi.NewProblem(http.StatusNotFound, "document %s has no stored content", doc.ID)
	}
	r, info, err := d.bus.Blobs().Open(c.Request().Context(), doc.ObjectKey)
	if errors.Is(err, events.ErrBlobNotFound) {
		return httpapi.NewProblem(http.StatusGone, "the content of document %s is no longer stored", doc.ID)
	}
	if err != nil {
		return err
	}
	defer r.Close()
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, doc.ContentType)
	h.Set(echo.HeaderContentLength, strconv.FormatInt(info.Size, 10))
	h.Set(echo.HeaderContentDisposition, mime.FormatMediaType("attachment", map[string]string{"filename": doc.Filename}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("ETag", fmt.Sprintf("%q", "sha256:"+info.SHA256))
	c.Response().WriteHeader(http.StatusOK)
	// A digest mismatch shows up as a read error here; the status is sent already, so the client
	// sees a short body, which its Content-Length check catches.
	if _, err := io.Copy(c.Response(), r); err != nil {
		d.log.WarnContext(c.Request().Context(), "content download ended early", "doc_id", doc.ID, "err", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
