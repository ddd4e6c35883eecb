package docapi

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"

	"github.com/ingest-dev/ingest/docindex"
	"github.com/ingest-dev/ingest/httpapi"
)

// Client reads documents from a running service and asks for retries: what `ingest ls`,
// `result`, `get` and `retry` use.
type Client httpapi.Client

func (c *Client) api() *httpapi.Client { return (*httpapi.Client)(c) }

// List returns one page of GET /v1/documents with the query q (status, vendor, source, route,
// since, until, q, limit, cursor).
func (c *Client) List(ctx context.Context, q url.Values) (docindex.Page, error) {
	var p docindex.Page
	err := c.getJSON(ctx, "/v1/documents", q, &p)
	return p, err
}

// Results returns what each vendor made of a document.
func (c *Client) Results(ctx context.Context, id string) (Results, error) {
	var r Results
	err := c.getJSON(ctx, "/v1/documents/"+url.PathEscape(id)+"/results", nil, &r)
	return r, err
}

// Rejected returns one page of rejected inputs, newest first ("" cursor: the first page).
func (c *Client) Rejected(ctx context.Context, limit int, cursor string) (RejectedList, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var r RejectedList
	err := c.getJSON(ctx, "/v1/rejected", q, &r)
	return r, err
}

// ContentPath is the path of a document's bytes; ArtifactPath of a vendor's result file (vendor
// may be empty when only one vendor has a file of that name).
func ContentPath(id string) string { return "/v1/documents/" + url.PathEscape(id) + "/content" }

// ArtifactPath is the path of a document's result file, for Download.
func ArtifactPath(id, name, vendor string) string {
	p := "/v1/documents/" + url.PathEscape(id) + "/artifacts/" + url.PathEscape(name)
	if vendor != "" {
		p += "?vendor=" + url.QueryEscape(vendor)
	}
	return p
}

// Download streams what path answers (ContentPath, ArtifactPath, a rejected input's content) into
// w and returns the file name the server suggests. A body shorter than its Content-Length is an
// error: the caller must not keep what it wrote.
func (c *Client) Download(ctx context.Context, path string, w io.Writer) (string, int64, error) {
	req, err := c.api().NewRequest(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return "", 0, err
	}
	res, err := c.api().Do(req)
	if err != nil {
		return "", 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", 0, httpapi.ProblemFrom(res)
	}
	n, err := io.Copy(w, res.Body)
	if err != nil {
		return "", n, fmt.Errorf("download %s: %w", path, err)
	}
	if res.ContentLength >= 0 && n != res.ContentLength {
		return "", n, fmt.Errorf("download %s: got %d of %d bytes", path, n, res.ContentLength)
	}
	name := ""
	if _, params, err := mime.ParseMediaType(res.Header.Get("Content-Disposition")); err == nil {
		name = params["filename"]
	}
	return name, n, nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	req, err := c.api().NewRequest(ctx, http.MethodGet, path, q, nil)
	if err != nil {
		return err
	}
	return c.api().JSON(req, http.StatusOK, out)
}
