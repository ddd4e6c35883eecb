package vendors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// PollSettings say how one vendor is polled.
type PollSettings struct {
	Initial  time.Duration // first delay after "not yet" (default 1 s), doubling
	Max      time.Duration // delay cap (default 1 min)
	Deadline time.Duration // give up this long after submission (default 24 h)
}

func (p PollSettings) withDefaults() PollSettings {
	if p.Initial <= 0 {
		p.Initial = time.Second
	}
	if p.Max <= 0 {
		p.Max = time.Minute
	}
	if p.Deadline <= 0 {
		p.Deadline = 24 * time.Hour
	}
	return p
}

// PollConfig configures the poller.
type PollConfig struct {
	Bus      *events.Bus
	Vendors  map[string]Vendor
	Settings map[string]PollSettings // by vendor; missing means defaults
	// Workers is how many documents are checked at once (default 16).
	Workers int
	Logger  *slog.Logger
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
	w   *worker
	now func() time.Time
}

// StartPoller provisions its consumer and starts working.
func StartPoller(ctx context.Context, cfg PollConfig) (*Poller, error) {
	if cfg.Bus == nil {
		return nil, errors.New("poller: Bus is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := cfg.Metrics
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	p := &Poller{cfg: cfg, ann: announcer{bus: cfg.Bus, log: cfg.Logger}, log: cfg.Logger, m: m, now: time.Now}
	names := cfg.Bus.Names()
	cons, err := cfg.Bus.JetStream().CreateOrUpdateConsumer(ctx, names.Stream(), jetstream.ConsumerConfig{
		Durable:       names.Durable(pollConsumer),
		Description:   "follows submitted documents until their vendor is done",
		FilterSubject: names.KindSubjects(events.Submitted),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1, // the deadline ends polling, not a count
		MaxAckPending: cfg.Workers * 4,
	})
	if err != nil {
		return nil, fmt.Errorf("create poll consumer: %w", err)
	}
	p.w, err = startWorker(cons, cfg.Workers, ackWait, cfg.Logger, p.handle)
	if err != nil {
		return nil, fmt.Errorf("start poller: %w", err)
	}
	return p, nil
}

// Stop ends polling; checks under way get until ctx ends.
func (p *Poller) Stop(ctx context.Context) { p.w.stop(ctx) }

func (p *Poller) handle(ctx context.Context, m jetstream.Msg) {
	ev, err := events.Decode(m.Data())
	var sd events.SubmittedData
	if err == nil {
		err = ev.DecodeData(&sd)
	}
	if err != nil || sd.DocumentID == "" || sd.Vendor == "" {
		p.log.Warn("poller skips a message that is not a submitted event", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return
	}
	log := p.log.With("doc_id", sd.DocumentID, "vendor", sd.Vendor)
	attempt := 1
	if md, err := m.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	settings := p.cfg.Settings[sd.Vendor].withDefaults()
	retry := func(err error, hint time.Duration) {
		d := backoff(attempt, settings.Initial, settings.Max, hint)
		if err != nil {
			log.Warn("vendor check failed; trying again", "retry_in", d.String(), "err", err)
		}
		_ = m.NakWithDelay(d)
	}
	doc, err := p.cfg.Bus.States().Get(ctx, sd.DocumentID)
	if err == nil {
		if vs := doc.Vendors[sd.Vendor]; vs != nil && (vs.Status == events.StatusCompleted || vs.Status == events.StatusFailed) {
			_ = m.Ack() // finished already (a callback came first, or this is a redelivery)
			return
		}
	}
	v := p.cfg.Vendors[sd.Vendor]
	if v == nil {
		// Another instance may have this vendor configured; this one cannot help.
		log.Error("submitted to a vendor that is not configured here")
		_ = m.NakWithDelay(time.Minute)
		return
	}
	if age := p.now().Sub(sd.SubmittedAt); age > settings.Deadline {
		p.finishFailed(ctx, m, sd, fmt.Sprintf("no result %s after submission (poll deadline %s)", age.Round(time.Second), settings.Deadline), "deadline")
		return
	}

	start := p.now()
	prog, err := v.Check(ctx, sd.VendorRef)
	p.m.calls.WithLabelValues(sd.Vendor, "check").Observe(time.Since(start).Seconds())
	switch {
	case err != nil && IsPermanent(err):
		p.m.polls.WithLabelValues(sd.Vendor, "error").Inc()
		p.finishFailed(ctx, m, sd, messageOf(err), "check")
		return
	case err != nil:
		p.m.polls.WithLabelValues(sd.Vendor, "error").Inc()
		retry(err, RetryAfterOf(err))
		return
	case !prog.Done:
		p.m.polls.WithLabelValues(sd.Vendor, "pending").Inc()
		retry(nil, prog.RetryAfter)
		return
	case prog.Failed:
		p.m.polls.WithLabelValues(sd.Vendor, "done").Inc()
		msg := prog.Error
		if msg == "" {
			msg = "the vendor reports an error for this document"
		}
		p.finishFailed(ctx, m, sd, msg, "vendor")
		return
	}
	p.m.polls.WithLabelValues(sd.Vendor, "done").Inc()

	start = p.now()
	res, err := v.Result(ctx, sd.VendorRef)
	p.m.calls.WithLabelValues(sd.Vendor, "result").Observe(time.Since(start).Seconds())
	if err != nil {
		if IsPermanent(err) {
			p.finishFailed(ctx, m, sd, messageOf(err), "result")
		} else {
			retry(err, RetryAfterOf(err))
		}
		return
	}
	data := events.CompletedData{
		DocumentID: sd.DocumentID, Vendor: sd.Vendor, VendorRef: sd.VendorRef,
		Text: res.Text, Fields: res.Fields, Raw: res.Raw, CompletedAt: p.now(),
	}
	for _, a := range res.Artifacts {
		stored, err := p.storeArtifact(ctx, sd, a)
		if err != nil {
			retry(fmt.Errorf("store result file %s: %w", a.Name, err), RetryAfterOf(err))
			return
		}
		data.Artifacts = append(data.Artifacts, stored)
	}
	data, err = fitCompleted(ctx, p.cfg.Bus, data)
	if err != nil {
		retry(err, 0)
		return
	}
	if err := p.ann.announce(ctx, events.Completed, sd.DocumentID, sd.Vendor, data.CompletedAt, data); err != nil {
		retry(err, 0)
		return
	}
	p.m.completed.WithLabelValues(sd.Vendor).Inc()
	if !doc.ReceivedAt.IsZero() {
		p.m.latency.WithLabelValues(sd.Vendor).Observe(data.CompletedAt.Sub(doc.ReceivedAt).Seconds())
	}
	log.Info("document completed", "ref", sd.VendorRef, "fields", len(data.Fields), "artifacts", len(data.Artifacts))
	_ = m.Ack()
}

func (p *Poller) finishFailed(ctx context.Context, m jetstream.Msg, sd events.SubmittedData, msg, reason string) {
	p.log.Warn("document failed at the vendor", "doc_id", sd.DocumentID, "vendor", sd.Vendor, "reason", reason, "error", msg)
	err := p.ann.announce(ctx, events.Failed, sd.DocumentID, sd.Vendor, p.now(), events.FailedData{
		DocumentID: sd.DocumentID, Vendor: sd.Vendor, VendorRef: sd.VendorRef, Error: msg, Permanent: true, FailedAt: p.now(),
	})
	if err != nil {
		_ = m.NakWithDelay(time.Second)
		return
	}
	p.m.failed.WithLabelValues(sd.Vendor, reason).Inc()
	_ = m.Ack()
}

// storeArtifact streams a result file into the Object Store under a key of our making.
func (p *Poller) storeArtifact(ctx context.Context, sd events.SubmittedData, a Artifact) (events.Artifact, error) {
	name := safeName(a.Name)
	r, err := a.Open(ctx)
	if err != nil {
		return events.Artifact{}, err
	}
	defer r.Close()
	key := fmt.Sprintf("results/%s/%s/%s", sd.DocumentID, sd.Vendor, name)
	info, err := p.cfg.Bus.Blobs().Put(ctx, key, r, map[string]string{"content-type": a.ContentType})
	if err != nil {
		return events.Artifact{}, err
	}
	return events.Artifact{Name: name, ContentType: a.ContentType, ObjectKey: key, Size: info.Size}, nil
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
