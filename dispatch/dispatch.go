// Package dispatch drives documents through the vendors: routing, the dispatcher (submits each
// received document to its vendors exactly once, through submission records and correlation
// tags) and the poller (follows submissions until the vendor is done and announces the result),
// both handlers on the events consumer runtime, and the index that maps vendor references back to
// documents for callbacks.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors"
)

// Config configures the dispatcher.
type Config struct {
	Bus     *events.Bus
	Vendors map[string]vendors.Vendor
	Router  *Router
	// Workers is how many documents are dispatched at once (default 8). Each vendor's own
	// concurrency and rate limits apply on top.
	Workers int
	// MaxAttempts is how many times a submission to one vendor is tried before it fails
	// (default 10). Waiting for another worker does not count.
	MaxAttempts  int
	RetryInitial time.Duration // first retry delay (default 2 s), doubling
	RetryMax     time.Duration // retry delay cap (default 5 min)
	// Lease is how long an in-flight submission belongs to the worker that began it even while
	// its instance lives; past it, the attempt is presumed stuck and reconciled (default 10 min:
	// longer than any upload). An instance that dies loses its submissions at once (Liveness).
	Lease time.Duration
	// InDoubtTimeout is how long a submission the vendor cannot tell us about (Find answered
	// Unknown or failed) is retried before the pair fails for an operator to decide (default 1 h).
	InDoubtTimeout time.Duration
	// Liveness tells which instances are running; it names this one in submission records. Nil:
	// an in-flight submission of another worker waits for Lease.
	Liveness Liveness
	// AckWait is how long a message stays with a worker that stopped answering for it (a crashed
	// instance) before it is delivered again (default 10 s).
	AckWait time.Duration
	// Drain is how long submissions under way may finish when Run's context ends (default 5 s).
	Drain time.Duration
	// YieldTo, when set, is intake's Priority: while documents are being received, one
	// document at a time is dispatched, so that dispatch does not take intake's cores.
	YieldTo *events.Priority
	// Refs, when set, records each vendor reference for callbacks to find their document.
	Refs   *RefIndex
	Logger *slog.Logger
	// Metrics is shared by the dispatcher and the poller; nil means unregistered ones.
	Metrics *Metrics
}

// Liveness is what the dispatcher needs to know of running instances (see package liveness).
type Liveness interface {
	Self() string
	// Alive reports whether an instance has a current heartbeat; an error means "could not tell".
	Alive(ctx context.Context, instance string) (bool, error)
	TTL() time.Duration
}

// Dispatcher submits each received document to its vendors exactly once, through a durable
// JetStream consumer shared by every instance.
type Dispatcher struct {
	cfg  Config
	subs *submissions
	ann  announcer
	log  *slog.Logger
	m    *Metrics
	c    *events.Consumer
	rc   *events.Consumer // retried events: later rounds (retry.go)
	now  func() time.Time
	// active are the submissions this instance is making now (subKey): a record that names this
	// instance but is not among them was left behind by a write that failed.
	active activeSet
}

// activeSet counts the workers on each key.
type activeSet struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *activeSet) add(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[key]++
}

func (a *activeSet) remove(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[key]--; a.n[key] <= 0 {
		delete(a.n, key)
	}
}

func (a *activeSet) has(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[key] > 0
}

var (
	errBusy   = errors.New("another worker is submitting this document")
	errNotYet = errors.New("waiting before the next attempt")
)

const (
	// defaultAckWait only has to cover a stalled worker: handlers keep their message with
	// InProgress. It is also how soon the messages of a crashed instance come back, so it is
	// short, and the service sets it to the heartbeat TTL.
	defaultAckWait   = 10 * time.Second
	dispatchConsumer = "dispatch"
	pollConsumer     = "poll"
)

