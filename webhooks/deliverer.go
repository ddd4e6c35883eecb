// Package webhooks delivers events to HTTP subscribers that cannot speak NATS: one durable
// consumer per subscription, each event POSTed as its CloudEvent and signed as Standard Webhooks
// describes, retried on a schedule, and after the last attempt published as a dead letter on
// <namespace>.delivery.failed.<subscription>.
package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
)

// MaxResponseBytes is how much of a receiver's answer is read: enough for any error message, not
// enough for a receiver to fill our memory.
const MaxResponseBytes = 64 << 10

// Config configures a Deliverer.
type Config struct {
	Bus           *events.Bus
	Subscriptions []Subscription
	// Schedule is the delay before each attempt (nil: DefaultSchedule). Tests shorten it.
	Schedule []time.Duration
	// Drain is how long deliveries in flight may finish when Run's context ends (default 5 s).
	Drain      time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
}

// Deliverer delivers events to the configured subscriptions.
type Deliverer struct {
	cfg      Config
	bus      *events.Bus
	log      *slog.Logger
	subs     map[string]*sub
	order    []string
	attempts jetstream.KeyValue
	disabled jetstream.KeyValue
	m        metrics
}

// sub is a subscription at run time.
type sub struct {
	Subscription
	keys   [][]byte
	client *http.Client
	cons   *events.Consumer
	fp     string

	mu      sync.Mutex
	off     *Disabled     // set while disabled by a 410
	changed chan struct{} // closed when off changes
	stop    context.CancelFunc
}

// Disabled is the mark a 410 Gone leaves on a subscription, kept in Key-Value so that a restart
// keeps it, until the subscription's URL or settings change or it is enabled again.
type Disabled struct {
	Fingerprint string    `json:"fingerprint"`
	URL         string    `json:"url"`
	Reason      string    `json:"reason"`
	At          time.Time `json:"at"`
	EventID     string    `json:"event_id,omitempty"`
}

type metrics struct {
	deliveries *prometheus.CounterVec
	attempt    *prometheus.HistogramVec
	lag        *prometheus.HistogramVec
}

