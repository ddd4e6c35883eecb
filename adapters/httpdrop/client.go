package httpdrop

import (
	"context"
	"encoding/json"
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
type Client httpapi.Client

func (c *Client) api() *httpapi.Client { return (*httpapi.Client)(c) }

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
	req, err := c.api().NewRequest(ctx, http.MethodPost, "/v1/documents", nil, pr)
	if err != nil {
		pr.Close()
		return Response{}, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if opts.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", opts.IdempotencyKey)
	}
	var resp Response
	err = c.api().JSON(req, http.StatusAccepted, &resp)
	pr.Close()
	return resp, err
}

// Status returns a document's state as the server sends it.
func (c *Client) Status(ctx context.Context, id string) (json.RawMessage, error) {
	req, err := c.api().NewRequest(ctx, http.MethodGet, docapi.StatusURL(url.PathEscape(id)), nil, nil)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	return raw, c.api().JSON(req, http.StatusOK, &raw)
}
