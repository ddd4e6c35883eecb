package cradl

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/ingest-dev/ingest/vendors"
)

// contentTypes are the document types POST /documents takes.
var contentTypes = []string{"application/pdf", "image/jpeg", "image/png", "image/tiff", "image/webp"}

// emailTypes are the attachment types that start an execution (no WebP, unlike the API).
var emailTypes = []string{"application/pdf", "image/jpeg", "image/png", "image/tiff"}

// checkDocument refuses, before anything is sent, what Cradl would refuse: a type it does not
// read, a document over 64 MB. It returns the canonical content type.
func (c *Client) checkDocument(doc vendors.Document) (string, error) {
	refuse := func(format string, args ...any) (string, error) {
		return "", &vendors.Error{Vendor: name, Op: "submit", Permanent: true, NotSent: true, Message: fmt.Sprintf(format, args...)}
	}
	allowed := contentTypes
	if c.cfg.Mode == ModeEmail {
		allowed = emailTypes
	}
	mt, _, err := mime.ParseMediaType(doc.ContentType)
	if err != nil || doc.ContentType == "" {
		return refuse("the document has no usable content type (%q); Cradl takes %s", doc.ContentType, strings.Join(allowed, ", "))
	}
	if mt == "image/jpg" || mt == "image/pjpeg" {
		mt = "image/jpeg"
	}
	ok := false
	for _, a := range allowed {
		ok = ok || a == mt
	}
	if !ok {
		how := "documents"
		if c.cfg.Mode == ModeEmail {
			how = "e-mail attachments"
		}
		return refuse("Cradl does not take %s %s; it takes %s", mt, how, strings.Join(allowed, ", "))
	}
	if doc.Size > MaxDocumentBytes {
		return refuse("the document has %d bytes; Cradl takes at most %d (64 MB)", doc.Size, MaxDocumentBytes)
	}
	if c.cfg.Mode != ModeEmail && doc.Open == nil {
		return refuse("the document cannot be opened")
	}
	return mt, nil
}

// inline reports whether a document of size bytes fits in the JSON of POST /documents.
func inline(size int64) bool {
	return size <= int64(MaxInlineBase64)/4*3
}

