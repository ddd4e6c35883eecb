package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Status is a document's overall state.
type Status string

// Document statuses. A document is submitted while any vendor still works on it, failed if a
// vendor failed and none is still working, completed when every vendor it went to is done.
const (
	StatusReceived  Status = "received"
	StatusSubmitted Status = "submitted"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusRejected  Status = "rejected"
)

// Document is what is known about one document: a projection of its events. Every field is derived
// from events, so applying the same event twice, or events out of order, gives the same Document.
type Document struct {
	ID          string                  `json:"id"`
	Status      Status                  `json:"status"`
	Source      SourceRef               `json:"source"`
	Filename    string                  `json:"filename"`
	ContentType string                  `json:"content_type"`
	Size        int64                   `json:"size"`
	SHA256      string                  `json:"sha256"`
	ObjectKey   string                  `json:"object_key,omitempty"`
	Metadata    map[string]string       `json:"metadata,omitempty"`
	Vendors     map[string]*VendorState `json:"vendors"`
	Route       string                  `json:"route,omitempty"`
	Chosen      []string                `json:"chosen_vendors,omitempty"` // from the received event
	ReceivedAt  time.Time               `json:"received_at,omitzero"`
	UpdatedAt   time.Time               `json:"updated_at"`
	Error       string                  `json:"error,omitempty"` // why it was rejected
	History     []HistoryEntry          `json:"history"`
}