// NewDispatcher provisions its consumer and bucket; Run dispatches.
func NewDispatcher(ctx context.Context, cfg Config) (*Dispatcher, error) {
	if cfg.Bus == nil || cfg.Router == nil {
		return nil, errors.New("dispatcher: Bus and Router are required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = 2 * time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 10 * time.Minute
	}
	if cfg.InDoubtTimeout <= 0 {
		cfg.InDoubtTimeout = time.Hour
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = defaultAckWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := cfg.Metrics
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	subs, serr := openSubmissions(ctx, cfg.Bus)
	if serr != nil {
		return nil, serr
	}
	d := &Dispatcher{cfg: cfg, subs: subs, ann: announcer{bus: cfg.Bus, log: cfg.Logger}, log: cfg.Logger, m: m, now: time.Now}
	var err error
	d.c, err = cfg.Bus.Consumer(ctx, events.ConsumerSpec{
		Purpose: dispatchConsumer, Description: "submits received documents to vendors",
		Filter:  cfg.Bus.Names().KindSubjects(events.Received),
		Workers: cfg.Workers, AckWait: cfg.AckWait, Drain: cfg.Drain, Background: cfg.YieldTo,
		OnPanic: d.panicked,
	}, d.handle)
	if err != nil {
		return nil, err
	}
	d.rc, err = cfg.Bus.Consumer(ctx, events.ConsumerSpec{
		Purpose: retryConsumer, Description: "submits retried documents to their vendor again (a new round)",
		Filter:  cfg.Bus.Names().KindSubjects(events.Retried),
		Workers: cfg.Workers, AckWait: cfg.AckWait, Drain: cfg.Drain, Background: cfg.YieldTo,
		OnPanic: d.panickedRetried,
	}, d.handleRetried)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Run dispatches received and retried documents until ctx ends; submissions under way then get
// Config.Drain to finish.
func (d *Dispatcher) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.c.Run(gctx) })
	g.Go(func() error { return d.rc.Run(gctx) })
	return g.Wait()
}

// panicked fails the document a panicking handler was about, at every vendor it was meant for:
// a bug met on one document must not stop the others, nor retry this one forever.
func (d *Dispatcher) panicked(ctx context.Context, dl events.Delivery, p any) events.Outcome {
	rd, err := decodeReceived(dl.Data)
	if err != nil {
		return events.Drop("not a received event")
	}
	targets := rd.Vendors
	if len(targets) == 0 {
		targets = []string{"routing"}
	}
	for _, name := range targets {
		if err := d.fail(ctx, slot{doc: rd.DocumentID, vendor: name}, submission{}, fmt.Sprintf("ingest failed on this document with an internal error (%v); it is reported in the log", p)); err != nil {
			return events.RetryAfter(d.cfg.RetryInitial)
		}
	}
	return events.Done()
}

func decodeReceived(data []byte) (events.ReceivedData, error) {
	ev, err := events.Decode(data)
	var rd events.ReceivedData
	if err == nil {
		err = ev.DecodeData(&rd)
	}
	if err == nil && rd.DocumentID == "" {
		err = errors.New("the event names no document")
	}
	return rd, err
}

func (d *Dispatcher) handle(ctx context.Context, dl events.Delivery) events.Outcome {
	rd, err := decodeReceived(dl.Data)
	if err != nil {
		return events.Drop("not a received event: " + err.Error())
	}
	log := d.log.With("doc_id", rd.DocumentID)
	targets, route, err := d.cfg.Router.Route(rd)
	if err != nil {
		// The sender named a vendor or route this deployment does not have: say so on the bus.
		vendor := "routing"
		if len(rd.Vendors) == 1 {
			vendor = rd.Vendors[0]
		}
		log.Warn("document cannot be routed", "err", err)
		if err := d.fail(ctx, slot{doc: rd.DocumentID, vendor: vendor}, submission{}, err.Error()); err != nil {
			return events.RetryAfter(d.cfg.RetryInitial)
		}
		return events.Done()
	}
	if len(targets) == 0 {
		d.m.unrouted.Inc()
		log.Info("no route matches the document; it stays received", "filename", rd.Filename, "source", rd.Source.Kind+"/"+rd.Source.Name)
		return events.Done()
	}
	var wait time.Duration
	pending := 0
	for _, name := range targets {
		delay, err := d.dispatch(ctx, rd, route, slot{doc: rd.DocumentID, vendor: name}, dl.Attempt == 1)
		if err == nil {
			continue
		}
		pending++
		if wait == 0 || delay < wait {
			wait = delay
		}
		if !errors.Is(err, errBusy) && !errors.Is(err, errNotYet) {
			log.Warn("submission will be retried", "vendor", name, "retry_in", delay.String(), "err", err)
		}
	}
	if pending == 0 {
		return events.Done()
	}
	return events.RetryAfter(wait)
}

