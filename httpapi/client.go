package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client is what the clients of ingest's own API share (uploads: httpdrop.Client; reading and
// retrying: docapi.Client; subscriptions: webhooks.Client): where the service is, the API key,
// and answers other than the one expected turned into errors — the server's *Problem when it
// sent problem+json. Those clients are declared as this type (`type Client httpapi.Client`), so
// they are built with the same three fields.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	APIKey  string
	HTTP    *http.Client // http.DefaultClient when nil (no timeout: a download takes as long as it takes)
}

// NewRequest makes a request to path (with query q, if any) on the service, with the API key.
func (c *Client) NewRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(q) > 0 {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u += sep + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	return req, nil
}

// Do sends req and returns the answer whatever its status; an error only when the service
// does not answer.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
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

// maxAnswer bounds a JSON answer read by the clients.
const maxAnswer = 64 << 20

// JSON sends req and decodes an answer of status want into out (a *json.RawMessage keeps it as
// it came); any other status is an error (ProblemFrom).
func (c *Client) JSON(req *http.Request, want int, out any) error {
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != want {
		return ProblemFrom(res)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("the answer to %s %s is not the expected JSON: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// ProblemFrom turns an unexpected answer into an error: the server's problem+json as a *Problem,
// else the status and the start of the body.
func ProblemFrom(res *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var p Problem
	if json.Unmarshal(body, &p) == nil && p.Detail != "" {
		return &p
	}
	return fmt.Errorf("unexpected answer %s: %.200s", res.Status, body)
}