// VendorState is one vendor's part in a document.
type VendorState struct {
	// Status is the vendor's part in the round under way: received (waiting for the dispatcher,
	// as after a retry), submitted, completed or failed.
	Status Status `json:"status"`
	// Round is 0 for the document's first round at this vendor and n after the n-th retry (a
	// retried event); the other fields are of that round.
	Round       int       `json:"round,omitempty"`
	Ref         string    `json:"ref,omitempty"`
	Error       string    `json:"error,omitempty"`
	SubmittedAt time.Time `json:"submitted_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Attempts and LastError come from the dispatcher's submission record (see the status API),
	// not from events: retries are not events.
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// InDoubt: a submission was interrupted and the vendor cannot tell yet whether it has the
	// document; Candidates are its jobs that may be it.
	InDoubt    bool     `json:"in_doubt,omitempty"`
	Candidates []string `json:"candidates,omitempty"`
}

// HistoryEntry is one event that touched the document.
type HistoryEntry struct {
	EventID string    `json:"event_id"`
	Type    string    `json:"type"`
	Time    time.Time `json:"time"`
	Vendor  string    `json:"vendor,omitempty"`
	// Seq is the event's sequence in the stream, where it is read back with one get (0: not
	// known — recorded before sequences were kept — and looked for by its time instead).
	Seq uint64 `json:"seq,omitempty"`
}

// ErrUnknownDocument is returned for an id the store has never seen.
var ErrUnknownDocument = errors.New("unknown document")

// States is the document-state store: one Key-Value entry per document, updated with
// compare-and-set so that several instances (or the projector and a request handler) can apply
// events to it at the same time.
type States struct {
	kv jetstream.KeyValue
}

// Get returns the state of document id.
func (s *States) Get(ctx context.Context, id string) (Document, error) {
	doc, _, err := s.get(ctx, id)
	return doc, err
}

func (s *States) get(ctx context.Context, id string) (Document, uint64, error) {
	if !validKey(id) {
		return Document{}, 0, fmt.Errorf("%q: %w", id, ErrUnknownDocument)
	}
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Document{}, 0, fmt.Errorf("%s: %w", id, ErrUnknownDocument)
	}
	if err != nil {
		return Document{}, 0, fmt.Errorf("read state of %s: %w", id, err)
	}
	var doc Document
	if err := json.Unmarshal(e.Value(), &doc); err != nil {
		return Document{}, 0, fmt.Errorf("state of %s is not valid JSON: %w", id, err)
	}
	return doc, e.Revision(), nil
}

// Snapshot is a document's state as read at one moment, with its revision in the store: an
// update can start from it instead of reading the state again (Bus.RecordOn), and the store's
// compare-and-set refuses it if the state has changed since.
type Snapshot struct {
	Document
	rev   uint64
	at    time.Time
	valid bool // read (the document may be unknown: rev 0)
}

// Read returns document id's state as a Snapshot. For a document the store has never seen, the
// error is ErrUnknownDocument and the Snapshot is still valid: an empty state to start from.
func (s *States) Read(ctx context.Context, id string) (Snapshot, error) {
	at := time.Now()
	doc, rev, err := s.get(ctx, id)
	switch {
	case err == nil:
		return Snapshot{Document: doc, rev: rev, at: at, valid: true}, nil
	case errors.Is(err, ErrUnknownDocument) && validKey(id):
		return Snapshot{Document: Document{ID: id}, at: at, valid: true}, err
	}
	return Snapshot{}, err
}

// Apply folds ev, stored in the stream at sequence seq (0: not known), into its document's state.
// It returns the new state and whether ev was new to it.
func (s *States) Apply(ctx context.Context, ev Event, seq uint64) (Document, bool, error) {
	return s.applyOn(ctx, ev, seq, Snapshot{})
}

// applyOn is Apply starting from snap, when valid, instead of reading the state first.
func (s *States) applyOn(ctx context.Context, ev Event, seq uint64, snap Snapshot) (Document, bool, error) {
	id := ev.Subject
	if !validKey(id) {
		return Document{}, false, fmt.Errorf("event %s: subject %q is not a document id", ev.ID, id)
	}
	if snap.valid && snap.ID != id {
		return Document{}, false, fmt.Errorf("event %s: a state of %s given for document %s", ev.ID, snap.ID, id)
	}
	for attempt := 0; attempt < 20; attempt++ {
		var doc Document
		var rev uint64
		if attempt == 0 && snap.valid {
			doc, rev = snap.clone(), snap.rev // apply changes the document in place
		} else {
			var err error
			doc, rev, err = s.get(ctx, id)
			if err != nil && !errors.Is(err, ErrUnknownDocument) {
				return Document{}, false, err
			}
			if err != nil {
				doc = Document{ID: id}
			}
		}
		changed, err := doc.apply(ev, seq)
		if err != nil || !changed {
			return doc, false, err
		}
		body, err := json.Marshal(doc)
		if err != nil {
			return Document{}, false, fmt.Errorf("encode state of %s: %w", id, err)
		}
		if rev == 0 {
			_, err = s.kv.Create(ctx, id, body)
		} else {
			_, err = s.kv.Update(ctx, id, body, rev)
		}
		if err == nil {
			return doc, true, nil
		}
		if !IsConflict(err) {
			return Document{}, false, fmt.Errorf("write state of %s: %w", id, err)
		}
		// Someone else wrote first: read again and re-apply.
	}
	return Document{}, false, fmt.Errorf("write state of %s: too much contention", id)
}

// applyFirst is Apply for an event expected to be its document's first: the state is created
// without reading it first (from an empty state at revision 0); one that exists after all
// refuses the create, and is then read and applied to as by Apply.
func (s *States) applyFirst(ctx context.Context, ev Event, seq uint64) (Document, bool, error) {
	return s.applyOn(ctx, ev, seq, Snapshot{Document: Document{ID: ev.Subject}, valid: true})
}

// clone copies what apply changes in place (vendor slots, history), so that a Snapshot stays as
// it was read.
func (d Document) clone() Document {
	c := d
	c.History = slices.Clone(d.History)
	if d.Vendors != nil {
		c.Vendors = make(map[string]*VendorState, len(d.Vendors))
		for name, vs := range d.Vendors {
			v := *vs
			c.Vendors[name] = &v
		}
	}
	return c
}

// IsConflict reports whether a Key-Value compare-and-set write lost its race: Create found the
// key there, or Update found another revision. The server may say so in either of two ways.
func IsConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// apply folds one event in; it reports whether the document changed.
// has reports whether event id is in the document's history.
func (d *Document) has(id string) bool {
	return slices.ContainsFunc(d.History, func(h HistoryEntry) bool { return h.EventID == id })
}

func (d *Document) apply(ev Event, seq uint64) (bool, error) {
	if d.has(ev.ID) {
		return false, nil
	}
	entry := HistoryEntry{EventID: ev.ID, Type: ev.Type, Time: ev.Time, Seq: seq}
	if d.Vendors == nil {
		d.Vendors = map[string]*VendorState{}
	}
	switch k := ev.Kind(); k {
	case Received:
		var r ReceivedData
		if err := ev.DecodeData(&r); err != nil {
			return false, err
		}
		d.Source, d.Filename, d.ContentType = r.Source, r.Filename, r.ContentType
		d.Size, d.SHA256, d.ObjectKey, d.Metadata = r.Size, r.SHA256, r.ObjectKey, r.Metadata
		d.Route, d.Chosen, d.ReceivedAt = r.Route, r.Vendors, r.ReceivedAt
	case Rejected:
		var r RejectedData
		if err := ev.DecodeData(&r); err != nil {
			return false, err
		}
		d.Source, d.Filename, d.ContentType, d.Size = r.Source, r.Filename, r.ContentType, r.Size
		d.ObjectKey, d.Metadata, d.Error = r.ObjectKey, r.Metadata, r.Detail
	case Submitted, Completed, Failed, Retried:
		var v struct {
			Vendor    string `json:"vendor"`
			VendorRef string `json:"vendor_ref"`
			Error     string `json:"error"`
			Round     int    `json:"round"`
		}
		if err := ev.DecodeData(&v); err != nil {
			return false, err
		}
		if v.Vendor == "" {
			return false, fmt.Errorf("event %s: %s without a vendor", ev.ID, ev.Type)
		}
		if v.Round < 0 || k == Retried && v.Round < 1 {
			return false, fmt.Errorf("event %s: %s with round %d", ev.ID, ev.Type, v.Round)
		}
		entry.Vendor = v.Vendor
		vs := d.Vendors[v.Vendor]
		if vs == nil {
			vs = &VendorState{}
			d.Vendors[v.Vendor] = vs
		}
		// Events may arrive out of order (projector redelivery, a state write that failed and is
		// made later). The slot holds the latest (round, stage) seen: a later stage of a round
		// never goes back, and once a round has begun, events of an older one change nothing. So
		// the state is the same whatever order the events come in. Within a round a completion
		// outranks a failure: both can be published when two instances settle the same
		// submission at once (one from a callback, one polling, the vendor's result gone for the
		// second once the first took it), and the result stands.
		if v.Round > vs.Round || v.Round == vs.Round && stageOf(Status(k)) >= stageOf(vs.Status) {
			if v.Round != vs.Round || k == Retried {
				// A new round: nothing of the one before is its.
				*vs = VendorState{Round: v.Round, Status: StatusReceived}
			}
			vs.UpdatedAt = ev.Time
			if k != Retried {
				vs.Status = Status(k)
			}
			if v.VendorRef != "" {
				vs.Ref = v.VendorRef
			}
			switch k {
			case Failed:
				vs.Error = v.Error
			case Completed:
				vs.Error = ""
			}
			if k == Submitted {
				vs.SubmittedAt = ev.Time
			}
		}
	default:
		return false, fmt.Errorf("event %s: unknown type %q", ev.ID, ev.Type)
	}
	d.History = append(d.History, entry)
	slices.SortStableFunc(d.History, func(a, b HistoryEntry) int { return a.Time.Compare(b.Time) })
	if ev.Time.After(d.UpdatedAt) {
		d.UpdatedAt = ev.Time
	}
	d.Status = d.derivedStatus()
	return true, nil
}

func stageOf(s Status) int {
	switch s {
	case StatusSubmitted:
		return 1
	case StatusFailed:
		return 2
	case StatusCompleted:
		return 3
	}
	return 0
}

func (d *Document) derivedStatus() Status {
	if d.Error != "" && len(d.Vendors) == 0 {
		return StatusRejected
	}
	var working, failed, completed bool
	// A chosen vendor not heard of yet is still to come, once any vendor has been: "completed"
	// means all of them.
	for _, name := range d.Chosen {
		if _, ok := d.Vendors[name]; !ok && len(d.Vendors) > 0 {
			working = true
		}
	}
	for _, v := range d.Vendors {
		switch v.Status {
		case StatusSubmitted, StatusReceived:
			// Received: a retried round the dispatcher has not submitted yet.
			working = true
		case StatusFailed:
			failed = true
		case StatusCompleted:
			completed = true
		}
	}
	switch {
	case working:
		return StatusSubmitted
	case failed:
		return StatusFailed
	case completed:
		return StatusCompleted
	}
	return StatusReceived
}

// validKey guards Key-Value keys: document ids are UUIDs, but ids also arrive from URLs.
func validKey(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Apply folds ev into d the way the state store does, without storing anything: for other
// projections of the same events (the list index) that must never disagree with the state. It
// reports whether d changed; an event d already holds changes nothing. seq is where the stream
// stored ev (0: not known).
func (d *Document) Apply(ev Event, seq uint64) (bool, error) { return d.apply(ev, seq) }

// ValidDocumentID reports whether id can be a document id (the state store refuses others).
func ValidDocumentID(id string) bool { return validKey(id) }
