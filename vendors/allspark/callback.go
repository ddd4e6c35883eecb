package allspark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ingest-dev/ingest/vendors"
)

var _ vendors.CallbackVendor = (*Client)(nil)

// CallbackIDs reads the case id of an Allspark callback. Allspark documents only that "an API
// call will be made to your callback url with the data" [U], so every plausible place is read:
// case_id or id at the top (the case as GET /cases/{id} gives it, or a short notice), or under
// "case" or "data" (an event envelope). Form posts and GET queries reach here as a JSON object of
// their fields (the receiver converts them). Only the id is read: the result itself is fetched
// from the API.
func (c *Client) CallbackIDs(body []byte) ([]string, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("not an Allspark case: %w", err)
	}
	if raw, ok := caseIDIn(top); ok {
		id, err := ParseCaseID(raw)
		if err != nil {
			return nil, err
		}
		return []string{id}, nil
	}
	for _, wrapper := range []string{"case", "data"} {
		var inner map[string]json.RawMessage
		if json.Unmarshal(top[wrapper], &inner) != nil {
			continue
		}
		if raw, ok := caseIDIn(inner); ok {
			id, err := ParseCaseID(raw)
			if err != nil {
				return nil, err
			}
			return []string{id}, nil
		}
	}
	return nil, errors.New("not an Allspark case: no case_id or id, at the top or under case or data")
}

// caseIDIn finds the case id among an object's keys: case_id first, then id.
func caseIDIn(m map[string]json.RawMessage) (json.RawMessage, bool) {
	for _, k := range []string{"case_id", "id"} {
		if v, ok := m[k]; ok && string(v) != "null" {
			return v, true
		}
	}
	return nil, false
}

// RefOf: the case id is the reference Submit returned.
func (c *Client) RefOf(_ context.Context, id string) (string, error) { return id, nil }

// CallbackVerifier is nil: Allspark documents no signature on its callbacks; the secret URL and
// the address allow-list are what proves them.
func (c *Client) CallbackVerifier() vendors.CallbackVerifier { return nil }
