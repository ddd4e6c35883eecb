package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// The consumer runtime: every durable consumer of the service (state projector, dispatcher,
// poller, callback resolver) is a Handler run by a Consumer. The handler decides what becomes of
// a message — done, again after a delay, or dropped — and the runtime does the rest the same way
// for all of them: it pulls only as many messages as it has free workers (none waits in a client
// buffer while its AckWait runs), keeps long work alive with InProgress, turns a panic into a
// decision instead of a dead process, logs acknowledgements that fail, counts, and stops within
// a bound.

// Outcome is a handler's decision about a message.
type Outcome struct {
	kind   outcomeKind
	delay  time.Duration
	reason string
}

type outcomeKind int

const (
	outcomeDone outcomeKind = iota
	outcomeRetry
	outcomeDrop
)

// Done acknowledges the message: nothing is left to do for it.
func Done() Outcome { return Outcome{kind: outcomeDone} }

// RetryAfter has the message delivered again after d (at least 100 ms).
func RetryAfter(d time.Duration) Outcome {
	return Outcome{kind: outcomeRetry, delay: max(d, 100*time.Millisecond)}
}

// Drop ends the message's deliveries for good; reason is logged. For messages that no retry can
// help (not an event of ours).
func Drop(reason string) Outcome { return Outcome{kind: outcomeDrop, reason: reason} }

func (o Outcome) String() string {
	switch o.kind {
	case outcomeRetry:
		return "retry in " + o.delay.String()
	case outcomeDrop:
		return "drop: " + o.reason
	}
	return "done"
}

// Delivery is one message handed to a handler.
type Delivery struct {
	Subject string
	Data    []byte
	// Attempt is 1 on the first delivery, and counts up with each redelivery.
	Attempt int
	// Sequence is the message's sequence in the stream (0 when unknown): where it can be read
	// again (a dead letter names it, so that one delivery can be redone).
	Sequence uint64
	// MsgID is the message's Nats-Msg-Id: for an event, its id ("" when not sent).
	MsgID string
}

// Handler decides about one message. ctx ends when the consumer is stopped past its drain time.
type Handler func(ctx context.Context, d Delivery) Outcome

// ConsumerSpec describes a durable consumer on the event stream.
type ConsumerSpec struct {
	// Purpose names the durable (<namespace>-<purpose>) and the consumer in metrics and logs.
	Purpose     string
	Description string
	// Filter is the subject filter.
	Filter string
	// Workers is how many messages are handled at once (default 8).
	Workers int
	// AckWait is how long a message stays with a worker that stopped answering for it (a
	// crashed instance) before it is delivered again (default 10 s). Handlers that take longer
	// are kept alive with InProgress.
	AckWait time.Duration
	// Drain is how long handlers in hand may finish once Run's context ends, before their own
	// contexts are cancelled (default 5 s).
	Drain time.Duration
	// MaxAckPending caps the messages handed out and not yet settled (default Workers*4). With
	// Workers 1 and MaxAckPending 1 a consumer handles its messages strictly in stream order: a
	// message waiting for its retry holds back the ones behind it.
	MaxAckPending int
	// DeliverNew starts a consumer created now at the next message instead of the stream's first
	// (a new webhook subscription gets what happens from now on). It only matters when the
	// durable is created; an existing one keeps its place.
	DeliverNew bool
	// Background, when set, holds the consumer to one handler at a time while foreground work
	// is under way and the cores are busy (see Priority.Yield).
	Background *Priority
	// OnPanic decides about a message whose handler panicked (after the runtime logged the
	// panic and its stack): fail the document it is about, say. Nil: the message is dropped.
	OnPanic func(ctx context.Context, d Delivery, panicked any) Outcome
}

// consumerMetrics are shared by every consumer of a Bus, labelled by consumer.
type consumerMetrics struct {
	deliveries   *prometheus.CounterVec
	redeliveries *prometheus.CounterVec
	outcomes     *prometheus.CounterVec
	seconds      *prometheus.HistogramVec
}

