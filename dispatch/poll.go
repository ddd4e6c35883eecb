package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors"
)

// PollConfig configures the poller.
type PollConfig struct {
	Bus      *events.Bus
	Vendors  map[string]vendors.Vendor
	Settings map[string]vendors.PollSettings // by vendor; missing means defaults
	// Workers is how many documents are checked at once (default 16).
	Workers int
	// AckWait, Drain and YieldTo: see Config.
	AckWait, Drain time.Duration
	YieldTo        *events.Priority
	Logger         *slog.Logger
	// Metrics is shared by the dispatcher and the poller; nil means unregistered ones.
	Metrics *Metrics
}

// Poller follows submitted documents until their vendor is done, through a durable consumer on
// the submitted events. "Not yet" is a NakWithDelay: the waiting happens in JetStream, not in a
// timer of ours, so it survives restarts and is shared by every instance.
type Poller struct {
	cfg PollConfig
	ann announcer
	log *slog.Logger
	m   *Metrics
	c   *events.Consumer
	now func() time.Time
}

// NewPoller provisions its consumer; Run polls.
func NewPoller(ctx context.Context, cfg PollConfig) (*Poller, error) {
	if cfg.Bus == nil {
		return nil, errors.New("poller: Bus is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
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
	p := &Poller{cfg: cfg, ann: announcer{bus: cfg.Bus, log: cfg.Logger}, log: cfg.Logger, m: m, now: time.Now}
	var err error
	p.c, err = cfg.Bus.Consumer(ctx, events.ConsumerSpec{
		Purpose: pollConsumer, Description: "follows submitted documents until their vendor is done",
		Filter:  cfg.Bus.Names().KindSubjects(events.Submitted),
		Workers: cfg.Workers, AckWait: cfg.AckWait, Drain: cfg.Drain, Background: cfg.YieldTo,
		OnPanic: p.panicked,
	}, p.handle)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Run polls until ctx ends; checks under way then get PollConfig.Drain to finish.
func (p *Poller) Run(ctx context.Context) error { return p.c.Run(ctx) }

func decodeSubmitted(data []byte) (events.SubmittedData, error) {
	ev, err := events.Decode(data)
	var sd events.SubmittedData
	if err == nil {
		err = ev.DecodeData(&sd)
	}
	if err == nil && (sd.DocumentID == "" || sd.Vendor == "") {
		err = errors.New("the event names no document or vendor")
	}
	return sd, err
}

func (p *Poller) handle(ctx context.Context, d events.Delivery) events.Outcome {
	sd, err := decodeSubmitted(d.Data)
	if err != nil {
		return events.Drop("not a submitted event: " + err.Error())
	}
	settings := p.cfg.Settings[sd.Vendor].WithDefaults()
	// A vendor that calls back gets time to do so before we ask; polling is the safety net.
	if age := p.now().Sub(sd.SubmittedAt); d.Attempt == 1 && settings.CallbackGrace > age {
		return events.RetryAfter(settings.CallbackGrace - age)
	}
	// The dispatcher of this process may still be writing this event into the state: the
	// state is read after that write, not raced with it (which made the completed event's
	// write conflict and read again).
	p.cfg.Bus.AwaitRecord(ctx, d.MsgID)
	finished, retryIn, err := p.settle(ctx, sd, d.Attempt)
	if finished {
		return events.Done()
	}
	if err != nil {
		p.log.Warn("vendor check failed; trying again", "doc_id", sd.DocumentID, "vendor", sd.Vendor, "retry_in", retryIn.String(), "err", err)
	}
	return events.RetryAfter(retryIn)
}

// panicked fails the (document, vendor) whose check or result made a handler panic — a vendor
// answer that meets a bug of ours — so that the process and the other documents go on.
func (p *Poller) panicked(ctx context.Context, d events.Delivery, panicked any) events.Outcome {
	sd, err := decodeSubmitted(d.Data)
	if err != nil {
		return events.Drop("not a submitted event")
	}
	if _, _, err := p.fail(ctx, sd, fmt.Sprintf("ingest failed on the vendor's answer with an internal error (%v); it is reported in the log", panicked), "panic"); err != nil {
		return events.RetryAfter(time.Second)
	}
	return events.Done()
}

// Settle looks at a submitted document now (a vendor called back to say it is done) and
// finishes it if the vendor agrees. finished is false with a delay when it should be looked at
// again.
func (p *Poller) Settle(ctx context.Context, docID, vendor string) (finished bool, retryIn time.Duration, err error) {
	doc, err := p.cfg.Bus.States().Get(ctx, docID)
	if err != nil {
		return false, time.Second, err
	}
	vs := doc.Vendors[vendor]
	if vs == nil || vs.Ref == "" {
		return false, time.Second, fmt.Errorf("document %s has no %s submission yet", docID, vendor)
	}
	sd := events.SubmittedData{DocumentID: docID, Vendor: vendor, VendorRef: vs.Ref, SubmittedAt: vs.SubmittedAt, Round: vs.Round}
	return p.settle(ctx, sd, 1)
}

// settle asks the vendor about one submission and publishes the outcome: completed (with the
// result) or failed. finished reports that nothing is left to do for it.
func (p *Poller) settle(ctx context.Context, sd events.SubmittedData, attempt int) (finished bool, retryIn time.Duration, err error) {
	settings := p.cfg.Settings[sd.Vendor].WithDefaults()
	again := func(err error, hint time.Duration) (bool, time.Duration, error) {
		return false, backoff(attempt, settings.Initial, settings.Max, hint), err
	}
	// The state read here is also what the completed event is recorded on (not read again).
	snap, err := p.cfg.Bus.States().Read(ctx, sd.DocumentID)
	doc := snap.Document
	if err == nil {
		if vs := doc.Vendors[sd.Vendor]; vs != nil && (vs.Round > sd.Round ||
			vs.Round == sd.Round && (vs.Status == events.StatusCompleted || vs.Status == events.StatusFailed)) {
			// Finished already (a callback came first, or this is a redelivery), or a newer
			// round began: this submission's round is over.
			return true, 0, nil
		}
	}
	v := p.cfg.Vendors[sd.Vendor]
	if v == nil {
		// Not polled forever: the pair fails, naming the vendor, as the dispatcher does.
		return p.fail(ctx, sd, NotConfigured(sd.Vendor), "not_configured")
	}
	if age := p.now().Sub(sd.SubmittedAt); age > settings.Deadline {
		return p.fail(ctx, sd, fmt.Sprintf("no result %s after submission (poll deadline %s)", age.Round(time.Second), settings.Deadline), "deadline")
	}

	start := p.now()
	prog, err := v.Check(ctx, sd.VendorRef)
	p.m.calls.WithLabelValues(sd.Vendor, "check").Observe(time.Since(start).Seconds())
	switch {
	case err != nil && vendors.IsPermanent(err):
		p.m.polls.WithLabelValues(sd.Vendor, "error").Inc()
		return p.fail(ctx, sd, messageOf(err), "check")
	case err != nil:
		p.m.polls.WithLabelValues(sd.Vendor, "error").Inc()
		return again(err, vendors.RetryAfterOf(err))
	case !prog.Done:
		p.m.polls.WithLabelValues(sd.Vendor, "pending").Inc()
		return again(nil, prog.RetryAfter)
	case prog.Failed:
		p.m.polls.WithLabelValues(sd.Vendor, "done").Inc()
		msg := prog.Error
		if msg == "" {
			msg = "the vendor reports an error for this document"
		}
		return p.fail(ctx, sd, msg, "vendor")
	}
	p.m.polls.WithLabelValues(sd.Vendor, "done").Inc()

	start = p.now()
	res, err := v.Result(ctx, sd.VendorRef)
	p.m.calls.WithLabelValues(sd.Vendor, "result").Observe(time.Since(start).Seconds())
	if err != nil {
		if vendors.IsPermanent(err) {
			return p.fail(ctx, sd, messageOf(err), "result")
		}
		return again(err, vendors.RetryAfterOf(err))
	}
	data := events.CompletedData{
		DocumentID: sd.DocumentID, Vendor: sd.Vendor, VendorRef: sd.VendorRef,
		Text: res.Text, Fields: res.Fields, Raw: res.Raw, CompletedAt: p.now(), Round: sd.Round,
	}
	for _, a := range res.Artifacts {
		stored, err := p.storeArtifact(ctx, sd, a)
		if err != nil {
			return again(fmt.Errorf("store result file %s: %w", a.Name, err), vendors.RetryAfterOf(err))
		}
		data.Artifacts = append(data.Artifacts, stored)
	}
	if data, err = fitCompleted(ctx, p.cfg.Bus, data); err != nil {
		return again(err, 0)
	}
	if err := p.ann.announceOn(ctx, events.Completed, slotOf(sd), data.CompletedAt, data, snap); err != nil {
		return again(err, 0)
	}
	p.m.completed.WithLabelValues(sd.Vendor).Inc()
	if !doc.ReceivedAt.IsZero() {
		p.m.latency.WithLabelValues(sd.Vendor).Observe(data.CompletedAt.Sub(doc.ReceivedAt).Seconds())
	}
	p.log.Info("document completed", "doc_id", sd.DocumentID, "vendor", sd.Vendor, "ref", sd.VendorRef,
		"fields", len(data.Fields), "artifacts", len(data.Artifacts))
	if f, ok := v.(vendors.Finisher); ok {
		if err := f.Finish(ctx, sd.VendorRef); err != nil {
			p.log.Warn("vendor was not told the result was taken", "doc_id", sd.DocumentID, "vendor", sd.Vendor, "err", err)
		}
	}
	return true, 0, nil
}

func (p *Poller) fail(ctx context.Context, sd events.SubmittedData, msg, reason string) (bool, time.Duration, error) {
	// Another instance may have settled the submission since it was read (a callback): its
	// result stands, and subscribers are not told of a failure after it. (The state would keep
	// the result either way: within a round, completed outranks failed.) Could not tell: fail.
	if doc, err := p.cfg.Bus.States().Get(ctx, sd.DocumentID); err == nil {
		if vs := doc.Vendors[sd.Vendor]; vs != nil && vs.Round == sd.Round && vs.Status == events.StatusCompleted {
			p.log.Info("the vendor's answer failed, but the document was completed meanwhile; it stays completed",
				"doc_id", sd.DocumentID, "vendor", sd.Vendor, "reason", reason, "error", msg)
			return true, 0, nil
		}
	}
	p.log.Warn("document failed at the vendor", "doc_id", sd.DocumentID, "vendor", sd.Vendor, "reason", reason, "error", msg)
	err := p.ann.announce(ctx, events.Failed, slotOf(sd), p.now(), events.FailedData{
		DocumentID: sd.DocumentID, Vendor: sd.Vendor, VendorRef: sd.VendorRef, Error: msg, Permanent: true, FailedAt: p.now(),
		Round: sd.Round,
	})
	if err != nil {
		return false, time.Second, err
	}
	p.m.failed.WithLabelValues(sd.Vendor, reason).Inc()
	return true, 0, nil
}

// storeArtifact streams a result file into the Object Store under a key of our making.
func (p *Poller) storeArtifact(ctx context.Context, sd events.SubmittedData, a vendors.Artifact) (events.Artifact, error) {
	name := safeName(a.Name)
	r, err := a.Open(ctx)
	if err != nil {
		return events.Artifact{}, err
	}
	defer r.Close()
	key := resultKey(sd.DocumentID, sd.Vendor, sd.Round, name)
	info, err := p.cfg.Bus.Blobs().Put(ctx, key, r, map[string]string{"content-type": a.ContentType})
	if err != nil {
		return events.Artifact{}, err
	}
	return events.Artifact{Name: name, ContentType: a.ContentType, ObjectKey: key, Size: info.Size}, nil
}

func slotOf(sd events.SubmittedData) slot {
	return slot{doc: sd.DocumentID, vendor: sd.Vendor, round: sd.Round}
}

// safeName keeps a vendor's file name usable as the last element of an object key.
func safeName(s string) string {
	s = path.Base(strings.ReplaceAll(s, `\`, "/"))
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' {
			return -1
		}
		return r
	}, s)
	if s == "" || s == "." || s == ".." || s == "/" {
		return "result"
	}
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}
