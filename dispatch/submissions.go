package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// Submission states, kept per (document, vendor) in the submissions bucket. The record is written
// before the vendor is called, so a crash during the call leaves a trace: an in-flight record
// without a reference is an in-doubt submission.
const (
	stateInFlight  = "in_flight"
	stateRetry     = "retry" // the vendor answered "not now": nothing was submitted
	stateSubmitted = "submitted"
	stateFailed    = "failed"
)

type submission struct {
	State    string    `json:"state"`
	Ref      string    `json:"ref,omitempty"`
	Attempts int       `json:"attempts"`
	Started  time.Time `json:"started,omitzero"` // when the attempt in flight began
	// FirstStarted is when the first attempt began: Find looks at everything since then, since
	// any attempt may have reached the vendor.
	FirstStarted time.Time `json:"first_started,omitzero"`
	// Owner is the instance making the attempt (liveness.Registry.Self): when its heartbeat is
	// gone, another instance settles the attempt at once.
	Owner string `json:"owner,omitempty"`
	// InDoubt: the attempt got no answer (timeout, connection lost, shutdown): the vendor may or
	// may not have the document. The next delivery reconciles at once instead of waiting out
	// the lease.
	InDoubt bool `json:"in_doubt,omitempty"`
	// InDoubtSince is when the vendor first could not tell us whether it has the document;
	// Candidates are its jobs that may be ours. Both are shown to the operator.
	InDoubtSince time.Time `json:"in_doubt_since,omitzero"`
	Candidates   []string  `json:"candidates,omitempty"`
	// NotBefore is when a retry may be made (the vendor's Retry-After, or our backoff).
	NotBefore   time.Time `json:"not_before,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	SubmittedAt time.Time `json:"submitted_at,omitzero"`
	Reconciled  bool      `json:"reconciled,omitempty"`
}

type submissions struct{ kv jetstream.KeyValue }

func openSubmissions(ctx context.Context, bus *events.Bus) (*submissions, error) {
	kv, err := bus.KeyValue(ctx, events.BucketSpec{
		Purpose: "submissions", Description: "ingest submissions per document and vendor (in flight, submitted, failed)",
	})
	if err != nil {
		return nil, err
	}
	return &submissions{kv: kv}, nil
}

func subKey(docID, vendor string) string { return docID + "." + vendor }

// get returns the record and its revision; revision 0 means none.
func (s *submissions) get(ctx context.Context, docID, vendor string) (submission, uint64, error) {
	e, err := s.kv.Get(ctx, subKey(docID, vendor))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return submission{}, 0, nil
	}
	if err != nil {
		return submission{}, 0, fmt.Errorf("read submission record: %w", err)
	}
	var r submission
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return submission{}, 0, fmt.Errorf("submission record %s is damaged: %w", e.Key(), err)
	}
	return r, e.Revision(), nil
}

// put writes r if the record is still at rev (0: absent). errLost means someone else wrote first.
func (s *submissions) put(ctx context.Context, docID, vendor string, r submission, rev uint64) (uint64, error) {
	body, _ := json.Marshal(r)
	var err error
	var nrev uint64
	if rev == 0 {
		nrev, err = s.kv.Create(ctx, subKey(docID, vendor), body)
	} else {
		nrev, err = s.kv.Update(ctx, subKey(docID, vendor), body, rev)
	}
	if events.IsConflict(err) {
		return 0, errLost
	}
	if err != nil {
		return 0, fmt.Errorf("write submission record: %w", err)
	}
	return nrev, nil
}

var errLost = errors.New("another worker changed the submission record first")

// forDocument returns the records of one document by vendor.
func (s *submissions) forDocument(ctx context.Context, docID string) (map[string]submission, error) {
	w, err := s.kv.Watch(ctx, docID+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	out := map[string]submission{}
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // all current values delivered
				return out, nil
			}
			var r submission
			if json.Unmarshal(e.Value(), &r) == nil {
				out[e.Key()[len(docID)+1:]] = r
			}
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}