// New checks the subscriptions, provisions their durable consumers and the buckets of attempts and
// disabled marks, and returns the Deliverer; nothing is delivered until Run.
func New(ctx context.Context, cfg Config) (*Deliverer, error) {
	if cfg.Bus == nil {
		return nil, errors.New("webhooks: a Bus is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Schedule == nil {
		cfg.Schedule = DefaultSchedule
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 5 * time.Second
	}
	d := &Deliverer{cfg: cfg, bus: cfg.Bus, log: cfg.Logger.With("component", "webhooks"), subs: map[string]*sub{},
		m: metrics{
			deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "ingest_webhook_deliveries_total",
				Help: "Webhook delivery attempts by subscription and outcome: delivered, failed (retried), dead_letter, gone.",
			}, []string{"subscription", "outcome"}),
			attempt: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name: "ingest_webhook_attempt_seconds", Help: "Time one webhook attempt took, request to answer.",
				Buckets: prometheus.ExponentialBuckets(0.001, 3, 11),
			}, []string{"subscription"}),
			lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name: "ingest_webhook_event_to_delivery_seconds", Help: "Time from an event to its successful delivery.",
				Buckets: prometheus.ExponentialBuckets(0.002, 3, 14),
			}, []string{"subscription"}),
		}}
	for _, s := range cfg.Subscriptions {
		s.defaults()
		if _, dup := d.subs[s.Name]; dup {
			return nil, fmt.Errorf("webhook subscription %q is configured twice", s.Name)
		}
		if !events.ValidToken(s.Name) {
			return nil, fmt.Errorf("webhook subscription name %q cannot be a subject token", s.Name)
		}
		rs := &sub{Subscription: s, fp: s.fingerprint(), changed: make(chan struct{}),
			client: newClient(s.Timeout, s.AllowPrivateTargets, max(s.MaxInFlight, 1))}
		for _, sec := range s.Secrets {
			key, err := config.DecodeWebhookSecret(sec)
			if err != nil {
				return nil, fmt.Errorf("webhook subscription %s: %w", s.Name, err)
			}
			rs.keys = append(rs.keys, key)
		}
		if len(rs.keys) == 0 {
			return nil, fmt.Errorf("webhook subscription %s has no secret", s.Name)
		}
		d.subs[s.Name] = rs
		d.order = append(d.order, s.Name)
	}
	var err error
	if d.attempts, err = cfg.Bus.KeyValue(ctx, events.BucketSpec{Purpose: "webhook-attempts",
		Description: "ingest webhook deliveries that needed more than one attempt: the last attempts of each, for operators",
		TTL:         7 * 24 * time.Hour}); err != nil {
		return nil, err
	}
	if d.disabled, err = cfg.Bus.KeyValue(ctx, events.BucketSpec{Purpose: "webhook-disabled",
		Description: "ingest webhook subscriptions disabled by a 410 Gone from their receiver"}); err != nil {
		return nil, err
	}
	for _, name := range d.order {
		s := d.subs[name]
		if err := d.loadMark(ctx, s); err != nil {
			return nil, err
		}
		spec := events.ConsumerSpec{
			Purpose:     "webhook-" + name,
			Description: "ingest webhook deliveries to " + name,
			// One filter for every subscription, whatever it selects: NATS 2.9 takes one filter
			// subject per consumer and cannot change it later, so the handler picks the events
			// and a changed selection needs no new consumer.
			Filter:     cfg.Bus.Names().DocumentSubjects(),
			Workers:    s.MaxInFlight,
			AckWait:    s.Timeout + 10*time.Second,
			Drain:      cfg.Drain,
			DeliverNew: true,
		}
		if s.Ordered {
			// One message handed out at a time: the next is not delivered until this one is
			// done or a dead letter (per subscription order, and so per document order).
			spec.Workers, spec.MaxAckPending = 1, 1
		}
		if s.cons, err = cfg.Bus.Consumer(ctx, spec, func(ctx context.Context, dl events.Delivery) events.Outcome {
			return d.handle(ctx, s, dl)
		}); err != nil {
			return nil, err
		}
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{d.m.deliveries, d.m.attempt, d.m.lag} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register webhook metrics: %w", err)
			}
		}
	}
	return d, nil
}

// loadMark reads a subscription's disabled mark; a mark left for other settings is removed.
func (d *Deliverer) loadMark(ctx context.Context, s *sub) error {
	e, err := d.disabled.Get(ctx, s.Name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read whether webhook subscription %s is disabled: %w", s.Name, err)
	}
	var m Disabled
	if json.Unmarshal(e.Value(), &m) != nil || m.Fingerprint != s.fp {
		d.log.Info("webhook subscription was disabled by its receiver for other settings; enabled again", "subscription", s.Name)
		if err := d.disabled.Delete(ctx, s.Name); err != nil {
			return fmt.Errorf("enable webhook subscription %s: %w", s.Name, err)
		}
		return nil
	}
	d.log.Warn("webhook subscription stays disabled: its receiver answered 410 Gone (change its url or settings, or run `ingest webhooks enable "+s.Name+"`)",
		"subscription", s.Name, "since", m.At, "reason", m.Reason)
	s.setOff(&m)
	return nil
}

// Run delivers until ctx ends, then lets deliveries in flight finish within the drain time.
func (d *Deliverer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	wg.Go(func() { d.watchMarks(wctx) })
	for _, name := range d.order {
		s := d.subs[name]
		wg.Go(func() { s.run(ctx) })
	}
	<-ctx.Done()
	stopWatch()
	wg.Wait()
	return nil
}

// run runs the subscription's consumer while it is enabled.
func (s *sub) run(ctx context.Context) {
	for ctx.Err() == nil {
		s.mu.Lock()
		if s.off != nil {
			ch := s.changed
			s.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
			}
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		s.stop = cancel
		s.mu.Unlock()
		_ = s.cons.Run(rctx) // returns only when rctx ends
		cancel()
	}
}

