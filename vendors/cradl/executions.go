package cradl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ingest-dev/ingest/vendors"
)

// Execution statuses (WorkflowExecution.status).
var (
	doneStatuses    = map[string]bool{"succeeded": true, "completed": true}
	failedStatuses  = map[string]bool{"failed": true, "rejected": true, "error": true}
	pendingStatuses = map[string]bool{"running": true, "retry": true}
	// allStatuses are asked for explicitly when listing, so that no default filter of the list
	// hides an execution.
	allStatuses = []string{"running", "succeeded", "completed", "failed", "rejected", "retry", "error"}
)

// execution is what this client reads of a WorkflowExecution.
type execution struct {
	ExecutionID string          `json:"executionId"`
	WorkflowID  string          `json:"workflowId"`
	Status      *string         `json:"status"`
	Input       json.RawMessage `json:"input"`
	Output      json.RawMessage `json:"output"`
	Error       json.RawMessage `json:"error"`
}

// startExecution runs the workflow on an uploaded document.
func (c *Client) startExecution(ctx context.Context, docID, title string) (string, error) {
	body := map[string]any{"input": map[string]any{"documentId": docID, "title": title}}
	res, err := c.do(ctx, "submit", jsonRequest(http.MethodPost, c.endpoint(nil, "workflows", c.cfg.WorkflowID, "executions"), body))
	if err != nil {
		return "", err
	}
	var ex execution
	raw, err := vendors.ReadJSON(name, "submit", res, &ex)
	if err != nil {
		return "", err
	}
	if ex.ExecutionID == "" {
		return "", vendors.Malformed(name, "submit", errors.New("the execution was started without an executionId"), raw)
	}
	return ex.ExecutionID, nil
}

// checkExecutionRef refuses references that cannot be execution ids before they make a
// confusing URL.
func checkExecutionRef(op, ref string) error {
	if ref == "" || ref == "." || ref == ".." || strings.HasPrefix(ref, mailRefPrefix) {
		return &vendors.Error{Vendor: name, Op: op, Permanent: true, Message: fmt.Sprintf("%q is not a Cradl execution id", ref)}
	}
	return nil
}

// getExecution reads one execution of the configured workflow; its status must be a string.
func (c *Client) getExecution(ctx context.Context, op, id string) (execution, []byte, error) {
	if err := checkExecutionRef(op, id); err != nil {
		return execution{}, nil, err
	}
	res, err := c.do(ctx, op, jsonRequest(http.MethodGet, c.endpoint(nil, "workflows", c.cfg.WorkflowID, "executions", id), nil))
	if err != nil {
		return execution{}, nil, err
	}
	var ex execution
	raw, err := vendors.ReadJSON(name, op, res, &ex)
	if err != nil {
		return execution{}, nil, err
	}
	if ex.Status == nil {
		return execution{}, nil, vendors.Malformed(name, op, errors.New("the execution has no status"), raw)
	}
	if ex.ExecutionID == "" {
		ex.ExecutionID = id
	}
	return ex, raw, nil
}

// progress maps an execution's status. An unknown status is taken as pending (and noted): a
// new end state would otherwise be mistaken for a failure.
func (c *Client) progress(ctx context.Context, ex execution) vendors.Progress {
	s := *ex.Status
	switch {
	case doneStatuses[s]:
		return vendors.Progress{Done: true}
	case failedStatuses[s]:
		msg := errorText(ex.Error)
		if msg == "" {
			var out map[string]json.RawMessage
			if json.Unmarshal(ex.Output, &out) == nil {
				msg = errorText(out["error"])
				if msg == "" {
					msg = errorText(out["message"])
				}
			}
		}
		text := fmt.Sprintf("Cradl execution %s ended with status %s", ex.ExecutionID, s)
		if msg != "" {
			text += ": " + msg
		}
		return vendors.Progress{Done: true, Failed: true, Error: text}
	case pendingStatuses[s]:
		return vendors.Progress{}
	}
	c.log.WarnContext(ctx, "cradl: unknown execution status, treating it as pending", "execution", ex.ExecutionID, "status", s)
	return vendors.Progress{}
}

// executionResult reads the output of a finished execution; Raw is the execution JSON verbatim.
func executionResult(ex execution, raw []byte) (vendors.Result, error) {
	if t := bytes.TrimSpace(ex.Output); len(t) == 0 || t[0] != '{' {
		return vendors.Result{}, vendors.Malformed(name, "result", fmt.Errorf("the execution (status %s) has no output object", *ex.Status), raw)
	}
	fields, err := NormalizeOutput(ex.Output)
	if err != nil {
		return vendors.Result{}, vendors.Malformed(name, "result", err, raw)
	}
	return vendors.Result{Fields: fields, Raw: json.RawMessage(raw)}, nil
}

// completeExecution PATCHes the execution to "completed". Cradl toggles only between succeeded
// and completed, so a refusal is looked into: an execution already completed is what we wanted.
func (c *Client) completeExecution(ctx context.Context, id string) error {
	if err := checkExecutionRef("finish", id); err != nil {
		return err
	}
	uri := c.endpoint(nil, "workflows", c.cfg.WorkflowID, "executions", id)
	res, err := c.do(ctx, "finish", jsonRequest(http.MethodPatch, uri, map[string]string{"status": "completed"}))
	if err == nil {
		res.Body.Close()
		return nil
	}
	var e *vendors.Error
	if !errors.As(err, &e) || (e.Status != http.StatusBadRequest && e.Status != http.StatusConflict) {
		return err
	}
	ex, _, gerr := c.getExecution(ctx, "finish", id)
	if gerr == nil && *ex.Status == "completed" {
		return nil
	}
	return err
}