// dispatch brings one round of a (document, vendor) one step on. A nil error means there is
// nothing left to do for it; otherwise the message comes back after the returned delay.
//
// On an event's first delivery there is almost never a record yet, so none is read: the claim
// creates it, and only if one exists after all (the create is refused) is it read and looked at.
// That saves a read per document; a redelivery reads first.
func (d *Dispatcher) dispatch(ctx context.Context, rd events.ReceivedData, route string, s slot, firstDelivery bool) (time.Duration, error) {
	name := s.vendor
	v := d.cfg.Vendors[name]
	read := !firstDelivery || v == nil
	for {
		var rec submission
		var rev uint64
		if read {
			var err error
			if rec, rev, err = d.subs.get(ctx, s); err != nil {
				return d.cfg.RetryInitial, err
			}
		}
		read = true
		now := d.now()
		switch {
		case rev != 0 && rec.State == stateSubmitted:
			// Submitted before (this is a redelivery): make sure the world knows.
			return d.retryIfErr(d.announceSubmitted(ctx, rd, route, s, rec))
		case rev != 0 && rec.State == stateFailed:
			return d.retryIfErr(d.fail(ctx, s, rec, rec.LastError))
		case v == nil:
			// Removed from the configuration since the document was routed: one answer,
			// whatever the submission's state (the poller gives the same).
			return d.retryIfErr(d.fail(ctx, s, rec, NotConfigured(name)))
		case rev != 0 && rec.State == stateInFlight && !rec.InDoubt:
			if wait, busy := d.owned(ctx, s, rec); busy {
				return wait, errBusy
			}
			return d.reconcile(ctx, rd, route, v, s, rec, rev)
		case rev != 0 && rec.State == stateInFlight:
			return d.reconcile(ctx, rd, route, v, s, rec, rev)
		case rev != 0 && rec.State == stateRetry && now.Before(rec.NotBefore):
			return rec.NotBefore.Sub(now), errNotYet
		case rev != 0 && rec.Attempts >= d.cfg.MaxAttempts:
			rec.State = stateFailed
			rec.LastError = fmt.Sprintf("gave up after %d attempts; the last: %s", rec.Attempts, rec.LastError)
			if _, err := d.subs.put(ctx, s, rec, rev); errors.Is(err, errLost) {
				continue
			} else if err != nil {
				return d.cfg.RetryInitial, err
			}
			return d.retryIfErr(d.fail(ctx, s, rec, rec.LastError))
		}
		// Nothing yet, or a retry that is due: claim the attempt, then call the vendor.
		nrev, claim, err := d.claim(ctx, s, rec, rev)
		if errors.Is(err, errLost) {
			continue // another worker claimed it: look again
		}
		if err != nil {
			return d.cfg.RetryInitial, err
		}
		return d.submit(ctx, rd, route, v, s, claim, nrev)
	}
}