// setOff disables (m set) or enables (m nil) the subscription: disabling stops its consumer, whose
// messages wait in JetStream until it is enabled.
func (s *sub) setOff(m *Disabled) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if (s.off == nil) == (m == nil) {
		if m != nil {
			s.off = m
		}
		return
	}
	s.off = m
	close(s.changed)
	s.changed = make(chan struct{})
	if m != nil && s.stop != nil {
		s.stop()
	}
}

func (s *sub) disabledMark() *Disabled {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.off
}

// watchMarks follows the disabled marks, so that a 410 seen by one instance pauses the
// subscription on all, and an enable anywhere resumes it everywhere.
func (d *Deliverer) watchMarks(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := d.disabled.WatchAll(ctx)
		if err != nil {
			d.log.Warn("cannot watch the disabled webhook subscriptions; trying again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
			continue
		}
		for e := range w.Updates() {
			if e == nil {
				continue // the initial values are all there
			}
			s := d.subs[e.Key()]
			if s == nil {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				if s.disabledMark() != nil {
					d.log.Info("webhook subscription enabled again", "subscription", s.Name)
				}
				s.setOff(nil)
				continue
			}
			var m Disabled
			if json.Unmarshal(e.Value(), &m) == nil && m.Fingerprint == s.fp {
				s.setOff(&m)
			}
		}
		_ = w.Stop()
	}
}

