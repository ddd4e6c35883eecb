package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config says how to provision the backbone.
type Config struct {
	Namespace         string        // default "ingest"
	MaxAge            time.Duration // how long events are kept; default 30 days
	DuplicateWindow   time.Duration // default 2 minutes
	Replicas          int           // default 1
	DocumentsMaxBytes int64         // cap on the documents bucket; 0 = none
	Logger            *slog.Logger
	Registerer        prometheus.Registerer // nil: metrics are not registered
}

// Bus is the provisioned backbone of one deployment: the event stream, the document bytes and the
// document states.
type Bus struct {
	js        jetstream.JetStream
	names     Names
	replicas  int
	stream    jetstream.Stream
	blobs     *Blobs
	states    *States
	log       *slog.Logger
	metrics   busMetrics
	consumers consumerMetrics
	applied   *appliedHere // events Record wrote into the state itself (the projector skips them)
	// dupWindow is the stream's duplicate window: a repeat of an event inside it is dropped.
	dupWindow time.Duration
	maxAge    time.Duration // how long the stream keeps events
}

type busMetrics struct {
	published *prometheus.CounterVec
	duplicate *prometheus.CounterVec
	latency   prometheus.Histogram
}

// Open creates or updates the stream and buckets (idempotently: every instance does this on start)
// and returns the Bus over them.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Bus, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "ingest"
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 30 * 24 * time.Hour
	}
	if cfg.DuplicateWindow == 0 {
		cfg.DuplicateWindow = 2 * time.Minute
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	names := Names{Namespace: cfg.Namespace}
	want := jetstream.StreamConfig{
		Name:        names.Stream(),
		Description: "ingest document events (CloudEvents 1.0, structured JSON)",
		Subjects:    []string{names.AllSubjects()},
		// Limits retention, not WorkQueue: any number of subscribers (ERP connectors, dashboards,
		// `ingest tail --all`) read the same events independently.
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     cfg.MaxAge,
		Duplicates: cfg.DuplicateWindow,
		Replicas:   cfg.Replicas,
		Discard:    jetstream.DiscardOld,
		// Events carry references, never document bytes; a megabyte event is a bug.
		MaxMsgSize: 1 << 20,
	}
	var stream jetstream.Stream
	err := provision(ctx, cfg.Logger, "stream "+want.Name, func(ctx context.Context) (err error) {
		stream, err = js.CreateOrUpdateStream(ctx, want)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("provision stream %s: %w", want.Name, err)
	}
	// Older servers silently drop settings they do not know; read back what took effect.
	if got := stream.CachedInfo().Config; got.Duplicates != want.Duplicates || got.MaxAge != want.MaxAge || got.Retention != want.Retention {
		return nil, fmt.Errorf("stream %s was created with duplicates=%s max_age=%s retention=%s, not the configured %s/%s/%s",
			want.Name, got.Duplicates, got.MaxAge, got.Retention, want.Duplicates, want.MaxAge, want.Retention)
	}
	if err := replicasAre(want.Name, stream.CachedInfo().Config.Replicas, cfg.Replicas); err != nil {
		return nil, err
	}
	var obs jetstream.ObjectStore
	err = provision(ctx, cfg.Logger, "object store "+names.DocumentsBucket(), func(ctx context.Context) (err error) {
		obs, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      names.DocumentsBucket(),
			Description: "ingest document bytes and result files",
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			MaxBytes:    cfg.DocumentsMaxBytes,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("provision object store %s: %w", names.DocumentsBucket(), err)
	}
	if ost, err := obs.Status(ctx); err != nil {
		return nil, fmt.Errorf("read back object store %s: %w", names.DocumentsBucket(), err)
	} else if err := replicasAre("OBJ_"+names.DocumentsBucket(), ost.Replicas(), cfg.Replicas); err != nil {
		return nil, err
	}
	obsStream, err := js.Stream(ctx, "OBJ_"+names.DocumentsBucket())
	if err != nil {
		return nil, fmt.Errorf("read back object store %s: %w", names.DocumentsBucket(), err)
	}
	kv, err := openBucket(ctx, js, cfg.Logger, jetstream.KeyValueConfig{
		Bucket:      names.StateBucket(),
		Description: "ingest document states",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		History:     1,
	})
	if err != nil {
		return nil, err
	}

	b := &Bus{
		js:        js,
		names:     names,
		replicas:  cfg.Replicas,
		stream:    stream,
		blobs:     newBlobs(obs, names.DocumentsBucket(), obsStream, js.Conn()),
		states:    &States{kv: kv},
		applied:   newAppliedHere(8192),
		dupWindow: cfg.DuplicateWindow,
		maxAge:    cfg.MaxAge,
		log:       cfg.Logger,
		consumers: newConsumerMetrics(),
		metrics: busMetrics{
			published: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "ingest_events_published_total", Help: "Events acknowledged by JetStream, by type.",
			}, []string{"type"}),
			duplicate: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "ingest_events_duplicate_total", Help: "Publishes JetStream recognised as repeats of an event it already holds.",
			}, []string{"type"}),
			latency: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name: "ingest_event_publish_seconds", Help: "Time from publish to PubAck.",
				Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
			}),
		},
	}
	if cfg.Registerer != nil {
		for _, c := range append([]prometheus.Collector{b.metrics.published, b.metrics.duplicate, b.metrics.latency}, b.consumers.collectors()...) {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return b, nil
}

// Ready reports whether the event stream can take events now: on a cluster, that it has a leader
// (none while the nodes elect one, or without a quorum). The error says why, for /readyz.
func (b *Bus) Ready(ctx context.Context) error {
	info, err := b.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("the event stream %s does not answer (on a cluster: no leader, or no quorum to elect one): %w", b.names.Stream(), err)
	}
	if info.Cluster != nil && info.Cluster.Leader == "" {
		return fmt.Errorf("the event stream %s has no leader: the NATS cluster is electing one or has no quorum", b.names.Stream())
	}
	return nil
}

