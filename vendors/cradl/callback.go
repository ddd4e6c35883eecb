package cradl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/vendors"
)

// CallbackIDs reads the identifiers of a Cradl callback, trusting nothing else in it:
//   - the workflow export {documentId, values, validatedPredictions, predictions,
//     metadata:{executionId, workflowId}}: the executionId, or the documentId when the export
//     carries no metadata;
//   - the agent webhook {output, context:{documentId, runId}}: the runId and the documentId.
//
// A body with a "context" member is read as the agent webhook. Ids must be strings; a body with
// none is not a Cradl callback.
func (c *Client) CallbackIDs(body []byte) ([]string, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, errors.New("not a Cradl callback: the body is not a JSON object")
	}
	if raw, ok := top["context"]; ok {
		cx, err := object("context", raw)
		if err != nil {
			return nil, err
		}
		return ids(cx, "runId", "documentId")
	}
	var execID string
	if raw, ok := top["metadata"]; ok && !isNull(raw) {
		md, err := object("metadata", raw)
		if err != nil {
			return nil, err
		}
		if execID, err = optString(md, "executionId"); err != nil {
			return nil, err
		}
	}
	docID, err := optString(top, "documentId")
	switch {
	case err != nil:
		return nil, err
	case execID != "":
		return []string{execID}, nil
	case docID != "":
		return []string{docID}, nil
	}
	return nil, errors.New("not a Cradl callback: no documentId or metadata.executionId")
}

func object(what string, raw json.RawMessage) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &m) != nil {
		return nil, fmt.Errorf("not a Cradl callback: %s is not an object", what)
	}
	return m, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// optString is m[key] as a string: "" when absent or null, an error when it is anything else.
func optString(m map[string]json.RawMessage, key string) (string, error) {
	raw, ok := m[key]
	if !ok || isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("not a Cradl callback: %s is not a string", key)
	}
	return s, nil
}

// ids are the non-empty strings under keys, in order; at least one.
func ids(m map[string]json.RawMessage, keys ...string) ([]string, error) {
	var out []string
	for _, k := range keys {
		s, err := optString(m, k)
		if err != nil {
			return nil, err
		}
		if s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("not a Cradl callback: no %s", strings.Join(keys, " or "))
	}
	return out, nil
}

// isDocumentID tells a document id (las:document:…, cradl:document:…) from an execution id.
func isDocumentID(id string) bool {
	return strings.HasPrefix(id, "las:document:") || strings.HasPrefix(id, "cradl:document:")
}

// RefOf maps a callback identifier to the reference Submit returned:
//   - predictions: the id itself;
//   - workflow: an execution id is the reference once Cradl confirms it is an execution of our
//     workflow; a document id is looked up among the workflow's executions (input.documentId);
//   - email: the execution is fetched, and its subject gives mail:<document id>.
//
// "" means the id is not ours: an execution Cradl does not know under our workflow (404), an
// agent run (generation B), an execution without our subject.
func (c *Client) RefOf(ctx context.Context, id string) (string, error) {
	if c.cfg.Mode == ModePredictions {
		return id, nil
	}
	if id == "" || strings.HasPrefix(id, "cradl:run:") || checkExecutionRef("callback", id) != nil {
		return "", nil
	}
	var input json.RawMessage
	execID := id
	if isDocumentID(id) {
		_, err := c.listExecutions(ctx, "callback", time.Time{}, true, func(ex listedExecution) bool {
			if d, _ := ex.input()["documentId"].(string); d == id && ex.ExecutionID != "" {
				execID, input = ex.ExecutionID, ex.Input
				return false
			}
			return true
		})
		if err != nil || input == nil {
			return "", err
		}
	} else {
		ex, _, err := c.getExecution(ctx, "callback", id)
		var e *vendors.Error
		if errors.As(err, &e) && e.Status == http.StatusNotFound {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		execID, input = ex.ExecutionID, ex.Input
	}
	if c.cfg.Mode == ModeWorkflow {
		return execID, nil
	}
	for _, s := range subjects(input) {
		if d := docIDInSubject(s); d != "" {
			return mailRefPrefix + d, nil
		}
	}
	return "", nil
}

// CallbackVerifier checks Cradl's webhooks when a webhook secret is configured (signed ones
// always; unsigned ones are refused unless RequireSignedWebhooks is off); nil without a secret:
// the secret URL alone proves a callback then.
func (c *Client) CallbackVerifier() vendors.CallbackVerifier {
	if c.cfg.WebhookSecret == "" {
		return nil
	}
	return WebhookVerifier{Secret: c.cfg.WebhookSecret, RequireSigned: c.cfg.RequireSignedWebhooks}
}