// Status is a subscription's state, for /readyz and the subscriptions API.
type Status struct {
	Name     string    `json:"name"`
	State    string    `json:"state"` // active, disabled
	Reason   string    `json:"reason,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Ordered  bool      `json:"ordered"`
	Pending  uint64    `json:"pending"`   // events not yet handed to the subscription
	InFlight int       `json:"in_flight"` // handed out and not yet settled (waiting for a retry, among them)
}

// Statuses returns every subscription's state, in configuration order. Pending counts are read
// from JetStream when ctx allows.
func (d *Deliverer) Statuses(ctx context.Context) []Status {
	out := make([]Status, 0, len(d.order))
	for _, name := range d.order {
		s := d.subs[name]
		st := Status{Name: name, State: "active", Ordered: s.Ordered}
		if m := s.disabledMark(); m != nil {
			st.State, st.Reason, st.Since = "disabled", m.Reason, m.At
		}
		if ci, err := d.bus.JetStream().Consumer(ctx, d.bus.Names().Stream(), d.bus.Names().Durable("webhook-"+name)); err == nil {
			if info, err := ci.Info(ctx); err == nil {
				st.Pending, st.InFlight = info.NumPending, info.NumAckPending
			}
		}
		out = append(out, st)
	}
	return out
}

// Names returns the subscriptions' names, in configuration order.
func (d *Deliverer) Names() []string { return slices.Clone(d.order) }

// Enable clears a subscription's disabled mark (on every instance, through the bucket).
func (d *Deliverer) Enable(ctx context.Context, name string) error {
	s := d.subs[name]
	if s == nil {
		return fmt.Errorf("%w: %q", ErrUnknownSubscription, name)
	}
	if err := d.disabled.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("enable webhook subscription %s: %w", name, err)
	}
	s.setOff(nil)
	return nil
}

// ErrUnknownSubscription is returned for a name no subscription has.
var ErrUnknownSubscription = errors.New("no such webhook subscription")

// handle is one delivery of one event to one subscription: the consumer's handler.
func (d *Deliverer) handle(ctx context.Context, s *sub, dl events.Delivery) events.Outcome {
	ev, err := events.Decode(dl.Data)
	if err != nil {
		return events.Drop(err.Error())
	}
	if !s.wants(d.bus.Names(), dl.Subject, ev.Kind()) {
		return events.Done()
	}
	if s.filtered() {
		f, err := facts(ctx, d.bus, ev)
		if err != nil {
			// The state may lag behind the event by a moment; a document never known is skipped.
			if dl.Attempt < 20 {
				return events.RetryAfter(time.Second)
			}
			d.log.Warn("webhook filters could not be checked; event not delivered", "subscription", s.Name, "event_id", ev.ID, "doc_id", ev.Subject, "err", err)
			return events.Done()
		}
		if !s.matches(f) {
			return events.Done()
		}
	}
	if s.disabledMark() != nil {
		// The consumer is stopping and pulls nothing while disabled: the message waits in
		// JetStream and comes back soon after the subscription is enabled.
		return events.RetryAfter(time.Second)
	}
	log := d.log.With("subscription", s.Name, "event_id", ev.ID, "doc_id", ev.Subject, "attempt", dl.Attempt)
	now := time.Now()
	if age := now.Sub(ev.Time); age > s.MaxAge {
		rec := d.record(ctx, s, ev, dl, Attempt{At: now, Err: fmt.Sprintf("not delivered within max_age %s of the event", s.MaxAge)}, true)
		return d.deadLetter(ctx, s, ev, dl, rec, log)
	}
	res := d.send(ctx, s, ev.ID, dl.Data)
	d.m.attempt.WithLabelValues(s.Name).Observe(res.Latency.Seconds())
	switch {
	case res.ok():
		d.m.deliveries.WithLabelValues(s.Name, "delivered").Inc()
		d.m.lag.WithLabelValues(s.Name).Observe(time.Since(ev.Time).Seconds())
		if dl.Attempt > 1 {
			// The history of a delivery that needed retries ends with its success.
			d.record(ctx, s, ev, dl, res.Attempt(), false)
			log.Info("webhook delivered after retries", "status", res.Status)
		}
		return events.Done()
	case res.Status == http.StatusGone:
		d.m.deliveries.WithLabelValues(s.Name, "gone").Inc()
		d.record(ctx, s, ev, dl, res.Attempt(), false)
		d.disable(ctx, s, ev.ID, "the receiver answered 410 Gone")
		return events.RetryAfter(time.Second) // see above: it waits while disabled
	}
	rec := d.record(ctx, s, ev, dl, res.Attempt(), false)
	delay := delayAfter(d.cfg.Schedule, dl.Attempt)
	if (res.Status == http.StatusTooManyRequests || res.Status == http.StatusServiceUnavailable) && res.hasRetryAfter {
		delay = res.retryAfter
	}
	if dl.Attempt >= s.MaxAttempts || now.Add(delay).Sub(ev.Time) > s.MaxAge {
		return d.deadLetter(ctx, s, ev, dl, rec, log)
	}
	d.m.deliveries.WithLabelValues(s.Name, "failed").Inc()
	log.Info("webhook attempt failed; retrying", "status", res.Status, "err", res.Err, "retry_in", delay.Round(time.Millisecond).String())
	return events.RetryAfter(delay)
}

// disable marks the subscription disabled, here at once and for every instance through the bucket.
func (d *Deliverer) disable(ctx context.Context, s *sub, eventID, reason string) {
	m := &Disabled{Fingerprint: s.fp, URL: s.URL, Reason: reason, At: time.Now().UTC(), EventID: eventID}
	b, _ := json.Marshal(m)
	if _, err := d.disabled.Put(context.WithoutCancel(ctx), s.Name, b); err != nil {
		d.log.Error("could not keep the webhook subscription's disabled mark; it is disabled until this instance restarts", "subscription", s.Name, "err", err)
	}
	d.log.Warn("webhook subscription disabled: its receiver answered 410 Gone; events wait for it in JetStream "+
		"(change its url or settings, or run `ingest webhooks enable "+s.Name+"`)", "subscription", s.Name, "url", s.URL)
	s.setOff(m)
}

// deadLetter publishes the dead letter of an event the subscription could not take.
func (d *Deliverer) deadLetter(ctx context.Context, s *sub, ev events.Event, dl events.Delivery, rec Record, log *slog.Logger) events.Outcome {
	data := events.DeliveryFailedData{
		Subscription: s.Name, EventID: ev.ID, EventType: ev.Type, EventSubject: dl.Subject, DocumentID: ev.Subject,
		StreamSequence: dl.Sequence, Attempts: rec.Attempts, FirstAttemptAt: rec.FirstAttemptAt, FailedAt: time.Now().UTC(),
	}
	if n := len(rec.Last); n > 0 {
		last := rec.Last[n-1]
		data.LastStatus, data.LastError, data.LastAttemptAt = last.Status, last.Err, last.At
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return events.Drop(err.Error())
	}
	dead := events.Event{
		SpecVersion: events.SpecVersion,
		// The same id every time for the same delivery: a repeated publish is dropped by the
		// stream's duplicate window.
		ID:     ev.ID + ".delivery-failed." + s.Name,
		Source: "/webhooks/" + s.Name, Type: events.DeliveryFailedType, Subject: ev.Subject,
		Time: data.FailedAt, DataContentType: "application/json", Data: raw,
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := d.bus.Publish(pctx, d.bus.Names().DeliveryFailedSubject(s.Name), dead); err != nil {
		log.Error("could not publish the dead letter; trying again", "err", err)
		return events.RetryAfter(5 * time.Second)
	}
	d.m.deliveries.WithLabelValues(s.Name, "dead_letter").Inc()
	log.Warn("webhook delivery failed for good; dead letter published", "subject", d.bus.Names().DeliveryFailedSubject(s.Name),
		"attempts", data.Attempts, "last_status", data.LastStatus, "last_error", data.LastError)
	return events.Done()
}

// result is one attempt's outcome.
type result struct {
	Status        int
	Latency       time.Duration
	Err           string // what went wrong, in words; empty on success
	Response      string // the answer's head: status line and the start of the body
	At            time.Time
	retryAfter    time.Duration
	hasRetryAfter bool
}

func (r result) ok() bool { return r.Err == "" && r.Status >= 200 && r.Status < 300 }

func (r result) Attempt() Attempt {
	return Attempt{At: r.At, Status: r.Status, LatencyMS: float64(r.Latency.Microseconds()) / 1000, Err: r.Err, Response: r.Response}
}

// responseHead is how much of an answer is kept with an attempt.
const responseHead = 512

// send makes one attempt: the event's bytes as the body, signed with every secret.
func (d *Deliverer) send(ctx context.Context, s *sub, id string, body []byte) result {
	start := time.Now()
	res := result{At: start.UTC()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		res.Err = fmt.Sprintf("cannot make the request: %v", err)
		return res
	}
	for k, v := range s.Headers {
		req.Header.Set(k, v)
	}
	if s.Format == FormatCloudEvents {
		req.Header.Set("Content-Type", events.ContentType)
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "ingest-webhooks/1")
	req.Header[HeaderID] = []string{id} // lower-case as the standard writes them
	req.Header[HeaderTimestamp] = []string{fmt.Sprint(start.Unix())}
	req.Header[HeaderSignature] = []string{Sign(id, start, body, s.keys)}
	resp, err := s.client.Do(req)
	if err != nil {
		res.Latency = time.Since(start)
		res.Err = describe(err, s.Timeout)
		return res
	}
	head, rerr := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes))
	resp.Body.Close()
	res.Latency = time.Since(start)
	res.Status = resp.StatusCode
	res.Response = truncate(resp.Proto+" "+resp.Status+"\n"+string(head), responseHead)
	res.retryAfter, res.hasRetryAfter = retryAfter(resp.Header, time.Now())
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		res.Err = fmt.Sprintf("the receiver answered %s (redirects are not followed; configure the final URL%s)", resp.Status, location(resp))
	case resp.StatusCode >= 300 || resp.StatusCode < 200:
		res.Err = "the receiver answered " + resp.Status
	case rerr != nil:
		// The status decides; a body cut off after a 2xx does not undo the delivery.
	}
	return res
}

func location(resp *http.Response) string {
	if l := resp.Header.Get("Location"); l != "" {
		return ": " + truncate(l, 200)
	}
	return ""
}

// describe words a transport error for an operator.
func describe(err error, timeout time.Duration) string {
	switch {
	case errors.Is(err, ErrForbiddenTarget):
		return "refused to connect: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Sprintf("no answer within the timeout of %s: %v", timeout, err)
	}
	return fmt.Sprintf("could not reach the receiver: %v", err)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