// owned says whether an in-flight submission still belongs to a live worker, and when to look
// again if so. It does while the worker's instance has a heartbeat (and the attempt is within
// the lease); the moment the heartbeat is gone, the submission is anyone's to settle.
func (d *Dispatcher) owned(ctx context.Context, s slot, rec submission) (time.Duration, bool) {
	docID, vendor := s.doc, s.vendor
	age := d.now().Sub(rec.Started)
	if age >= d.cfg.Lease {
		return 0, false // stuck past any upload's time, even if its instance lives
	}
	lv := d.cfg.Liveness
	if lv == nil {
		return d.cfg.Lease - age, true
	}
	if rec.Owner == lv.Self() {
		if d.active.has(s.key()) {
			return min(d.cfg.Lease-age, lv.TTL()), true
		}
		return 0, false // ours, but no worker of ours is on it: its last write was lost
	}
	alive, err := lv.Alive(ctx, rec.Owner)
	if err != nil {
		// Could not tell: look again soon, never take over on a guess.
		d.log.Warn("cannot tell whether the instance submitting a document is alive; waiting",
			"doc_id", docID, "vendor", vendor, "owner", rec.Owner, "err", err)
		return lv.TTL(), true
	}
	if alive {
		return min(d.cfg.Lease-age, lv.TTL()), true
	}
	d.log.Info("the instance submitting a document is gone; taking the submission over",
		"doc_id", docID, "vendor", vendor, "owner", rec.Owner)
	return 0, false
}

// claim writes a new in-flight attempt over rec (at rev, 0: none).
func (d *Dispatcher) claim(ctx context.Context, s slot, rec submission, rev uint64) (uint64, submission, error) {
	now := d.now()
	c := submission{State: stateInFlight, Attempts: rec.Attempts + 1, Started: now, FirstStarted: rec.FirstStarted,
		Owner: d.self(), LastError: rec.LastError}
	if c.FirstStarted.IsZero() {
		c.FirstStarted = now
	}
	// Marked active before the record names us: a redelivery on this instance must never see a
	// claim of ours that no worker of ours is making. submit unmarks it.
	key := s.key()
	d.active.add(key)
	nrev, err := d.subs.put(ctx, s, c, rev)
	if err != nil {
		d.active.remove(key)
	}
	return nrev, c, err
}

func (d *Dispatcher) self() string {
	if d.cfg.Liveness != nil {
		return d.cfg.Liveness.Self()
	}
	return ""
}

func (d *Dispatcher) retryIfErr(err error) (time.Duration, error) {
	if err != nil {
		return d.cfg.RetryInitial, err
	}
	return 0, nil
}

// document is what the vendor gets for one round: its ID is the round's correlation identity (the
// document id in round 0), from which tags and Find's matching derive.
func (d *Dispatcher) document(rd events.ReceivedData, s slot) vendors.Document {
	blobs, key := d.cfg.Bus.Blobs(), rd.ObjectKey
	return vendors.Document{
		ID: s.correlationID(), Filename: rd.Filename, ContentType: rd.ContentType, Size: rd.Size, SHA256: rd.SHA256,
		Metadata: rd.Metadata,
		Open: func(ctx context.Context) (io.ReadCloser, error) {
			r, _, err := blobs.Open(ctx, key)
			return r, err
		},
	}
}

