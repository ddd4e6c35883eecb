package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ingest-dev/ingest/httpapi"
)

// Client speaks to a running service's subscriptions API: what `ingest replay` and
// `ingest webhooks` use.
type Client httpapi.Client

// List returns the subscriptions' states.
func (c *Client) List(ctx context.Context) (json.RawMessage, error) {
	return c.call(ctx, http.MethodGet, "", nil)
}

// Replay re-sends a subscription's events since (a duration back, "2h", or an RFC 3339 time).
func (c *Client) Replay(ctx context.Context, name, since string) (json.RawMessage, error) {
	return c.call(ctx, http.MethodPost, "/"+url.PathEscape(name)+"/replay", url.Values{"since": {since}})
}

// Enable clears the disabled mark a 410 left.
func (c *Client) Enable(ctx context.Context, name string) (json.RawMessage, error) {
	return c.call(ctx, http.MethodPost, "/"+url.PathEscape(name)+"/enable", nil)
}

// DeadLetters lists a subscription's dead letters.
func (c *Client) DeadLetters(ctx context.Context, name string) (json.RawMessage, error) {
	return c.call(ctx, http.MethodGet, "/"+url.PathEscape(name)+"/dead-letters", nil)
}

// Redeliver delivers one dead letter's event again.
func (c *Client) Redeliver(ctx context.Context, name, eventID string) (json.RawMessage, error) {
	return c.call(ctx, http.MethodPost, "/"+url.PathEscape(name)+"/dead-letters/"+url.PathEscape(eventID)+"/redeliver", nil)
}

// Attempts returns the recorded attempts of one event's delivery.
func (c *Client) Attempts(ctx context.Context, name, eventID string) (json.RawMessage, error) {
	return c.call(ctx, http.MethodGet, "/"+url.PathEscape(name)+"/deliveries/"+url.PathEscape(eventID), nil)
}

func (c *Client) call(ctx context.Context, method, path string, q url.Values) (json.RawMessage, error) {
	api := (*httpapi.Client)(c)
	req, err := api.NewRequest(ctx, method, "/v1/subscriptions"+path, q, nil)
	if err != nil {
		return nil, err
	}
	res, err := api.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound && !strings.Contains(res.Header.Get("Content-Type"), "problem") {
		return nil, fmt.Errorf("the running service has no webhook subscriptions (add some under subscriptions: and restart it)")
	}
	if res.StatusCode != http.StatusOK {
		return nil, httpapi.ProblemFrom(res)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	return body, nil
}
