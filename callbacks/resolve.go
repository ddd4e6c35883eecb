package callbacks

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// Start begins resolving parked callbacks.
func (r *Receiver) Start() error {
	r.inflight = make(chan struct{}, r.cfg.Workers)
	var wg sync.WaitGroup
	cc, err := r.cons.Consume(func(m jetstream.Msg) {
		r.inflight <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-r.inflight; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			r.resolve(ctx, m)
		}()
	}, jetstream.PullMaxMessages(r.cfg.Workers), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			r.log.Debug("callback consumer pull", "err", err)
		}
	}))
	if err != nil {
		return err
	}
	r.cc = cc
	r.wait = wg.Wait
	return nil
}

// Stop ends resolving and waits for the callbacks in hand.
func (r *Receiver) Stop() {
	if r.cc != nil {
		r.cc.Stop()
		r.wait()
	}
}

func (r *Receiver) resolve(ctx context.Context, m jetstream.Msg) {
	var ev events.Event
	var p Parked
	if err := json.Unmarshal(m.Data(), &ev); err != nil || json.Unmarshal(ev.Data, &p) != nil || p.Vendor == "" {
		r.log.Warn("callback consumer skips a malformed record", "subject", m.Subject())
		_ = m.Term()
		return
	}
	ep, ok := r.endpoints[p.Vendor]
	if !ok {
		r.log.Error("parked callback for a vendor without a callback endpoint here", "vendor", p.Vendor)
		_ = m.NakWithDelay(time.Minute)
		return
	}
	log := r.log.With("vendor", p.Vendor, "ids", p.IDs)
	attempt := 1
	if md, err := m.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	retry := min(time.Duration(attempt)*500*time.Millisecond, 30*time.Second)
	withinWindow := r.now().Sub(p.ReceivedAt) < r.cfg.ParkWindow

	matched := false
	for _, id := range p.IDs {
		ref, err := ep.Parser.RefOf(ctx, id)
		if err != nil {
			log.Warn("could not map a callback id to our reference; retrying", "id", id, "err", err)
			_ = m.NakWithDelay(retry)
			return
		}
		if ref == "" {
			continue
		}
		docID, err := r.cfg.Refs.Lookup(ctx, p.Vendor, ref)
		if err != nil {
			_ = m.NakWithDelay(retry)
			return
		}
		if docID == "" {
			continue
		}
		matched = true
		finished, wait, err := r.cfg.Poller.Settle(ctx, docID, p.Vendor)
		switch {
		case finished:
			r.resolved.WithLabelValues(p.Vendor, "completed").Inc()
			log.Info("callback resolved", "doc_id", docID, "ref", ref)
		case withinWindow:
			// The vendor called back but its API does not say done yet, or our submitted
			// record is still being written: look again shortly.
			log.Info("callback: vendor not done yet according to its API; looking again", "doc_id", docID, "err", err)
			_ = m.NakWithDelay(max(wait, retry))
			return
		default:
			r.resolved.WithLabelValues(p.Vendor, "left_to_polling").Inc()
			log.Warn("callback could not be settled in its window; polling will finish the document", "doc_id", docID, "err", err)
		}
	}
	if matched {
		_ = m.Ack()
		return
	}
	if withinWindow {
		// Perhaps the callback overtook our own submitted record: keep it and look again.
		_ = m.NakWithDelay(retry)
		return
	}
	r.resolved.WithLabelValues(p.Vendor, "unmatched").Inc()
	log.Warn("callback names nothing of ours; recorded as unmatched")
	unmatched := ev
	unmatched.ID = "unmatched-" + ev.ID
	unmatched.Type = "ingest.callback.unmatched"
	if _, err := r.cfg.Bus.Publish(ctx, r.cfg.Bus.Names().CallbackSubject("unmatched", p.Vendor), unmatched); err != nil {
		_ = m.NakWithDelay(retry)
		return
	}
	_ = m.Ack()
}
