package events

import (
	"encoding/json"
	"time"
)

// Source kinds: the last subject token of received and rejected events.
const (
	SourceHTTP   = "http"
	SourceIMAP   = "imap"
	SourceWebDAV = "webdav"
)

// SourceRef says where a document came from: kind (http, imap, webdav) and the configured name.
type SourceRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// ReceivedData is the data of ingest.document.received.<source>.
type ReceivedData struct {
	DocumentID  string    `json:"document_id"`
	Source      SourceRef `json:"source"`
	Filename    string    `json:"filename"`
	ContentType string    `json:"content_type"` // sniffed from the bytes, never the sender's claim
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"` // hex
	ObjectKey   string    `json:"object_key"`
	// Metadata: mail (from, to, subject, message_id, date), WebDAV (path, etag), HTTP (the
	// client's form fields and query parameters).
	Metadata map[string]string `json:"metadata,omitempty"`
	// Vendors are the vendors the document goes to: named by the sender, else chosen by Route.
	Vendors    []string  `json:"vendors,omitempty"`
	Route      string    `json:"route,omitempty"`
	ReceivedAt time.Time `json:"received_at"`
}

// SubmittedData is the data of ingest.document.submitted.<vendor>.
type SubmittedData struct {
	DocumentID  string    `json:"document_id"`
	Vendor      string    `json:"vendor"`
	VendorRef   string    `json:"vendor_ref"`
	SubmittedAt time.Time `json:"submitted_at"`
	Attempts    int       `json:"attempts,omitempty"` // submission attempts it took
	// Reconciled is set when the submission was found at the vendor after an interrupted attempt
	// rather than made anew.
	Reconciled bool   `json:"reconciled,omitempty"`
	Route      string `json:"route,omitempty"`
	// Round is which round of the (document, vendor) this is: 0 the first, n after the n-th
	// retry (see RetriedData).
	Round int `json:"round,omitempty"`
}

// Field is one extracted value, normalised across vendors.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Currency is set for amounts ("24.99:EUR" from a vendor becomes value 24.99, currency EUR).
	Currency   string   `json:"currency,omitempty"`
	Confidence *float64 `json:"confidence,omitempty"`
	Page       *int     `json:"page,omitempty"`
	Box        *Box     `json:"box,omitempty"`
}

// Box is a field's position on its page, in the vendor's units.
type Box struct {
	X      float64 `json:"x"`
	Y      float64 `json:"y"`
	Width  float64 `json:"width"`
	Height float64 `json:"height"`
}

// Artifact is a result file kept in the Object Store.
type Artifact struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	ObjectKey   string `json:"object_key"`
	Size        int64  `json:"size"`
}

// CompletedData is the data of ingest.document.completed.<vendor>.
type CompletedData struct {
	DocumentID string          `json:"document_id"`
	Vendor     string          `json:"vendor"`
	VendorRef  string          `json:"vendor_ref"`
	Text       string          `json:"text,omitempty"`
	Fields     []Field         `json:"fields,omitempty"`
	Artifacts  []Artifact      `json:"artifacts,omitempty"`
	Raw        json.RawMessage `json:"raw,omitempty"` // the vendor's JSON, verbatim
	// ResultObjectKey is set when text and raw were too large for an event: the whole
	// CompletedData (with them) is stored there as JSON, and the event carries them empty.
	ResultObjectKey string    `json:"result_object_key,omitempty"`
	CompletedAt     time.Time `json:"completed_at"`
	Round           int       `json:"round,omitempty"` // see SubmittedData.Round
}

// FailedData is the data of ingest.document.failed.<vendor>.
type FailedData struct {
	DocumentID string    `json:"document_id"`
	Vendor     string    `json:"vendor"`
	VendorRef  string    `json:"vendor_ref,omitempty"`
	Error      string    `json:"error"` // the vendor's own words where it gave any
	Permanent  bool      `json:"permanent"`
	Attempts   int       `json:"attempts,omitempty"`
	FailedAt   time.Time `json:"failed_at"`
	Round      int       `json:"round,omitempty"` // see SubmittedData.Round
}

// RetriedData is the data of ingest.document.retried.<vendor>: a new round for a (document,
// vendor) whose previous round failed. Round counts from 1 (the first retry); the submitted,
// completed and failed events of the round carry it too, and events of an older round no longer
// change the vendor's state once a newer round began.
type RetriedData struct {
	DocumentID  string    `json:"document_id"`
	Vendor      string    `json:"vendor"`
	Round       int       `json:"round"`
	RequestedAt time.Time `json:"requested_at"`
	// RequestedBy names who asked: the API client (a digest prefix of its key), "cli", "console".
	RequestedBy string `json:"requested_by,omitempty"`
	// PreviousError is the failure of the round before, kept for the record.
	PreviousError string `json:"previous_error,omitempty"`
}

// RejectedData is the data of ingest.document.rejected.<source>: an input that could not become a
// document (wrong type, too large, broken MIME). The original bytes stay in the Object Store under
// ObjectKey, where there were any, for inspection.
type RejectedData struct {
	DocumentID  string            `json:"document_id"`
	Source      SourceRef         `json:"source"`
	Filename    string            `json:"filename,omitempty"`
	Reason      string            `json:"reason"` // short code: unsupported_type, too_large, malformed
	Detail      string            `json:"detail"` // a sentence for people
	ObjectKey   string            `json:"object_key,omitempty"`
	Size        int64             `json:"size,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	RejectedAt  time.Time         `json:"rejected_at"`
	ContentType string            `json:"content_type,omitempty"`
}

// DeliveryFailedData is the data of <namespace>.delivery.failed.<subscription>: a webhook
// delivery that ran out of attempts (or of time) — a dead letter. It names the event by id and
// stream sequence, so that it can be delivered again (POST
// /v1/subscriptions/{name}/dead-letters/{event_id}/redeliver).
type DeliveryFailedData struct {
	Subscription   string    `json:"subscription"`
	EventID        string    `json:"event_id"`
	EventType      string    `json:"event_type"`
	EventSubject   string    `json:"event_subject"` // the NATS subject the event was published on
	DocumentID     string    `json:"document_id"`
	StreamSequence uint64    `json:"stream_sequence"`
	Attempts       int       `json:"attempts"`
	LastStatus     int       `json:"last_status,omitempty"` // the receiver's last HTTP status; 0: no answer
	LastError      string    `json:"last_error"`
	FirstAttemptAt time.Time `json:"first_attempt_at,omitzero"`
	LastAttemptAt  time.Time `json:"last_attempt_at"`
	FailedAt       time.Time `json:"failed_at"`
}
