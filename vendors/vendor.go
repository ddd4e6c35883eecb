// Package vendors is the contract between ingest and a document-AI vendor: the Vendor interface
// each vendor package implements (and Reconciler, CallbackVendor, Finisher where the vendor can),
// the correlation tags that make a lost submission findable, the Spec through which a vendor's
// settings and client reach ingest, and the HTTP kit the clients share (errors the engine can act
// on, OAuth2 tokens, one retry after a 401, rate limits, streamed multipart). The engine that
// drives documents through vendors is package dispatch; the list of vendors is vendors/catalog.
package vendors

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/ingest-dev/ingest/events"
)

// Vendor is one document-AI service. Implementations are safe for concurrent use.
type Vendor interface {
	// Name is the vendor's name in config, subjects and events: its key under vendors:.
	Name() string
	// Submit hands a document to the vendor and returns the vendor's reference for it (job id,
	// document id, case id). Errors should be *Error so that the dispatcher can tell a refusal
	// (permanent) from a hiccup (transient).
	Submit(ctx context.Context, doc Document) (ref string, err error)
	// Check asks whether the vendor is done with ref.
	Check(ctx context.Context, ref string) (Progress, error)
	// Result fetches the outcome of a finished ref.
	Result(ctx context.Context, ref string) (Result, error)
}

// Document is what a vendor gets to submit.
type Document struct {
	ID          string
	Filename    string
	ContentType string
	Size        int64
	SHA256      string
	Metadata    map[string]string
	// Tag is this attempt's correlation tag (NewTag): clients put it where the vendor keeps it
	// and shows it back — UploadName as the file name where nothing better exists — so that
	// Find can recognise exactly this document's jobs.
	Tag string
	// Open streams the bytes. It may be called more than once (a retry after a refreshed token);
	// each reader must be closed.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// Progress is a vendor's answer to "are you done?".
type Progress struct {
	Done   bool
	Failed bool   // the vendor gave up on the document (an error status)
	Error  string // the vendor's words when Failed
	// RetryAfter is the vendor's hint for the next look, zero when it gave none.
	RetryAfter time.Duration
}

// Result is what a vendor made of a document, normalised, with its own JSON kept verbatim.
type Result struct {
	Text      string
	Fields    []events.Field
	Artifacts []Artifact
	Raw       json.RawMessage
}

// Artifact is a result file (a searchable PDF as a ZIP, …). The poller streams it into the
// Object Store.
type Artifact struct {
	Name        string
	ContentType string
	Open        func(ctx context.Context) (io.ReadCloser, error)
}

// Finisher is implemented by vendors that want to hear that a result was taken (PATCH
// the execution to "completed", as its own integrations do). The poller calls it after the
// completed event is durable; an error is only logged.
type Finisher interface {
	Finish(ctx context.Context, ref string) error
}

// CallbackVendor is implemented by vendors that call us back when they are done.
type CallbackVendor interface {
	// CallbackIDs reads the vendor's identifiers out of a callback body, trusting nothing else in
	// it and doing no I/O (it runs while the vendor waits for our answer). An error means the body
	// is not a callback of this vendor.
	CallbackIDs(body []byte) ([]string, error)
	// RefOf maps an identifier from a callback to the reference Submit returned: often the same,
	// sometimes found through the vendor's API (an execution started by e-mail). "" means the
	// identifier is not one of ours.
	RefOf(ctx context.Context, id string) (string, error)
	// CallbackVerifier checks the signature of the vendor's callbacks; nil when they carry none
	// (or none is configured), and the secret URL and address list are all there is.
	CallbackVerifier() CallbackVerifier
}
