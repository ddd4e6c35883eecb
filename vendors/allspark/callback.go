package allspark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ingest-dev/ingest/vendors"
)

var _ vendors.CallbackVendor = (*Client)(nil)

// CallbackIDs reads the case id of an Allspark callback. Its payload is not documented; it is
// taken to mirror GET /cases/{id} [I], and only case_id (a number or a string) is read from it:
// the result itself is fetched from the API.
func (c *Client) CallbackIDs(body []byte) ([]string, error) {
	var v struct {
		CaseID json.RawMessage `json:"case_id"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("not an Allspark case: %w", err)
	}
	if v.CaseID == nil {
		return nil, errors.New("not an Allspark case: no case_id")
	}
	id, err := ParseCaseID(v.CaseID)
	if err != nil {
		return nil, err
	}
	return []string{id}, nil
}

// RefOf: the case id is the reference Submit returned.
func (c *Client) RefOf(_ context.Context, id string) (string, error) { return id, nil }

// CallbackVerifier is nil: Allspark documents no signature on its callbacks; the secret URL and
// the address allow-list are what proves them.
func (c *Client) CallbackVerifier() vendors.CallbackVerifier { return nil }
