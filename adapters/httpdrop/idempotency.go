package httpdrop

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/intake"
)

// Idempotency-Key, as the IETF draft (draft-ietf-httpapi-idempotency-key-header) describes it: the
// first request with a key is processed, a repeat gets the first answer again (same document ids,
// no new event), a repeat while the first is still running gets 409, and the key reused for a
// different request gets 422. Records live in a Key-Value bucket, so every instance sees them.
//
// What makes it hold across crashes:
//   - The document ids of a keyed request derive from the key and the time of its first claim,
//     so whoever finishes the request — the first instance, or another after the first died —
//     gives the same ids. A retry can never create a second document.
//   - A claim names its instance and its attempt. While the instance has a heartbeat, a repeat is
//     told 409 (retry shortly); once the heartbeat is gone, the repeat takes the claim over at
//     once and completes the request, reusing what the dead attempt stored and announced.
//   - A request that fails before anything was announced frees its key; one that fails after
//     (or while not knowing whether) something was announced leaves the key "open": the next
//     request with it takes it over and keeps the ids. Writes the store did not confirm are
//     settled by a background sweep, so a claim written late (NATS came back after we answered
//     503) does not lock the key.

// Record states.
const (
	statePending = "pending" // a request is running
	stateDone    = "done"    // answered; repeats get the answer
	stateOpen    = "open"    // a request failed after its ids were used; the next one continues
)

// pendingStaleAfter bounds a claim whose instance still has a heartbeat but never finished (a
// request stuck in a live process): the key is taken over after that long all the same.
const pendingStaleAfter = time.Hour

// claimTimeout bounds the claim's round trips to JetStream: a client should hear 503 quickly
// when the event store is away, not after the default request timeout.
const claimTimeout = 5 * time.Second

