package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	// Kept as long as the events: once a received or retried event is gone from the stream it
	// can never be delivered again, so its submission record has nothing left to guard.
	kv, err := bus.KeyValue(ctx, events.BucketSpec{
		Purpose: "submissions", Description: "ingest submissions per document and vendor (in flight, submitted, failed)",
		TTL: bus.Retention(),
	})
	if err != nil {
		return nil, err
	}
	return &submissions{kv: kv}, nil
}

// slot is one round of a (document, vendor): what a submission record, its correlation tags
// and its events are about. Round 0 is the document's first; a retried event starts round n.
type slot struct {
	doc, vendor string
	round       int
}

// key is the slot's submission record: <doc>.<vendor> for round 0 (as before rounds existed),
// <doc>.<vendor>.r<n> after.
func (s slot) key() string {
	k := s.doc + "." + s.vendor
	if s.round > 0 {
		k += ".r" + strconv.Itoa(s.round)
	}
	return k
}

// correlationID is the identity the vendor sees (vendors.Document.ID): its tags and Find are
// derived from it. Round 0 keeps the document id; a later round is <doc>.r<n>, so that a job of
// one round can never be taken for another round's: only an exact tag match counts, and the
// tags of different rounds share no prefix.
func (s slot) correlationID() string {
	if s.round == 0 {
		return s.doc
	}
	return s.doc + ".r" + strconv.Itoa(s.round)
}

// eventID is the id of the slot's event of kind k.
func (s slot) eventID(k events.Kind) string { return events.VendorStepID(s.doc, k, s.vendor, s.round) }

// get returns the record and its revision; revision 0 means none.
func (s *submissions) get(ctx context.Context, sl slot) (submission, uint64, error) {
	e, err := s.kv.Get(ctx, sl.key())
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
func (s *submissions) put(ctx context.Context, sl slot, r submission, rev uint64) (uint64, error) {
	body, _ := json.Marshal(r)
	var err error
	var nrev uint64
	if rev == 0 {
		nrev, err = s.kv.Create(ctx, sl.key(), body)
	} else {
		nrev, err = s.kv.Update(ctx, sl.key(), body, rev)
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

// forDocument returns the records of one document by vendor and round.
func (s *submissions) forDocument(ctx context.Context, docID string) (map[string]map[int]submission, error) {
	w, err := s.kv.Watch(ctx, docID+".>", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	out := map[string]map[int]submission{}
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // all current values delivered
				return out, nil
			}
			vendor, round, ok := parseKey(docID, e.Key())
			var r submission
			if ok && json.Unmarshal(e.Value(), &r) == nil {
				if out[vendor] == nil {
					out[vendor] = map[int]submission{}
				}
				out[vendor][round] = r
			}
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// parseKey reads vendor and round back from a record's key.
func parseKey(docID, key string) (vendor string, round int, ok bool) {
	rest, found := strings.CutPrefix(key, docID+".")
	if !found {
		return "", 0, false
	}
	vendor, r, hasRound := strings.Cut(rest, ".")
	if !hasRound {
		return vendor, 0, vendor != ""
	}
	n, err := strconv.Atoi(strings.TrimPrefix(r, "r"))
	if err != nil || !strings.HasPrefix(r, "r") || n < 1 {
		return "", 0, false
	}
	return vendor, n, vendor != ""
}