func newConsumerMetrics() consumerMetrics {
	return consumerMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_consumer_deliveries_total", Help: "Messages handed to a consumer's handlers.",
		}, []string{"consumer"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_consumer_redeliveries_total", Help: "Messages handed to a consumer's handlers more than once.",
		}, []string{"consumer"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_consumer_outcomes_total", Help: "Handler decisions by consumer: done, retry, drop, panic.",
		}, []string{"consumer", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ingest_consumer_handler_seconds", Help: "Time a handler took per message.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"consumer"}),
	}
}

func (m consumerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.deliveries, m.redeliveries, m.outcomes, m.seconds}
}

// Consumer runs a Handler over a durable consumer.
type Consumer struct {
	// newest is the stream time of the latest message handed to a handler (Unix nanoseconds):
	// how long work has waited, for Background.
	newest atomic.Int64
	spec   ConsumerSpec
	cons   jetstream.Consumer
	h      Handler
	log    *slog.Logger
	m      consumerMetrics
}

// Consumer provisions (idempotently) the durable consumer spec describes and returns its
// runtime; nothing is delivered until Run.
func (b *Bus) Consumer(ctx context.Context, spec ConsumerSpec, h Handler) (*Consumer, error) {
	if spec.Purpose == "" || spec.Filter == "" || h == nil {
		return nil, errors.New("a consumer needs a purpose, a filter and a handler")
	}
	if spec.Workers <= 0 {
		spec.Workers = 8
	}
	if spec.AckWait <= 0 {
		spec.AckWait = 10 * time.Second
	}
	if spec.Drain <= 0 {
		spec.Drain = 5 * time.Second
	}
	if spec.MaxAckPending <= 0 {
		spec.MaxAckPending = spec.Workers * 4
	}
	deliver := jetstream.DeliverAllPolicy
	if spec.DeliverNew {
		deliver = jetstream.DeliverNewPolicy
	}
	var cons jetstream.Consumer
	err := provision(ctx, b.log, "consumer "+b.names.Durable(spec.Purpose), func(ctx context.Context) (err error) {
		cons, err = b.js.CreateOrUpdateConsumer(ctx, b.names.Stream(), jetstream.ConsumerConfig{
			Durable:       b.names.Durable(spec.Purpose),
			Description:   spec.Description,
			FilterSubject: spec.Filter,
			DeliverPolicy: deliver,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       spec.AckWait,
			// Handlers end a message's life (Done or Drop); retries are their decision, with their
			// own bounds (attempt counts, deadlines), not a delivery count.
			MaxDeliver:    -1,
			MaxAckPending: spec.MaxAckPending,
			Replicas:      b.replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", b.names.Durable(spec.Purpose), err)
	}
	if ci := cons.CachedInfo(); ci != nil {
		if err := replicasAre(b.names.Stream()+" consumer "+ci.Name, ci.Config.Replicas, b.replicas); err != nil {
			return nil, err
		}
	}
	return &Consumer{spec: spec, cons: cons, h: h, log: b.log.With("consumer", spec.Purpose), m: b.consumers}, nil
}

// pullWait bounds one pull request: how long an idle consumer waits for work before asking again.
const pullWait = 5 * time.Second

// backgroundPoll is how often a background consumer held back by foreground work looks again.
const backgroundPoll = 20 * time.Millisecond

// Run handles messages until ctx ends. Then it takes no more, gives the handlers in hand Drain
// to finish, cancels their contexts, and returns when the last one has (their messages are
// delivered again later, here or elsewhere).
func (c *Consumer) Run(ctx context.Context) error {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	slots := make(chan struct{}, c.spec.Workers)
	release := func(k int) {
		for range k {
			<-slots
		}
	}
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		// One free worker at least, then every other one that is free.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		limit := c.spec.Workers
		if c.spec.Background.Yield(c.waited()) {
			limit = 1
		}
		if len(slots) > limit {
			// Foreground work under way and a handler of ours still busy: look again shortly.
			release(1)
			select {
			case <-ctx.Done():
			case <-time.After(backgroundPoll):
			}
			continue
		}
		k := 1
	more:
		for k < limit {
			select {
			case slots <- struct{}{}:
				k++
			default:
				break more
			}
		}
		fctx, fcancel := context.WithTimeout(ctx, pullWait)
		batch, err := c.cons.Fetch(k, jetstream.FetchContext(fctx))
		if err != nil {
			fcancel()
			release(k)
			if ctx.Err() == nil {
				c.log.Debug("pull failed; retrying", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
				pause = min(pause*2, 5*time.Second)
			}
			continue
		}
		pause = 100 * time.Millisecond
		got := 0
		for m := range batch.Messages() {
			got++
			wg.Add(1)
			go func() {
				defer func() { release(1); wg.Done() }()
				c.handle(hctx, m)
			}()
		}
		fcancel()
		release(k - got)
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) &&
			!errors.Is(err, jetstream.ErrNoHeartbeat) {
			c.log.Debug("pull ended early", "err", err)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.spec.Drain):
		c.log.Info("handlers still busy at the end of the drain time; cancelling them (their messages come back later)")
		cancel()
		<-done
	}
	return nil
}

// waited is how long the latest message handed to a handler had been in the stream (0 before
// the first).
func (c *Consumer) waited() time.Duration {
	if n := c.newest.Load(); n != 0 {
		return time.Since(time.Unix(0, n))
	}
	return 0
}

// handle runs the handler on one message and carries out its decision.
func (c *Consumer) handle(ctx context.Context, m jetstream.Msg) {
	d := Delivery{Subject: m.Subject(), Data: m.Data(), Attempt: 1, MsgID: m.Headers().Get(jetstream.MsgIDHeader)}
	if md, err := m.Metadata(); err == nil {
		d.Attempt = int(md.NumDelivered)
		d.Sequence = md.Sequence.Stream
		c.newest.Store(md.Timestamp.UnixNano())
	}
	c.m.deliveries.WithLabelValues(c.spec.Purpose).Inc()
	if d.Attempt > 1 {
		c.m.redeliveries.WithLabelValues(c.spec.Purpose).Inc()
	}
	stop := keepAlive(ctx, m, c.spec.AckWait/3)
	start := time.Now()
	out := c.run(ctx, d)
	stop()
	c.m.seconds.WithLabelValues(c.spec.Purpose).Observe(time.Since(start).Seconds())
	var err error
	switch out.kind {
	case outcomeDone:
		c.m.outcomes.WithLabelValues(c.spec.Purpose, "done").Inc()
		err = m.Ack()
	case outcomeRetry:
		c.m.outcomes.WithLabelValues(c.spec.Purpose, "retry").Inc()
		err = m.NakWithDelay(out.delay)
	case outcomeDrop:
		c.m.outcomes.WithLabelValues(c.spec.Purpose, "drop").Inc()
		c.log.Warn("message dropped", "subject", d.Subject, "reason", out.reason)
		err = m.Term()
	}
	if err != nil {
		// The message comes back after AckWait: harmless for idempotent handlers, worth knowing.
		c.log.Warn("could not settle a message with JetStream; it will be delivered again", "subject", d.Subject, "decision", out.String(), "err", err)
	}
}

// run calls the handler, turning a panic into OnPanic's decision.
func (c *Consumer) run(ctx context.Context, d Delivery) (out Outcome) {
	defer func() {
		if p := recover(); p != nil {
			c.m.outcomes.WithLabelValues(c.spec.Purpose, "panic").Inc()
			c.log.Error("handler panicked; the process goes on", "subject", d.Subject, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			out = Drop(fmt.Sprintf("the handler panicked: %v", p))
			if c.spec.OnPanic != nil {
				out = c.safeOnPanic(ctx, d, p)
			}
		}
	}()
	return c.h(ctx, d)
}

func (c *Consumer) safeOnPanic(ctx context.Context, d Delivery, p any) (out Outcome) {
	defer func() {
		if q := recover(); q != nil {
			c.log.Error("the panic handler panicked too", "subject", d.Subject, "panic", fmt.Sprint(q))
			out = RetryAfter(time.Minute)
		}
	}()
	return c.spec.OnPanic(ctx, d, p)
}

func keepAlive(ctx context.Context, m jetstream.Msg, every time.Duration) func() {
	t := time.NewTicker(every)
	done := make(chan struct{})
	go func() {
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = m.InProgress()
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}
