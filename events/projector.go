package events

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Projector keeps the document-state store in step with the stream. Producers apply their own
// events right after the PubAck so that a client can read its write at once; the projector is the
// guarantee behind that: a process that dies between the PubAck and the state write leaves an event
// the projector applies on its own. A durable consumer shared by all instances means each event is
// projected once more, not once per instance.
type Projector struct {
	bus     *Bus
	c       *Consumer
	applied prometheus.Counter
	skipped prometheus.Counter
	bad     prometheus.Counter
}

// NewProjector provisions the projector's consumer; Run projects.
func (b *Bus) NewProjector(ctx context.Context, reg prometheus.Registerer) (*Projector, error) {
	p := &Projector{
		bus: b,
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ingest_state_projected_total", Help: "Events the projector applied before their producer did (or instead of it, after a crash).",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ingest_state_projector_skipped_total", Help: "Events passed over because this instance had written them into the state itself.",
		}),
		bad: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ingest_state_projector_malformed_total", Help: "Messages on the document subjects that are not valid events.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{p.applied, p.skipped, p.bad} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	var err error
	p.c, err = b.Consumer(ctx, ConsumerSpec{
		Purpose: "state", Description: "projects document events into the state bucket",
		Filter: b.names.DocumentSubjects(), Workers: 16, AckWait: 30 * time.Second,
	}, p.handle)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Run projects until ctx ends.
func (p *Projector) Run(ctx context.Context) error { return p.c.Run(ctx) }

func (p *Projector) handle(ctx context.Context, d Delivery) Outcome {
	if d.Attempt == 1 && d.MsgID != "" {
		// Written by Record in this process, or being written: wait for that write rather
		// than race it (bounded: past the bound, the event is applied here as any other).
		wctx, cancel := context.WithTimeout(ctx, awaitBound)
		skip := p.bus.applied.take(wctx, d.MsgID)
		cancel()
		if skip {
			p.skipped.Inc()
			return Done()
		}
	}
	ev, err := Decode(d.Data)
	if err != nil {
		// Someone published garbage on our subjects: redelivering it would never help.
		p.bad.Inc()
		return Drop("not an ingest event: " + err.Error())
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, changed, err := p.bus.states.Apply(actx, ev, d.Sequence)
	if err != nil {
		p.bus.log.Error("state projector could not apply an event; it will be delivered again", "doc_id", ev.Subject, "event_id", ev.ID, "err", err)
		return RetryAfter(min(time.Duration(d.Attempt)*time.Second, time.Minute))
	}
	if changed {
		p.applied.Inc()
		p.bus.log.Debug("state projector applied an event", "doc_id", ev.Subject, "event_id", ev.ID)
	}
	return Done()
}