// Names returns the deployment's JetStream names.
func (b *Bus) Names() Names { return b.names }

// Retention is how long the stream keeps events: records kept beside a document's events for
// its processing (submission records, vendor references) are of no use past it, and expire then.
func (b *Bus) Retention() time.Duration { return b.maxAge }

// JetStream returns the JetStream context the bus was opened with.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Blobs returns the document byte store.
func (b *Bus) Blobs() *Blobs { return b.blobs }

// States returns the document-state store.
func (b *Bus) States() *States { return b.states }

// Ack is JetStream's acknowledgement of a publish.
type Ack struct {
	Sequence  uint64
	Duplicate bool // the stream already held this event (same id inside the duplicate window)
}

// Publish sends ev to subject and returns only once JetStream has stored it. The event id is the
// Nats-Msg-Id, so retries (ours here, or a caller's after a crash) are recognised as the same event.
// Timeouts and a lost connection are retried with the same id until ctx ends.
func (b *Bus) Publish(ctx context.Context, subject string, ev Event) (Ack, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return Ack{}, fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentType)
	start := time.Now()
	delay := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		pa, err := b.js.PublishMsg(actx, msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(b.names.Stream()))
		cancel()
		if err == nil {
			b.metrics.latency.Observe(time.Since(start).Seconds())
			if pa.Duplicate {
				b.metrics.duplicate.WithLabelValues(ev.Type).Inc()
			} else {
				b.metrics.published.WithLabelValues(ev.Type).Inc()
			}
			return Ack{Sequence: pa.Sequence, Duplicate: pa.Duplicate}, nil
		}
		if !Retryable(err) || ctx.Err() != nil {
			return Ack{}, fmt.Errorf("publish %s event %s to %s (attempt %d): %w", ev.Kind(), ev.ID, subject, attempt, err)
		}
		b.log.WarnContext(ctx, "publish not acknowledged, retrying with the same message id",
			"event_id", ev.ID, "doc_id", ev.Subject, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return Ack{}, fmt.Errorf("publish %s event %s: %w (last error: %v)", ev.Kind(), ev.ID, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// JetStream error codes of a cluster that cannot place or lead a stream right now (nats-server's
// JSClusterNoPeersErrF, JSClusterNotAvailErr, JSClusterNotLeaderErr); nats.go names none.
const (
	errCodeNoPeers    jetstream.ErrorCode = 10005
	errCodeNoLeader   jetstream.ErrorCode = 10008
	errCodeNotHandled jetstream.ErrorCode = 10009
)

// Retryable says whether a publish may succeed if repeated: no answer (timeout, no responders
// while a cluster elects a leader, reconnecting) as opposed to a refusal.
func Retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeNoPeers || apiErr.ErrorCode == errCodeNoLeader ||
		apiErr.ErrorCode == errCodeNotHandled) {
		return true // a cluster still forming, or a node away: the placement comes back
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected)
}

