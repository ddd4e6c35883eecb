package httpdrop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/ingest-dev/ingest/docapi"
	"github.com/ingest-dev/ingest/httpapi"
)

// Client speaks to the HTTP drop: what `ingest submit` and `ingest status` use.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	APIKey  string
	HTTP    *http.Client // http.DefaultClient when nil
}

// SubmitOptions go with an upload.
type SubmitOptions struct {
	Vendors        []string
	Route          string
	Metadata       map[string]string
	IdempotencyKey string
}

// SubmitFile uploads one file, streamed from disk (nothing is read into memory whole).
func (c *Client) SubmitFile(ctx context.Context, path string, opts SubmitOptions) (Response, error) {
	f, err := os.Open(path)
	if err != nil {
		return Response{}, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			for k, v := range opts.Metadata {
				if err := mw.WriteField(k, v); err != nil {
					return err
				}
			}
			if len(opts.Vendors) > 0 {
				if err := mw.WriteField("vendor", strings.Join(opts.Vendors, ",")); err != nil {
					return err
				}
			}
			if opts.Route != "" {
				if err := mw.WriteField("route", opts.Route); err != nil {
					return err
				}
			}
			fw, err := mw.CreateFormFile("file", filepath.Base(path))
			if err != nil {
				return err
			}
			if _, err := io.Copy(fw, f); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+"/v1/documents", pr)
	if err != nil {
		pr.Close()
		return Response{}, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if opts.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", opts.IdempotencyKey)
	}
	var resp Response
	err = c.do(req, http.StatusAccepted, &resp)
	pr.Close()
	return resp, err
}

// Status returns a document's state as the server sends it.
func (c *Client) Status(ctx context.Context, id string) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+docapi.StatusURL(url.PathEscape(id)), nil)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	return raw, c.do(req, http.StatusOK, &raw)
}

// do sends req; a problem+json answer comes back as a *httpapi.Problem error.
func (c *Client) do(req *http.Request, want int, out any) error {
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("ingest at %s does not answer: %w", c.BaseURL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if res.StatusCode != want {
		var p httpapi.Problem
		if json.Unmarshal(body, &p) == nil && p.Detail != "" {
			return &p
		}
		return fmt.Errorf("unexpected answer %s: %.200s", res.Status, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("the answer is not the expected JSON: %w", err)
	}
	return nil
}