func (d *Dispatcher) submit(ctx context.Context, rd events.ReceivedData, route string, v vendors.Vendor, s slot, rec submission, rev uint64) (time.Duration, error) {
	name := v.Name()
	defer d.active.remove(s.key()) // marked by claim
	doc := d.document(rd, s)
	doc.Tag = vendors.NewTag(doc.ID, rec.Attempts)
	start := d.now()
	ref, err := v.Submit(ctx, doc)
	d.m.calls.WithLabelValues(name, "submit").Observe(time.Since(start).Seconds())
	// Record the outcome even when we are being stopped: it is what the next worker needs.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	switch {
	case err == nil:
		d.m.submissions.WithLabelValues(name, "submitted").Inc()
		want := rec
		want.State, want.Ref, want.SubmittedAt, want.LastError, want.InDoubt = stateSubmitted, ref, d.now(), "", false
		got, perr := d.settle(wctx, s, want, rev)
		switch {
		case perr != nil:
			// Not recorded (the store does not answer): the record stays in flight under our name, the
			// next delivery finds the upload by its tag.
			return d.cfg.RetryInitial, fmt.Errorf("record the submission %s: %w", ref, perr)
		case got.State == stateSubmitted && got.Ref != ref:
			// Someone took the attempt over while the vendor was slow, and submitted too.
			d.m.inDoubt.WithLabelValues(name, "duplicate").Inc()
			d.log.Error("another worker settled this submission while our upload ran; the vendor has the document twice",
				"doc_id", rd.DocumentID, "vendor", name, "round", s.round, "ref", ref, "kept_ref", got.Ref)
			return d.retryIfErr(d.announceSubmitted(wctx, rd, route, s, got))
		}
		return d.retryIfErr(d.announceSubmitted(wctx, rd, route, s, got))
	case vendors.IsPermanent(err):
		d.m.submissions.WithLabelValues(name, "refused").Inc()
		d.log.Warn("vendor refused the document", "doc_id", rd.DocumentID, "vendor", name, "err", err)
		rec.State, rec.LastError = stateFailed, messageOf(err)
		if _, perr := d.subs.put(wctx, s, rec, rev); perr != nil && !errors.Is(perr, errLost) {
			return d.cfg.RetryInitial, perr
		}
		return d.retryIfErr(d.fail(wctx, s, rec, rec.LastError))
	case vendors.NoAnswer(err) || ctx.Err() != nil:
		// The upload may have reached the vendor: the next attempt must look before it submits.
		d.m.submissions.WithLabelValues(name, "in_doubt").Inc()
		rec.InDoubt, rec.LastError = true, messageOf(err)
		_, _ = d.subs.put(wctx, s, rec, rev)
		return backoff(rec.Attempts, d.cfg.RetryInitial, d.cfg.RetryMax, 0), err
	default:
		// The vendor answered "not now" (5xx, 429): nothing was submitted.
		d.m.submissions.WithLabelValues(name, "retry").Inc()
		delay := backoff(rec.Attempts, d.cfg.RetryInitial, d.cfg.RetryMax, vendors.RetryAfterOf(err))
		rec.State, rec.LastError, rec.NotBefore = stateRetry, messageOf(err), d.now().Add(delay)
		_, _ = d.subs.put(wctx, s, rec, rev)
		return delay, err
	}
}

