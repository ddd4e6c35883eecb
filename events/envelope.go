// Package events is ingest's backbone on NATS JetStream: the CloudEvents envelope and its subjects,
// provisioning of the stream and buckets, idempotent publishing, streamed document bytes in the
// Object Store, and the document-state store in Key-Value.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Kind is the step of a document's life an event reports.
type Kind string

// The kinds of document events.
const (
	Received  Kind = "received"
	Submitted Kind = "submitted"
	Completed Kind = "completed"
	Failed    Kind = "failed"
	Rejected  Kind = "rejected"
	// Retried starts a new round of a (document, vendor) whose last round failed: someone asked
	// for another attempt (POST /v1/documents/{id}/retry, ingest retry).
	Retried Kind = "retried"
)

func (k Kind) valid() bool {
	switch k {
	case Received, Submitted, Completed, Failed, Rejected, Retried:
		return true
	}
	return false
}

// Type is the CloudEvents type of an event of this kind.
func (k Kind) Type() string { return typePrefix + string(k) }

const (
	typePrefix = "ingest.document."
	// SpecVersion is the CloudEvents version of the envelope.
	SpecVersion = "1.0"
	// ContentType is the NATS Content-Type header of an event: CloudEvents structured mode.
	ContentType = "application/cloudevents+json; charset=utf-8"
)

// Event is a CloudEvents 1.0 envelope in structured JSON mode. ID doubles as the Nats-Msg-Id, so it
// is the idempotency key of the step: publishing the same step twice yields one event.
type Event struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"` // the document id
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// NewEvent builds an envelope. id is the step's idempotency key, source a URI-reference naming the
// producer (see SourceURI, VendorURI), data one of the data types of this package.
func NewEvent(k Kind, id, source, documentID string, at time.Time, data any) (Event, error) {
	if !k.valid() {
		return Event{}, fmt.Errorf("unknown event kind %q", k)
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s event data: %w", k, err)
	}
	return Event{
		SpecVersion:     SpecVersion,
		ID:              id,
		Source:          source,
		Type:            k.Type(),
		Subject:         documentID,
		Time:            at.UTC(),
		DataContentType: "application/json",
		Data:            raw,
	}, nil
}

// Kind returns the step this event reports.
func (e Event) Kind() Kind {
	if len(e.Type) > len(typePrefix) && e.Type[:len(typePrefix)] == typePrefix {
		return Kind(e.Type[len(typePrefix):])
	}
	return ""
}

// DecodeData unmarshals the data into v (a *ReceivedData, *CompletedData, …).
func (e Event) DecodeData(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("event %s: data is not a valid %s: %w", e.ID, e.Type, err)
	}
	return nil
}

// ErrMalformedEvent marks a message that is not one of our events.
var ErrMalformedEvent = errors.New("malformed event")

// Decode parses and checks an envelope as published on the stream.
func Decode(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("%w: not CloudEvents JSON: %v", ErrMalformedEvent, err)
	}
	switch {
	case e.SpecVersion != SpecVersion:
		return Event{}, fmt.Errorf("%w: specversion %q, want %q", ErrMalformedEvent, e.SpecVersion, SpecVersion)
	case e.ID == "" || e.Source == "" || e.Subject == "":
		return Event{}, fmt.Errorf("%w: id, source and subject are required", ErrMalformedEvent)
	case !e.Kind().valid():
		return Event{}, fmt.Errorf("%w: unknown type %q", ErrMalformedEvent, e.Type)
	case len(e.Data) == 0 || e.Data[0] != '{':
		return Event{}, fmt.Errorf("%w: data must be a JSON object", ErrMalformedEvent)
	}
	return e, nil
}

// VendorStepID is the id (and so the Nats-Msg-Id) of a vendor step of a document: one submitted,
// completed or failed event per document, vendor and round, however often the step is retried;
// one retried event per round. Round 0 (the document's first) has the id it always had,
// <doc>.<kind>.<vendor>; later rounds add .r<round>, so that each round is its own step and a
// repeated request for the same round is one event.
func VendorStepID(docID string, k Kind, vendor string, round int) string {
	id := docID + "." + string(k) + "." + vendor
	if round > 0 {
		id += ".r" + strconv.Itoa(round)
	}
	return id
}

// SourceURI is the CloudEvents source of events produced by an input, e.g. /sources/http/api.
func SourceURI(kind, name string) string { return "/sources/" + kind + "/" + name }

// VendorURI is the CloudEvents source of events produced on behalf of a vendor.
func VendorURI(vendor string) string { return "/vendors/" + vendor }
