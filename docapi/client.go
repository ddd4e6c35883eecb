package docapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/ingest-dev/ingest/docindex"
	"github.com/ingest-dev/ingest/httpapi"
)

// Client reads documents from a running service: what `ingest ls`, `result` and `get` use.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	APIKey  string
	HTTP    *http.Client // http.DefaultClient when nil (no timeout: a download takes as long as it takes)
}

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
	res, err := c.get(ctx, path, nil)
	if err != nil {
		return "", 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", 0, problemOf(res)
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
	res, err := c.get(ctx, path, q)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return problemOf(res)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("the answer of %s is not the expected JSON: %w", path, err)
	}
	return nil
}

func (c *Client) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ingest at %s does not answer: %w", c.BaseURL, err)
	}
	return res, nil
}

// problemOf turns an answer other than 200 into an error: the server's problem+json as a
// *httpapi.Problem, else the status and the start of the body.
func problemOf(res *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var p httpapi.Problem
	if json.Unmarshal(body, &p) == nil && p.Detail != "" {
		return &p
	}
	return fmt.Errorf("unexpected answer %s: %.200s", res.Status, body)
}
