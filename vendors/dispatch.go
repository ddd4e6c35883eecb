package vendors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// DispatchConfig configures the dispatcher.
type DispatchConfig struct {
	Bus     *events.Bus
	Vendors map[string]Vendor
	Router  *Router
	// Workers is how many documents are dispatched at once (default 8). Each vendor's own
	// concurrency and rate limits apply on top.
	Workers int
	// MaxAttempts is how many times a submission to one vendor is tried before it fails
	// (default 10). Waiting for another worker does not count.
	MaxAttempts  int
	RetryInitial time.Duration // first retry delay (default 2 s), doubling
	RetryMax     time.Duration // retry delay cap (default 5 min)
	// Lease is how long an in-flight submission belongs to the worker that began it; past it, the
	// attempt is presumed dead and reconciled (default 10 min: longer than any upload).
	Lease    time.Duration
	Replicas int
	Instance string // names this process in submission records
	// Refs, when set, records each vendor reference for callbacks to find their document.
	Refs   *RefIndex
	Logger *slog.Logger
	// Metrics is shared by the dispatcher and the poller; nil means unregistered ones.
	Metrics *Metrics
}

// Dispatcher submits each received document to its vendors exactly once, through a durable
// JetStream consumer shared by every instance.
type Dispatcher struct {
	cfg  DispatchConfig
	subs *submissions
	ann  announcer
	log  *slog.Logger
	m    *Metrics
	w    *worker
	now  func() time.Time
}

var (
	errBusy   = errors.New("another worker is submitting this document")
	errNotYet = errors.New("waiting before the next attempt")
)

const (
	// ackWait only has to cover a stalled worker: handlers keep their message with InProgress.
	ackWait          = time.Minute
	dispatchConsumer = "dispatch"
	pollConsumer     = "poll"
)