// upload creates the document at Cradl and returns its documentId. Up to MaxInlineBase64 the
// bytes travel as base64 in the JSON; above, POST /documents hands out a fileUrl and the raw
// bytes are PUT there. Either way the document streams from doc.Open and is never whole in
// memory.
func (c *Client) upload(ctx context.Context, doc vendors.Document, ct string) (string, error) {
	meta, err := json.Marshal(map[string]string{"contentType": ct, "name": vendors.UploadName(doc)})
	if err != nil {
		return "", err
	}
	uri := c.endpoint(nil, "documents")
	var created struct {
		DocumentID *string `json:"documentId"`
		FileURL    *string `json:"fileUrl"`
	}
	if inline(doc.Size) {
		// {"contentType":…,"name":…,"content":"<base64>"}: the metadata object with its closing
		// brace replaced by the content member.
		prefix := string(meta[:len(meta)-1]) + `,"content":"`
		suffix := `"}`
		res, err := c.do(ctx, "submit", func(ctx context.Context) (*http.Request, error) {
			body, err := base64Body(ctx, doc, prefix, suffix)
			if err != nil {
				return nil, err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri, body)
			if err != nil {
				body.Close()
				return nil, err
			}
			if doc.Size > 0 {
				req.ContentLength = int64(len(prefix)) + int64(base64.StdEncoding.EncodedLen(int(doc.Size))) + int64(len(suffix))
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			return req, nil
		})
		if err != nil {
			return "", err
		}
		raw, err := vendors.ReadJSON(name, "submit", res, &created)
		if err != nil {
			return "", err
		}
		if created.DocumentID == nil || *created.DocumentID == "" {
			return "", vendors.Malformed(name, "submit", errors.New("the document was created without a documentId"), raw)
		}
		return *created.DocumentID, nil
	}

	res, err := c.do(ctx, "submit", jsonRequest(http.MethodPost, uri, json.RawMessage(meta)))
	if err != nil {
		return "", err
	}
	raw, err := vendors.ReadJSON(name, "submit", res, &created)
	if err != nil {
		return "", err
	}
	switch {
	case created.DocumentID == nil || *created.DocumentID == "":
		return "", vendors.Malformed(name, "submit", errors.New("the document was created without a documentId"), raw)
	case created.FileURL == nil || *created.FileURL == "":
		return "", vendors.Malformed(name, "submit", errors.New("the document was created without a fileUrl for its bytes"), raw)
	}
	if _, err := vendors.ParseHTTPURL("file URL", *created.FileURL); err != nil {
		return "", vendors.Malformed(name, "submit", err, raw)
	}
	fileURL := *created.FileURL
	// The raw bytes with the Bearer header, as Cradl's SDK sends them.
	res, err = c.do(ctx, "upload", func(ctx context.Context) (*http.Request, error) {
		body, err := doc.Open(ctx)
		if err != nil {
			return nil, fmt.Errorf("open the document: %w", err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, fileURL, body)
		if err != nil {
			body.Close()
			return nil, err
		}
		req.ContentLength = doc.Size
		return req, nil
	})
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	return *created.DocumentID, nil
}

// base64Body streams prefix, the document in base64, and suffix. A goroutine encodes into a
// pipe as the transport reads; when the transport closes the body early (an error, a cancelled
// context) the goroutine's next write fails and it ends, closing the document.
func base64Body(ctx context.Context, doc vendors.Document, prefix, suffix string) (io.ReadCloser, error) {
	r, err := doc.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open the document: %w", err)
	}
	pr, pw := io.Pipe()
	go func() {
		defer r.Close()
		_, err := io.WriteString(pw, prefix)
		if err == nil {
			enc := base64.NewEncoder(base64.StdEncoding, pw)
			if _, err = io.Copy(enc, r); err == nil {
				err = enc.Close()
			}
		}
		if err == nil {
			_, err = io.WriteString(pw, suffix)
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// prediction is what this client reads of a Prediction.
type prediction struct {
	PredictionID string          `json:"predictionId"`
	Status       *string         `json:"status"`
	Error        json.RawMessage `json:"error"`
	NextPage     *int            `json:"nextPage"`
	Predictions  json.RawMessage `json:"predictions"`
}

// refSep joins the prediction ids of a document's pages into one reference; Cradl's ids
// (las:prediction:<hex>) have no commas.
const refSep = ","

// predict runs the model over every page: POST /predictions answers synchronously for the
// pages it did, and nextPage says where to go on. The reference is the first page's
// predictionId, followed by the others' when there were several, so that Result can fetch each
// again rather than predict (and pay) twice.
func (c *Client) predict(ctx context.Context, docID string) (string, error) {
	var ids []string
	var start *int
	for range maxPredictionPages {
		body := map[string]any{"documentId": docID, "modelId": c.cfg.ModelID}
		if start != nil {
			body["preprocessConfig"] = map[string]any{"startPage": *start}
		}
		res, err := c.do(ctx, "predict", jsonRequest(http.MethodPost, c.endpoint(nil, "predictions"), body))
		if err != nil {
			return "", err
		}
		var p prediction
		raw, err := vendors.ReadJSON(name, "predict", res, &p)
		if err != nil {
			return "", err
		}
		if p.PredictionID == "" || strings.Contains(p.PredictionID, refSep) {
			return "", vendors.Malformed(name, "predict", errors.New("the prediction has no usable predictionId"), raw)
		}
		ids = append(ids, p.PredictionID)
		if p.NextPage == nil {
			return strings.Join(ids, refSep), nil
		}
		if start != nil && *p.NextPage <= *start || *p.NextPage < 0 {
			return "", vendors.Malformed(name, "predict", fmt.Errorf("nextPage %d does not move on", *p.NextPage), raw)
		}
		start = p.NextPage
	}
	return "", &vendors.Error{Vendor: name, Op: "predict", Permanent: true,
		Message: fmt.Sprintf("the document has more than %d prediction pages", maxPredictionPages)}
}

// predictionIDs splits a predictions-mode reference.
func predictionIDs(op, ref string) ([]string, error) {
	ids := strings.Split(ref, refSep)
	for _, id := range ids {
		if id == "" || id == "." || id == ".." {
			return nil, &vendors.Error{Vendor: name, Op: op, Permanent: true, Message: fmt.Sprintf("%q is not a Cradl prediction reference", ref)}
		}
	}
	return ids, nil
}

func (c *Client) getPrediction(ctx context.Context, op, id string) (prediction, []byte, error) {
	res, err := c.do(ctx, op, jsonRequest(http.MethodGet, c.endpoint(nil, "predictions", id), nil))
	if err != nil {
		return prediction{}, nil, err
	}
	var p prediction
	raw, err := vendors.ReadJSON(name, op, res, &p)
	return p, raw, err
}

// checkPrediction: every page's prediction must have succeeded; one failed page fails the
// document. A prediction without a status (the synchronous answer of older API versions) that
// carries predictions is done.
func (c *Client) checkPrediction(ctx context.Context, ref string) (vendors.Progress, error) {
	ids, err := predictionIDs("status", ref)
	if err != nil {
		return vendors.Progress{}, err
	}
	done := true
	for _, id := range ids {
		p, raw, err := c.getPrediction(ctx, "status", id)
		if err != nil {
			return vendors.Progress{}, err
		}
		status := ""
		switch {
		case p.Status != nil:
			status = *p.Status
		case len(p.Predictions) > 0 && string(p.Predictions) != "null":
			status = "succeeded"
		default:
			return vendors.Progress{}, vendors.Malformed(name, "status", errors.New("the prediction has neither a status nor predictions"), raw)
		}
		switch status {
		case "succeeded":
		case "failed":
			msg := errorText(p.Error)
			if msg == "" {
				msg = "no reason given"
			}
			return vendors.Progress{Done: true, Failed: true, Error: fmt.Sprintf("Cradl prediction %s failed: %s", id, msg)}, nil
		case "pending", "running":
			done = false
		default:
			c.log.WarnContext(ctx, "cradl: unknown prediction status, treating it as pending", "prediction", id, "status", status)
			done = false
		}
	}
	return vendors.Progress{Done: done}, nil
}

// predictionResult fetches every page's prediction. Raw is the prediction JSON verbatim; for a
// document of several pages, the array of the pages' predictions.
func (c *Client) predictionResult(ctx context.Context, ref string) (vendors.Result, error) {
	ids, err := predictionIDs("result", ref)
	if err != nil {
		return vendors.Result{}, err
	}
	var out vendors.Result
	raws := make([]json.RawMessage, 0, len(ids))
	for _, id := range ids {
		p, raw, err := c.getPrediction(ctx, "result", id)
		if err != nil {
			return vendors.Result{}, err
		}
		fields, err := NormalizePredictions(p.Predictions)
		if err != nil {
			return vendors.Result{}, vendors.Malformed(name, "result", err, raw)
		}
		out.Fields = append(out.Fields, fields...)
		raws = append(raws, raw)
	}
	if len(raws) == 1 {
		out.Raw = raws[0]
	} else {
		out.Raw, _ = json.Marshal(raws)
	}
	return out, nil
}

// errorText is an error member as text: a string, an object's message, or its JSON.
func errorText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) == nil {
		for _, k := range []string{"message", "errorMessage", "reason", "error", "cause"} {
			if v, ok := m[k].(string); ok && v != "" {
				return v
			}
		}
		if len(m) > 0 {
			return vendors.Excerpt(raw)
		}
	}
	return ""
}