// Record publishes a document event once and folds it into the document's state: the one way a
// document step is written. The state is looked at first, since a repeat past the stream's
// duplicate window would otherwise be a second event; the publish carries the event id as its
// Nats-Msg-Id, so a repeat inside the window is dropped by JetStream; the state is written at
// once so that a client reads its own write, and when that write fails the projector makes it
// from the event. It returns the state as far as it is known and whether the event was new.
func (b *Bus) Record(ctx context.Context, subject string, ev Event) (Document, bool, error) {
	// Unreadable now: the event is published all the same (JetStream drops a repeat inside its
	// window) and the state write reads again.
	snap, _ := b.states.Read(ctx, ev.Subject)
	return b.recordOn(ctx, subject, ev, snap)
}

// RecordOn is Record for a caller that has read the document's state shortly before
// (States.Read): the state is not read again. A repeat of ev that happened since the read is
// still dropped, by JetStream, as long as the read is well inside the stream's duplicate
// window; an older snapshot is read again.
func (b *Bus) RecordOn(ctx context.Context, subject string, ev Event, snap Snapshot) (Document, bool, error) {
	if snap.valid && snap.ID != ev.Subject {
		return Document{}, false, fmt.Errorf("event %s: a state of %s given for document %s", ev.ID, snap.ID, ev.Subject)
	}
	if !snap.valid || time.Since(snap.at) > b.dupWindow/2 {
		return b.Record(ctx, subject, ev)
	}
	return b.recordOn(ctx, subject, ev, snap)
}

func (b *Bus) recordOn(ctx context.Context, subject string, ev Event, snap Snapshot) (Document, bool, error) {
	if snap.valid && snap.has(ev.ID) {
		return snap.Document, false, nil
	}
	return b.record(ctx, subject, ev, func(ctx context.Context, ev Event, seq uint64) (Document, bool, error) {
		return b.states.applyOn(ctx, ev, seq, snap)
	})
}

// RecordNew is Record for the first event of a document whose id was made for it just now (a
// random id, as an upload without an Idempotency-Key gets): nothing can be recorded under it, so
// there is no earlier state to look for, and the state is created without being read first —
// two round trips to JetStream instead of four. Given an id that does have a state, it is as
// correct as Record, only slower.
func (b *Bus) RecordNew(ctx context.Context, subject string, ev Event) (Document, error) {
	doc, _, err := b.record(ctx, subject, ev, b.states.applyFirst)
	return doc, err
}

// AwaitRecord waits until the state write of event id that Record has under way in this process
// has ended; for any other event it returns at once. A handler of an event its own process has
// just published (the poller, of a submitted event) reads the state after that write instead of
// before it, and its own write then meets no conflict (a read and a write saved).
func (b *Bus) AwaitRecord(ctx context.Context, eventID string) { b.applied.wait(ctx, eventID) }

func (b *Bus) record(ctx context.Context, subject string, ev Event, apply func(context.Context, Event, uint64) (Document, bool, error)) (Document, bool, error) {
	// Registered before the publish: the projector may receive the event before the state
	// write below is done, and waits for it.
	finish := b.applied.begin(ev.ID)
	// A repeat's acknowledgement names the sequence of the event it repeats.
	ack, err := b.Publish(ctx, subject, ev)
	if err != nil {
		finish(false)
		return Document{}, false, err
	}
	doc, _, err := apply(context.WithoutCancel(ctx), ev, ack.Sequence)
	finish(err == nil)
	if err != nil {
		b.log.WarnContext(ctx, "document state not written yet; the projector will", "doc_id", ev.Subject, "event_id", ev.ID, "err", err)
		return Document{ID: ev.Subject}, true, nil
	}
	return doc, true, nil
}