// listedExecution is an execution as the list gives it.
type listedExecution struct {
	ExecutionID string          `json:"executionId"`
	Status      *string         `json:"status"`
	Input       json.RawMessage `json:"input"`
	StartTime   string          `json:"startTime"`
}

// startedBefore reports whether the execution is known to have started before t (a list that
// ignored fromStartTime); an unreadable time is not held against it.
func (ex listedExecution) startedBefore(t time.Time) bool {
	st, err := time.Parse(time.RFC3339Nano, ex.StartTime)
	return err == nil && st.Before(t.Truncate(time.Second))
}

func (ex listedExecution) input() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(ex.Input, &m)
	return m
}

// mentions reports whether a subject in the execution's input names the document.
func (ex listedExecution) mentions(docID string) bool {
	for _, s := range subjects(ex.Input) {
		if subjectNames(s, docID) {
			return true
		}
	}
	return false
}

// listExecutions walks the workflow's executions newest first (or, from since on, oldest
// first), at most ListPages pages, until visit returns false. complete reports whether the walk
// ended because visit said so or the list did, rather than at the bound.
func (c *Client) listExecutions(ctx context.Context, op string, since time.Time, newestFirst bool, visit func(listedExecution) bool) (complete bool, err error) {
	q := url.Values{"status": allStatuses, "sortBy": {"startTime"}, "maxResults": {strconv.Itoa(c.cfg.ListPageSize)}}
	q.Set("order", "descending")
	if !newestFirst {
		q.Set("order", "ascending")
	}
	if !since.IsZero() {
		q.Set("fromStartTime", since.UTC().Truncate(time.Second).Format(time.RFC3339))
	}
	for range c.cfg.ListPages {
		res, err := c.do(ctx, op, jsonRequest(http.MethodGet, c.endpoint(q, "workflows", c.cfg.WorkflowID, "executions"), nil))
		if err != nil {
			return false, err
		}
		var page struct {
			Executions *[]listedExecution `json:"executions"`
			NextToken  *string            `json:"nextToken"`
		}
		raw, err := vendors.ReadJSON(name, op, res, &page)
		if err != nil {
			return false, err
		}
		if page.Executions == nil {
			return false, vendors.Malformed(name, op, errors.New("the execution list has no executions"), raw)
		}
		for _, ex := range *page.Executions {
			if !visit(ex) {
				return true, nil
			}
		}
		if page.NextToken == nil || *page.NextToken == "" || len(*page.Executions) == 0 {
			return true, nil
		}
		q.Set("nextToken", *page.NextToken)
	}
	return false, nil
}

// mailDocID is the document id of an e-mail mode reference.
func mailDocID(op, ref string) (string, error) {
	id, ok := strings.CutPrefix(ref, mailRefPrefix)
	if !ok || id == "" {
		return "", &vendors.Error{Vendor: name, Op: op, Permanent: true, Message: fmt.Sprintf("%q is not a reference of an e-mailed document (mail:<document id>)", ref)}
	}
	return id, nil
}

// mailExecution finds the execution the mail of ref started (newest first: a mail sent again
// after a doubtful send starts the newer one) and reads it afresh. found is false while no
// execution names the document.
func (c *Client) mailExecution(ctx context.Context, op, ref string) (execution, []byte, bool, error) {
	docID, err := mailDocID(op, ref)
	if err != nil {
		return execution{}, nil, false, err
	}
	var id string
	_, err = c.listExecutions(ctx, op, time.Time{}, true, func(ex listedExecution) bool {
		if ex.ExecutionID != "" && ex.mentions(docID) {
			id = ex.ExecutionID
			return false
		}
		return true
	})
	if err != nil || id == "" {
		return execution{}, nil, false, err
	}
	// The list's status may lag; the execution itself is the truth.
	ex, raw, err := c.getExecution(ctx, op, id)
	if err != nil {
		return execution{}, nil, false, err
	}
	return ex, raw, true, nil
}

// subjectMarker is what an e-mailed document's subject says: "ingest <document id>".
const subjectMarker = "ingest "

func subjectFor(docID string) string { return subjectMarker + docID }

// subjectNames reports whether subject contains "ingest <docID>" as whole words: preceded by
// the start or a non-alphanumeric character, followed by the end or a space. "ingest doc-1"
// does not name "doc-12", and "Fwd: ingest doc-1" still names doc-1.
func subjectNames(subject, docID string) bool {
	if docID == "" {
		return false
	}
	m := subjectFor(docID)
	for i := 0; i <= len(subject); {
		j := strings.Index(subject[i:], m)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(m)
		before := start == 0 || !isWordByte(subject[start-1])
		after := end == len(subject) || unicode.IsSpace(rune(subject[end]))
		if before && after {
			return true
		}
		i = start + 1
	}
	return false
}

func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b >= 0x80
}

// docIDInSubject is the document id of a subject "… ingest <id> …", "" when there is none.
func docIDInSubject(subject string) string {
	f := strings.Fields(subject)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == strings.TrimSpace(subjectMarker) && subjectNames(subject, f[i+1]) {
			return f[i+1]
		}
	}
	return ""
}

// subjects collects the strings under a "subject" key (any case) in an execution input, up to
// four levels down: input.email.subject as Cradl's e-mail transition documents it, or wherever
// the merge with additionalWorkflowInput puts it.
func subjects(input json.RawMessage) []string {
	var v any
	if json.Unmarshal(input, &v) != nil {
		return nil
	}
	var out []string
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		m, ok := v.(map[string]any)
		if !ok || depth > 4 {
			return
		}
		for k, x := range m {
			if s, ok := x.(string); ok && strings.EqualFold(k, "subject") {
				out = append(out, s)
			} else {
				walk(x, depth+1)
			}
		}
	}
	walk(v, 0)
	return out
}