type idemRecord struct {
	State string `json:"state"`
	// Started is when the key was first claimed: the request's document ids derive from it.
	Started     time.Time `json:"started"`
	Owner       string    `json:"owner,omitempty"` // the instance running the request
	Attempt     string    `json:"attempt,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Response    *Response `json:"response,omitempty"`
}

// claim is a key held by this request.
type claim struct {
	kvKey    string
	rev      uint64
	rec      idemRecord
	takeover bool // the key was claimed before: ids may be stored and announced already
}

// docID is the id of the request's i-th file.
func (cl *claim) docID(i int) string {
	return intake.DerivedDocumentID(cl.rec.Started, fmt.Sprintf("idempotency/%s/%d", cl.kvKey, i))
}

func validIdempotencyKey(k string) error {
	if len(k) > 255 {
		return httpapi.NewProblem(http.StatusBadRequest, "the Idempotency-Key is longer than 255 characters")
	}
	for _, r := range k {
		if r < 0x21 || r > 0x7e {
			return httpapi.NewProblem(http.StatusBadRequest, "the Idempotency-Key must be printable ASCII without spaces")
		}
	}
	return nil
}

// storeUnavailable is the answer whenever JetStream cannot be reached during an upload: never a
// 500, always a sentence and a time to come back.
func storeUnavailable(what string, err error) error {
	return httpapi.NewProblem(http.StatusServiceUnavailable,
		"the event store (NATS JetStream) is not available, so %s; nothing is lost, retry in a few seconds (%v)", what, err).
		WithHeader("Retry-After", "5")
}

func newAttemptID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// claim reserves key for this request, or returns the finished record of an earlier one.
func (d *Drop) claim(ctx context.Context, client, key string) (*claim, *idemRecord, error) {
	sum := sha256.Sum256([]byte(key))
	kvKey := "k" + client + "_" + hex.EncodeToString(sum[:16])
	ctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	for range 3 {
		rec := idemRecord{State: statePending, Started: time.Now().UTC(), Owner: d.self(), Attempt: newAttemptID()}
		body, _ := json.Marshal(rec)
		// Running before the record names it: a repeat on this instance must never take a
		// claim of a request that is still under way here for one left behind.
		d.running.Store(rec.Attempt, struct{}{})
		rev, err := d.idem.Create(ctx, kvKey, body)
		if err == nil {
			return &claim{kvKey: kvKey, rev: rev, rec: rec}, nil, nil
		}
		d.running.Delete(rec.Attempt)
		if !errors.Is(err, jetstream.ErrKeyExists) {
			// The write may still land (NATS buffers it while reconnecting): have the sweep
			// remove it, so that it cannot lock the key.
			d.sweep.add(kvKey, rec.Attempt, nil, time.Now().Add(2*time.Minute))
			return nil, nil, storeUnavailable("the Idempotency-Key could not be reserved", err)
		}
		e, err := d.idem.Get(ctx, kvKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // freed between our Create and Get
		}
		if err != nil {
			return nil, nil, storeUnavailable("the Idempotency-Key could not be read", err)
		}
		var old idemRecord
		if err := json.Unmarshal(e.Value(), &old); err != nil {
			return nil, nil, fmt.Errorf("Idempotency-Key record is not valid JSON: %w", err)
		}
		if old.State == stateDone {
			return nil, &old, nil
		}
		if err := d.mayTakeOver(ctx, old); err != nil {
			return nil, nil, err
		}
		// Take the key over, keeping its first claim's time and so its document ids.
		rec.Started = old.Started
		body, _ = json.Marshal(rec)
		d.running.Store(rec.Attempt, struct{}{})
		rev, err = d.idem.Update(ctx, kvKey, body, e.Revision())
		if err != nil {
			d.running.Delete(rec.Attempt)
			if events.IsConflict(err) {
				return nil, nil, httpapi.NewProblem(http.StatusConflict,
					"another request took over this Idempotency-Key; retry shortly").WithHeader("Retry-After", "2")
			}
			d.sweep.add(kvKey, rec.Attempt, nil, time.Now().Add(2*time.Minute))
			return nil, nil, storeUnavailable("the Idempotency-Key could not be taken over", err)
		}
		d.log.InfoContext(ctx, "continuing an Idempotency-Key request whose first attempt did not finish",
			"first_claimed", old.Started, "previous_owner", old.Owner, "previous_state", old.State)
		return &claim{kvKey: kvKey, rev: rev, rec: rec, takeover: true}, nil, nil
	}
	return nil, nil, httpapi.NewProblem(http.StatusConflict,
		"this Idempotency-Key is being claimed and freed by other requests at once; retry shortly").WithHeader("Retry-After", "2")
}

// mayTakeOver decides whether the request that holds a pending claim is still running: nil means
// it is not and the claim may be taken over.
func (d *Drop) mayTakeOver(ctx context.Context, old idemRecord) error {
	busy := httpapi.NewProblem(http.StatusConflict,
		"a request with this Idempotency-Key is still being processed; retry when it has finished").WithHeader("Retry-After", "2")
	switch {
	case old.State == stateOpen:
		return nil
	case time.Since(old.Started) > pendingStaleAfter:
		return nil
	case d.cfg.Liveness == nil:
		return busy
	case old.Owner == d.self():
		// Our own instance: it knows whether the attempt still runs.
		if _, ok := d.running.Load(old.Attempt); ok {
			return busy
		}
		return nil
	}
	alive, err := d.cfg.Liveness.Alive(ctx, old.Owner)
	if err != nil {
		return storeUnavailable("it cannot be told whether the request holding this Idempotency-Key still runs", err)
	}
	if alive {
		return busy
	}
	return nil
}

// complete records the answer, for repeats of the request.
func (d *Drop) complete(ctx context.Context, cl *claim, fingerprint string, resp Response) {
	defer d.running.Delete(cl.rec.Attempt)
	rec := idemRecord{State: stateDone, Started: cl.rec.Started, Fingerprint: fingerprint, Response: &resp}
	body, _ := json.Marshal(rec)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	if _, err := d.idem.Update(wctx, cl.kvKey, body, cl.rev); err != nil {
		// The documents are accepted. Until the record is written, a repeat continues the request
		// (same ids, nothing announced twice); the sweep keeps trying to write it.
		d.log.WarnContext(ctx, "could not record the Idempotency-Key answer yet", "err", err)
		if !events.IsConflict(err) {
			d.sweep.add(cl.kvKey, cl.rec.Attempt, body, time.Now().Add(10*time.Minute))
		}
	}
}

// release gives the key back after a failed request. burned says whether the request's ids may be
// in use (an announcement was tried, or the key was taken over): the key is then left open, for
// the next request to continue with the same ids; otherwise it is freed.
func (d *Drop) release(ctx context.Context, cl *claim, burned bool) {
	defer d.running.Delete(cl.rec.Attempt)
	var body []byte
	if burned {
		body, _ = json.Marshal(idemRecord{State: stateOpen, Started: cl.rec.Started})
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	var err error
	if body == nil {
		err = d.idem.Delete(wctx, cl.kvKey, jetstream.LastRevision(cl.rev))
	} else {
		_, err = d.idem.Update(wctx, cl.kvKey, body, cl.rev)
	}
	if err != nil && !events.IsConflict(err) {
		d.log.WarnContext(ctx, "could not release an Idempotency-Key after a failed request yet; retrying in the background", "err", err)
		d.sweep.add(cl.kvKey, cl.rec.Attempt, body, time.Now().Add(10*time.Minute))
	}
}

func (d *Drop) self() string {
	if d.cfg.Liveness == nil {
		return ""
	}
	return d.cfg.Liveness.Self()
}

// sweep settles Idempotency-Key writes the store did not confirm: a claim that may land late
// (removed), an answer or a release that did not go through (written again). Each entry applies
// only while the record is still the pending claim of that attempt.
type sweep struct {
	mu      sync.Mutex
	entries map[string]sweepEntry // kvKey → what to do
}

type sweepEntry struct {
	attempt string
	value   []byte // nil: delete the record
	until   time.Time
}

func (s *sweep) add(kvKey, attempt string, value []byte, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = map[string]sweepEntry{}
	}
	s.entries[kvKey] = sweepEntry{attempt: attempt, value: value, until: until}
}

func (s *sweep) pending() map[string]sweepEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]sweepEntry, len(s.entries))
	for k, e := range s.entries {
		out[k] = e
	}
	return out
}

func (s *sweep) done(kvKey, attempt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[kvKey]; ok && e.attempt == attempt {
		delete(s.entries, kvKey)
	}
}

// runSweep works through the sweep every interval until ctx ends.
func (d *Drop) runSweep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for kvKey, e := range d.sweep.pending() {
			if d.sweepOne(ctx, kvKey, e) {
				d.sweep.done(kvKey, e.attempt)
			}
		}
	}
}

// sweepOne applies one entry; true means it needs no more looking after.
func (d *Drop) sweepOne(ctx context.Context, kvKey string, e sweepEntry) bool {
	ctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	entry, err := d.idem.Get(ctx, kvKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// Nothing (yet): a claim sent while NATS was away may still arrive, so keep looking
		// until the entry's time is up.
		return time.Now().After(e.until)
	case err != nil:
		return time.Now().After(e.until)
	}
	var rec idemRecord
	if json.Unmarshal(entry.Value(), &rec) != nil || rec.State != statePending || rec.Attempt != e.attempt {
		return true // someone else's now
	}
	if e.value == nil {
		err = d.idem.Delete(ctx, kvKey, jetstream.LastRevision(entry.Revision()))
	} else {
		_, err = d.idem.Update(ctx, kvKey, e.value, entry.Revision())
	}
	if err == nil {
		d.log.Info("settled an Idempotency-Key record the store had not confirmed", "state_written", map[bool]string{true: "freed", false: "written"}[e.value == nil])
	}
	return err == nil || events.IsConflict(err) || time.Now().After(e.until)
}

// check is the storeFunc of a replay: the checks of Stage, nothing stored.
func (d *Drop) check(_ context.Context, id, name string, r io.Reader) (intake.Staged, error) {
	return intake.Check(id, name, r, d.cfg.MaxDocumentBytes)
}

// replay answers a repeated request with the first answer, after checking that it is the same
// request: the body is read and hashed, nothing is stored.
func (d *Drop) replay(c echo.Context, rec *idemRecord) error {
	r, err := d.read(c, d.check, nil, nil)
	if err != nil {
		return err
	}
	if r.fingerprint() != rec.Fingerprint || rec.Response == nil {
		return d.refuse("idempotency_mismatch", mismatch())
	}
	c.Response().Header().Set("Idempotent-Replayed", "true")
	return d.answer(c, *rec.Response)
}

func mismatch() error {
	return httpapi.NewProblem(http.StatusUnprocessableEntity,
		"this Idempotency-Key was used for a different request (other files or fields); use a new key for a new request")
}