// settle writes the outcome of our attempt over the in-flight record at rev, retrying while the
// store does not answer. A write that timed out may have landed all the same: a revision
// mismatch is therefore read back before it is called a conflict. It returns the record as it
// stands.
func (d *Dispatcher) settle(ctx context.Context, s slot, want submission, rev uint64) (submission, error) {
	delay := 100 * time.Millisecond
	for {
		_, err := d.subs.put(ctx, s, want, rev)
		if err == nil {
			return want, nil
		}
		if errors.Is(err, errLost) {
			got, _, gerr := d.subs.get(ctx, s)
			if gerr == nil {
				return got, nil // ours (a timed-out write that landed) or another worker's
			}
			err = gerr
		}
		select {
		case <-ctx.Done():
			return submission{}, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// reconcile settles an interrupted attempt. Where the vendor can be asked, only an exact tag
// match counts as "it has the document", and only a listing that covered everything since the
// first attempt counts as "it does not"; anything in between is retried with backoff and, after
// InDoubtTimeout, failed for an operator to decide. Vendors that cannot be asked get the
// document again (at-least-once, counted).
func (d *Dispatcher) reconcile(ctx context.Context, rd events.ReceivedData, route string, v vendors.Vendor, s slot, rec submission, rev uint64) (time.Duration, error) {
	name := v.Name()
	log := d.log.With("doc_id", rd.DocumentID, "vendor", name, "round", s.round)
	since := rec.FirstStarted
	if since.IsZero() {
		since = rec.Started
	}
	r, ok := v.(vendors.Reconciler)
	var lk vendors.Lookup
	var err error
	if ok {
		lk, err = r.Find(ctx, d.document(rd, s), since)
		if errors.Is(err, vendors.ErrNotReconcilable) {
			ok = false
		}
	}
	switch {
	case !ok:
		d.m.inDoubt.WithLabelValues(name, "unreconcilable").Inc()
		log.Warn("an interrupted submission cannot be checked at this vendor; submitting again, so it may process the document twice")
	case err != nil:
		return d.stillInDoubt(ctx, s, rec, rev, vendors.Lookup{Reason: "the vendor could not be asked: " + messageOf(err)}, vendors.RetryAfterOf(err))
	case lk.Outcome == vendors.Found:
		d.m.inDoubt.WithLabelValues(name, "reconciled").Inc()
		if len(lk.Duplicates) > 0 {
			d.m.inDoubt.WithLabelValues(name, "duplicate").Inc()
			log.Error("the vendor has the document more than once; keeping the earliest attempt",
				"ref", lk.Ref, "attempt", lk.Attempt, "duplicates", lk.Duplicates)
		}
		log.Info("interrupted submission found at the vendor by its tag; not submitting again", "ref", lk.Ref, "attempt", lk.Attempt)
		rec.State, rec.Ref, rec.SubmittedAt, rec.Reconciled, rec.InDoubt = stateSubmitted, lk.Ref, d.now(), true, false
		rec.InDoubtSince, rec.Candidates, rec.LastError = time.Time{}, nil, ""
		if _, err := d.subs.put(ctx, s, rec, rev); err != nil {
			return d.cfg.RetryInitial, err
		}
		return d.retryIfErr(d.announceSubmitted(ctx, rd, route, s, rec))
	case lk.Outcome == vendors.Absent:
		d.m.inDoubt.WithLabelValues(name, "absent").Inc()
		log.Info("interrupted submission did not reach the vendor (it has nothing with the document's tag); submitting again")
	default:
		return d.stillInDoubt(ctx, s, rec, rev, lk, 0)
	}
	if rec.Attempts >= d.cfg.MaxAttempts {
		rec.State = stateFailed
		rec.LastError = fmt.Sprintf("gave up after %d attempts; the last: %s", rec.Attempts, rec.LastError)
		if _, err := d.subs.put(ctx, s, rec, rev); err != nil {
			return d.cfg.RetryInitial, err
		}
		return d.retryIfErr(d.fail(ctx, s, rec, rec.LastError))
	}
	nrev, claim, err := d.claim(ctx, s, rec, rev)
	if err != nil {
		return d.cfg.RetryInitial, err // errLost: someone else settled it; the next delivery sees how
	}
	return d.submit(ctx, rd, route, v, s, claim, nrev)
}

// stillInDoubt records that the vendor could not say whether it has the document, and retries
// later; past InDoubtTimeout the pair fails with the vendor jobs that might be it, for an
// operator to decide. Nothing is submitted on a guess.
func (d *Dispatcher) stillInDoubt(ctx context.Context, s slot, rec submission, rev uint64, lk vendors.Lookup, retryAfter time.Duration) (time.Duration, error) {
	docID, name := s.doc, s.vendor
	now := d.now()
	if rec.InDoubtSince.IsZero() {
		rec.InDoubtSince = now
	}
	rec.InDoubt, rec.Candidates = true, lk.Candidates
	rec.LastError = "cannot tell whether the vendor has this document: " + lk.Reason
	if now.Sub(rec.InDoubtSince) >= d.cfg.InDoubtTimeout {
		d.m.inDoubt.WithLabelValues(name, "gave_up").Inc()
		msg := fmt.Sprintf("gave up after %s: %s", d.cfg.InDoubtTimeout, lk.Reason)
		if len(lk.Candidates) > 0 {
			msg += fmt.Sprintf("; vendor jobs that may be this document: %s", strings.Join(lk.Candidates, ", "))
		}
		msg += "; check at the vendor, then retry the document or leave it"
		rec.State, rec.LastError = stateFailed, msg
		if _, err := d.subs.put(ctx, s, rec, rev); err != nil {
			return d.cfg.RetryInitial, err
		}
		return d.retryIfErr(d.fail(ctx, s, rec, msg))
	}
	d.m.inDoubt.WithLabelValues(name, "unknown").Inc()
	d.log.Warn("cannot tell whether the vendor has an interrupted submission; asking again later",
		"doc_id", docID, "vendor", name, "reason", lk.Reason, "candidates", lk.Candidates, "in_doubt_for", now.Sub(rec.InDoubtSince).Round(time.Second).String())
	if _, err := d.subs.put(ctx, s, rec, rev); err != nil && !errors.Is(err, errLost) {
		return d.cfg.RetryInitial, err
	}
	n := int(now.Sub(rec.InDoubtSince)/d.cfg.RetryInitial) + 1
	return backoff(bitsLen(n), d.cfg.RetryInitial, d.cfg.RetryMax, retryAfter), errNotYet
}

// bitsLen grows by one each time n doubles: the backoff step of a wait that has lasted n units.
func bitsLen(n int) int {
	b := 0
	for ; n > 0; n >>= 1 {
		b++
	}
	return b
}

func (d *Dispatcher) announceSubmitted(ctx context.Context, rd events.ReceivedData, route string, s slot, rec submission) error {
	name := s.vendor
	// The index first: a callback may arrive as soon as the vendor has the document.
	if d.cfg.Refs != nil {
		if err := d.cfg.Refs.Put(ctx, name, rec.Ref, rd.DocumentID); err != nil {
			return err
		}
	}
	return d.ann.announce(ctx, events.Submitted, s, rec.SubmittedAt, events.SubmittedData{
		DocumentID: rd.DocumentID, Vendor: name, VendorRef: rec.Ref, SubmittedAt: rec.SubmittedAt,
		Attempts: rec.Attempts, Reconciled: rec.Reconciled, Route: route, Round: s.round,
	})
}

func (d *Dispatcher) fail(ctx context.Context, s slot, rec submission, msg string) error {
	d.m.failed.WithLabelValues(s.vendor, "submit").Inc()
	return d.ann.announce(ctx, events.Failed, s, d.now(), events.FailedData{
		DocumentID: s.doc, Vendor: s.vendor, VendorRef: rec.Ref, Error: msg, Permanent: true,
		Attempts: rec.Attempts, FailedAt: d.now(), Round: s.round,
	})
}

// Enrich adds what only the dispatcher knows to a document's state: attempts and the last error
// per vendor, including vendors it has not reached yet.
func (d *Dispatcher) Enrich(ctx context.Context, doc *events.Document) {
	recs, err := d.subs.forDocument(ctx, doc.ID)
	if err != nil {
		return
	}
	if doc.Vendors == nil {
		doc.Vendors = map[string]*events.VendorState{}
	}
	for name, rounds := range recs {
		vs := doc.Vendors[name]
		round := 0
		for r := range rounds {
			round = max(round, r)
		}
		if vs != nil {
			round = vs.Round // the round the state shows; a newer one's record waits for its event
		}
		rec, ok := rounds[round]
		if !ok {
			continue
		}
		if vs == nil {
			vs = &events.VendorState{Status: events.StatusReceived, Round: round}
			doc.Vendors[name] = vs
		}
		vs.Attempts = rec.Attempts
		if rec.State != stateSubmitted {
			vs.LastError = rec.LastError
		}
		if rec.State == stateInFlight && rec.InDoubt {
			vs.InDoubt, vs.Candidates = true, rec.Candidates
		}
	}
}

// NotConfigured is the failure of a document routed to a vendor the configuration no longer has:
// the same words from the dispatcher and the poller.
func NotConfigured(vendor string) string {
	return fmt.Sprintf("vendor %q is not enabled in this deployment's configuration (vendors.%s); it was when the document was routed to it", vendor, vendor)
}

func messageOf(err error) string {
	var e *vendors.Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}