// StartDispatcher provisions its consumer and bucket and starts working.
func StartDispatcher(ctx context.Context, cfg DispatchConfig) (*Dispatcher, error) {
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := cfg.Metrics
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	subs, err := openSubmissions(ctx, cfg.Bus, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{cfg: cfg, subs: subs, ann: announcer{bus: cfg.Bus, log: cfg.Logger}, log: cfg.Logger, m: m, now: time.Now}
	names := cfg.Bus.Names()
	cons, err := cfg.Bus.JetStream().CreateOrUpdateConsumer(ctx, names.Stream(), jetstream.ConsumerConfig{
		Durable:       names.Durable(dispatchConsumer),
		Description:   "submits received documents to vendors",
		FilterSubject: names.KindSubjects(events.Received),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		// Unlimited deliveries: attempts are counted per vendor in the submission record, so that
		// waiting for a busy worker or a Retry-After never uses up a document's chances.
		MaxDeliver:    -1,
		MaxAckPending: cfg.Workers * 4,
	})
	if err != nil {
		return nil, fmt.Errorf("create dispatch consumer: %w", err)
	}
	d.w, err = startWorker(cons, cfg.Workers, ackWait, cfg.Logger, d.handle)
	if err != nil {
		return nil, fmt.Errorf("start dispatcher: %w", err)
	}
	return d, nil
}

// Stop ends dispatching; submissions under way get until ctx ends.
func (d *Dispatcher) Stop(ctx context.Context) { d.w.stop(ctx) }

func (d *Dispatcher) handle(ctx context.Context, m jetstream.Msg) {
	ev, err := events.Decode(m.Data())
	var rd events.ReceivedData
	if err == nil {
		err = ev.DecodeData(&rd)
	}
	if err != nil || rd.DocumentID == "" {
		d.log.Warn("dispatcher skips a message that is not a received event", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	log := d.log.With("doc_id", rd.DocumentID)
	if md, err := m.Metadata(); err == nil && md.NumDelivered > 1 {
		d.m.redelivered.WithLabelValues(dispatchConsumer).Inc()
	}
	targets, route, err := d.cfg.Router.Route(rd)
	if err != nil {
		// The sender named a vendor or route this deployment does not have: say so on the bus.
		vendor := "routing"
		if len(rd.Vendors) == 1 {
			vendor = rd.Vendors[0]
		}
		log.Warn("document cannot be routed", "err", err)
		if err := d.fail(ctx, rd.DocumentID, vendor, submission{}, err.Error()); err != nil {
			_ = m.NakWithDelay(d.cfg.RetryInitial)
			return
		}
		_ = m.Ack()
		return
	}
	if len(targets) == 0 {
		d.m.unrouted.Inc()
		log.Info("no route matches the document; it stays received", "filename", rd.Filename, "source", rd.Source.Kind+"/"+rd.Source.Name)
		_ = m.Ack()
		return
	}
	var wait time.Duration
	var pending []string
	for _, name := range targets {
		delay, err := d.dispatch(ctx, rd, route, name)
		if err == nil {
			continue
		}
		pending = append(pending, name)
		if wait == 0 || delay < wait {
			wait = delay
		}
		if !errors.Is(err, errBusy) && !errors.Is(err, errNotYet) {
			log.Warn("submission will be retried", "vendor", name, "retry_in", delay.String(), "err", err)
		}
	}
	if len(pending) == 0 {
		_ = m.Ack()
		return
	}
	_ = m.NakWithDelay(max(wait, 100*time.Millisecond))
}

// dispatch brings one (document, vendor) one step on. A nil error means there is nothing left to
// do for this pair; otherwise the message comes back after the returned delay.
func (d *Dispatcher) dispatch(ctx context.Context, rd events.ReceivedData, route, name string) (time.Duration, error) {
	v := d.cfg.Vendors[name]
	for {
		rec, rev, err := d.subs.get(ctx, rd.DocumentID, name)
		if err != nil {
			return d.cfg.RetryInitial, err
		}
		now := d.now()
		switch {
		case rev != 0 && rec.State == stateSubmitted:
			// Submitted before (this is a redelivery): make sure the world knows.
			return d.retryIfErr(d.announceSubmitted(ctx, rd, route, name, rec))
		case rev != 0 && rec.State == stateFailed:
			return d.retryIfErr(d.fail(ctx, rd.DocumentID, name, rec, rec.LastError))
		case rev != 0 && rec.State == stateInFlight && !rec.InDoubt && now.Sub(rec.Started) < d.cfg.Lease:
			return d.cfg.Lease - now.Sub(rec.Started), errBusy
		case rev != 0 && rec.State == stateInFlight:
			return d.reconcile(ctx, rd, route, v, rec, rev)
		case rev != 0 && rec.State == stateRetry && now.Before(rec.NotBefore):
			return rec.NotBefore.Sub(now), errNotYet
		case rev != 0 && rec.Attempts >= d.cfg.MaxAttempts:
			rec.State = stateFailed
			rec.LastError = fmt.Sprintf("gave up after %d attempts; the last: %s", rec.Attempts, rec.LastError)
			if _, err := d.subs.put(ctx, rd.DocumentID, name, rec, rev); errors.Is(err, errLost) {
				continue
			} else if err != nil {
				return d.cfg.RetryInitial, err
			}
			return d.retryIfErr(d.fail(ctx, rd.DocumentID, name, rec, rec.LastError))
		}
		// Nothing yet, or a retry that is due: claim the attempt, then call the vendor.
		if v == nil {
			return d.retryIfErr(d.fail(ctx, rd.DocumentID, name, rec, fmt.Sprintf("vendor %q is not configured on this instance", name)))
		}
		claim := submission{State: stateInFlight, Attempts: rec.Attempts + 1, Started: now, Owner: d.cfg.Instance, LastError: rec.LastError}
		nrev, err := d.subs.put(ctx, rd.DocumentID, name, claim, rev)
		if errors.Is(err, errLost) {
			continue // another worker claimed it: look again
		}
		if err != nil {
			return d.cfg.RetryInitial, err
		}
		return d.submit(ctx, rd, route, v, claim, nrev)
	}
}

func (d *Dispatcher) retryIfErr(err error) (time.Duration, error) {
	if err != nil {
		return d.cfg.RetryInitial, err
	}
	return 0, nil
}

func (d *Dispatcher) document(rd events.ReceivedData) Document {
	blobs, key := d.cfg.Bus.Blobs(), rd.ObjectKey
	return Document{
		ID: rd.DocumentID, Filename: rd.Filename, ContentType: rd.ContentType, Size: rd.Size, SHA256: rd.SHA256,
		Metadata: rd.Metadata,
		Open: func(ctx context.Context) (io.ReadCloser, error) {
			r, _, err := blobs.Open(ctx, key)
			return r, err
		},
	}
}

func (d *Dispatcher) submit(ctx context.Context, rd events.ReceivedData, route string, v Vendor, rec submission, rev uint64) (time.Duration, error) {
	name := v.Name()
	start := d.now()
	ref, err := v.Submit(ctx, d.document(rd))
	d.m.calls.WithLabelValues(name, "submit").Observe(time.Since(start).Seconds())
	// Record the outcome even when we are being stopped: it is what the next worker needs.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	switch {
	case err == nil:
		d.m.submissions.WithLabelValues(name, "submitted").Inc()
		rec.State, rec.Ref, rec.SubmittedAt, rec.LastError, rec.InDoubt = stateSubmitted, ref, d.now(), "", false
		if _, perr := d.subs.put(wctx, rd.DocumentID, name, rec, rev); perr != nil {
			// Someone took the attempt over while the vendor was slow: both may have submitted.
			d.log.Error("submission record changed during the upload; the vendor may have the document twice",
				"doc_id", rd.DocumentID, "vendor", name, "ref", ref, "err", perr)
		}
		return d.retryIfErr(d.announceSubmitted(wctx, rd, route, name, rec))
	case IsPermanent(err):
		d.m.submissions.WithLabelValues(name, "refused").Inc()
		d.log.Warn("vendor refused the document", "doc_id", rd.DocumentID, "vendor", name, "err", err)
		rec.State, rec.LastError = stateFailed, messageOf(err)
		if _, perr := d.subs.put(wctx, rd.DocumentID, name, rec, rev); perr != nil && !errors.Is(perr, errLost) {
			return d.cfg.RetryInitial, perr
		}
		return d.retryIfErr(d.fail(wctx, rd.DocumentID, name, rec, rec.LastError))
	case NoAnswer(err) || ctx.Err() != nil:
		// The upload may have reached the vendor: the next attempt must look before it submits.
		d.m.submissions.WithLabelValues(name, "in_doubt").Inc()
		rec.InDoubt, rec.LastError = true, messageOf(err)
		_, _ = d.subs.put(wctx, rd.DocumentID, name, rec, rev)
		return backoff(rec.Attempts, d.cfg.RetryInitial, d.cfg.RetryMax, 0), err
	default:
		// The vendor answered "not now" (5xx, 429): nothing was submitted.
		d.m.submissions.WithLabelValues(name, "retry").Inc()
		delay := backoff(rec.Attempts, d.cfg.RetryInitial, d.cfg.RetryMax, RetryAfterOf(err))
		rec.State, rec.LastError, rec.NotBefore = stateRetry, messageOf(err), d.now().Add(delay)
		_, _ = d.subs.put(wctx, rd.DocumentID, name, rec, rev)
		return delay, err
	}
}

// reconcile settles an interrupted attempt: if the vendor can be asked and has the document, the
// submission is recorded; otherwise it is made again.
func (d *Dispatcher) reconcile(ctx context.Context, rd events.ReceivedData, route string, v Vendor, rec submission, rev uint64) (time.Duration, error) {
	if v == nil {
		return d.retryIfErr(d.fail(ctx, rd.DocumentID, "unknown", rec, "vendor is not configured on this instance"))
	}
	name := v.Name()
	log := d.log.With("doc_id", rd.DocumentID, "vendor", name)
	if r, ok := v.(Reconciler); ok {
		// A minute of slack for clocks that disagree between us and the vendor.
		ref, err := r.Find(ctx, d.document(rd), rec.Started.Add(-time.Minute))
		if err != nil {
			return backoff(rec.Attempts, d.cfg.RetryInitial, d.cfg.RetryMax, RetryAfterOf(err)), fmt.Errorf("look for an interrupted submission: %w", err)
		}
		if ref != "" {
			d.m.inDoubt.WithLabelValues(name, "reconciled").Inc()
			log.Info("interrupted submission found at the vendor; not submitting again", "ref", ref)
			rec.State, rec.Ref, rec.SubmittedAt, rec.Reconciled, rec.InDoubt = stateSubmitted, ref, d.now(), true, false
			if _, err := d.subs.put(ctx, rd.DocumentID, name, rec, rev); err != nil {
				return d.cfg.RetryInitial, err
			}
			return d.retryIfErr(d.announceSubmitted(ctx, rd, route, name, rec))
		}
		d.m.inDoubt.WithLabelValues(name, "not_found").Inc()
		log.Info("interrupted submission did not reach the vendor; submitting again")
	} else {
		d.m.inDoubt.WithLabelValues(name, "unreconcilable").Inc()
		log.Warn("an interrupted submission cannot be checked at this vendor; submitting again, so it may process the document twice")
	}
	claim := submission{State: stateInFlight, Attempts: rec.Attempts + 1, Started: d.now(), Owner: d.cfg.Instance, LastError: rec.LastError}
	nrev, err := d.subs.put(ctx, rd.DocumentID, name, claim, rev)
	if err != nil {
		return d.cfg.RetryInitial, err // errLost: someone else settled it; the next delivery sees how
	}
	return d.submit(ctx, rd, route, v, claim, nrev)
}

func (d *Dispatcher) announceSubmitted(ctx context.Context, rd events.ReceivedData, route, name string, rec submission) error {
	// The index first: a callback may arrive as soon as the vendor has the document.
	if d.cfg.Refs != nil {
		if err := d.cfg.Refs.Put(ctx, name, rec.Ref, rd.DocumentID); err != nil {
			return err
		}
	}
	return d.ann.announce(ctx, events.Submitted, rd.DocumentID, name, rec.SubmittedAt, events.SubmittedData{
		DocumentID: rd.DocumentID, Vendor: name, VendorRef: rec.Ref, SubmittedAt: rec.SubmittedAt,
		Attempts: rec.Attempts, Reconciled: rec.Reconciled, Route: route,
	})
}

func (d *Dispatcher) fail(ctx context.Context, docID, vendor string, rec submission, msg string) error {
	d.m.failed.WithLabelValues(vendor, "submit").Inc()
	return d.ann.announce(ctx, events.Failed, docID, vendor, d.now(), events.FailedData{
		DocumentID: docID, Vendor: vendor, VendorRef: rec.Ref, Error: msg, Permanent: true,
		Attempts: rec.Attempts, FailedAt: d.now(),
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
	for name, rec := range recs {
		vs := doc.Vendors[name]
		if vs == nil {
			vs = &events.VendorState{Status: events.StatusReceived}
			doc.Vendors[name] = vs
		}
		vs.Attempts = rec.Attempts
		if rec.State != stateSubmitted {
			vs.LastError = rec.LastError
		}
	}
}

func messageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}
