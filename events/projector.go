package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Projector keeps the document-state store in step with the stream. Producers apply their own
// events right after the PubAck so that a client can read its write at once; the projector is the
// guarantee behind that: a process that dies between the PubAck and the state write leaves an event
// the projector applies on its own. A durable consumer shared by all instances means each event is
// projected once more, not once per instance.
type Projector struct {
	cc      jetstream.ConsumeContext
	applied prometheus.Counter
	bad     prometheus.Counter
}

// StartProjector begins projecting; Stop ends it.
func (b *Bus) StartProjector(ctx context.Context, reg prometheus.Registerer) (*Projector, error) {
	cons, err := b.js.CreateOrUpdateConsumer(ctx, b.names.Stream(), jetstream.ConsumerConfig{
		Durable:       b.names.Durable("state"),
		Description:   "projects document events into the state bucket",
		FilterSubject: b.names.DocumentSubjects(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 256,
	})
	if err != nil {
		return nil, fmt.Errorf("create state projector consumer: %w", err)
	}
	p := &Projector{
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ingest_state_projected_total", Help: "Events the projector applied before their producer did (or instead of it, after a crash).",
		}),
		bad: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ingest_state_projector_malformed_total", Help: "Messages on the document subjects that are not valid events.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{p.applied, p.bad} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	log := b.log
	p.cc, err = cons.Consume(func(m jetstream.Msg) {
		ev, err := Decode(m.Data())
		if err != nil {
			// Someone published garbage on our subjects: say so once and move on, redelivering
			// it would never help.
			p.bad.Inc()
			log.Warn("state projector skips a message that is not an ingest event", "subject", m.Subject(), "err", err)
			_ = m.Term()
			return
		}
		actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, changed, err := b.states.Apply(actx, ev)
		if err != nil {
			var md *jetstream.MsgMetadata
			md, _ = m.Metadata()
			delay := time.Second
			if md != nil {
				delay = min(time.Duration(md.NumDelivered)*time.Second, time.Minute)
			}
			log.Error("state projector could not apply an event; it will be redelivered", "doc_id", ev.Subject, "event_id", ev.ID, "err", err)
			_ = m.NakWithDelay(delay)
			return
		}
		if changed {
			p.applied.Inc()
			log.Debug("state projector applied an event", "doc_id", ev.Subject, "event_id", ev.ID)
		}
		_ = m.Ack()
	}, jetstream.PullMaxMessages(64), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			log.Debug("state projector pull", "err", err)
		}
	}))
	if err != nil {
		return nil, fmt.Errorf("start state projector: %w", err)
	}
	return p, nil
}

// Stop ends projecting and waits for the message in hand.
func (p *Projector) Stop() {
	p.cc.Stop()
	<-p.cc.Closed()
}
