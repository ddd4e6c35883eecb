package callbacks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ingest-dev/ingest/events"
)

// Run resolves parked callbacks until ctx ends.
func (r *Receiver) Run(ctx context.Context) error { return r.cons.Run(ctx) }

func (r *Receiver) resolve(ctx context.Context, d events.Delivery) events.Outcome {
	var ev events.Event
	var p Parked
	if err := json.Unmarshal(d.Data, &ev); err != nil || json.Unmarshal(ev.Data, &p) != nil || p.Vendor == "" {
		return events.Drop("not a parked callback")
	}
	ep, ok := r.endpoints[p.Vendor]
	if !ok {
		// Its endpoint was switched off since: polling finishes the vendor's documents.
		return events.Drop(fmt.Sprintf("a parked callback of %s, which has no callback endpoint any more; polling finishes its documents", p.Vendor))
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if len(p.IDs) == 0 {
		return r.sweep(ctx, p)
	}
	log := r.log.With("vendor", p.Vendor, "ids", p.IDs)
	retry := events.RetryAfter(min(time.Duration(d.Attempt)*500*time.Millisecond, 30*time.Second))
	withinWindow := r.now().Sub(p.ReceivedAt) < r.cfg.ParkWindow

	matched := false
	for _, id := range p.IDs {
		ref, err := ep.Parser.RefOf(ctx, id)
		if err != nil {
			log.Warn("could not map a callback id to our reference; retrying", "id", id, "err", err)
			return retry
		}
		if ref == "" {
			continue
		}
		docID, err := r.cfg.Refs.Lookup(ctx, p.Vendor, ref)
		if err != nil {
			return retry
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
			return events.RetryAfter(max(wait, min(time.Duration(d.Attempt)*500*time.Millisecond, 30*time.Second)))
		default:
			r.resolved.WithLabelValues(p.Vendor, "left_to_polling").Inc()
			log.Warn("callback could not be settled in its window; polling will finish the document", "doc_id", docID, "err", err)
		}
	}
	if matched {
		return events.Done()
	}
	if withinWindow {
		// Perhaps the callback overtook our own submitted record: keep it and look again.
		return retry
	}
	r.resolved.WithLabelValues(p.Vendor, "unmatched").Inc()
	log.Warn("callback names nothing of ours; recorded as unmatched")
	unmatched := ev
	unmatched.ID = "unmatched-" + ev.ID
	unmatched.Type = "ingest.callback.unmatched"
	if _, err := r.cfg.Bus.Publish(ctx, r.cfg.Bus.Names().CallbackSubject("unmatched", p.Vendor), unmatched); err != nil {
		return retry
	}
	return events.Done()
}

// sweepEvery bounds how often one vendor's open submissions are checked for unreadable
// callbacks (a burst of them is covered by a sweep every few seconds), and is how long after a
// callback the last sweep for it begins: the callback may have overtaken our own record of the
// submission it announces.
const sweepEvery = 5 * time.Second

// sweep answers a callback whose ids could not be read: the vendor said something finished, so
// each of its submissions still open (indexed within SweepWindow) is asked about now rather than
// at its next poll, and once more sweepEvery later. What is not finished is left to polling.
func (r *Receiver) sweep(ctx context.Context, p Parked) events.Outcome {
	log := r.log.With("vendor", p.Vendor)
	late := p.ReceivedAt.Add(sweepEvery) // a sweep begun after this has seen all it announced
	r.sweepMu.Lock()
	last, started := r.lastSweep[p.Vendor], r.now()
	r.sweepMu.Unlock()
	switch {
	case !last.IsZero() && !last.Before(late):
		r.resolved.WithLabelValues(p.Vendor, "swept_already").Inc()
		return events.Done()
	case !last.IsZero() && started.Sub(last) < sweepEvery:
		return events.RetryAfter(last.Add(sweepEvery).Sub(started))
	}

	docs, err := r.cfg.Refs.Recent(ctx, p.Vendor, started.Add(-r.cfg.SweepWindow))
	if err != nil {
		log.Warn("could not list the vendor's open submissions; retrying", "err", err)
		return events.RetryAfter(sweepEvery)
	}
	open, finished := 0, 0
	for _, docID := range docs {
		doc, err := r.cfg.Bus.States().Get(ctx, docID)
		if err != nil || doc.Vendors[p.Vendor] == nil || doc.Vendors[p.Vendor].Status != events.StatusSubmitted {
			continue // done, failed, or not to be judged now: polling has it
		}
		open++
		if done, _, err := r.cfg.Poller.Settle(ctx, docID, p.Vendor); done {
			finished++
		} else if err != nil {
			log.Info("open submission not settled by the sweep; polling has it", "doc_id", docID, "err", err)
		}
	}
	r.sweepMu.Lock()
	if started.After(r.lastSweep[p.Vendor]) {
		r.lastSweep[p.Vendor] = started
	}
	r.sweepMu.Unlock()
	r.resolved.WithLabelValues(p.Vendor, "swept").Inc()
	log.Info("checked the vendor's open submissions after an unreadable callback", "open", open, "finished", finished)
	if started.Before(late) {
		return events.RetryAfter(late.Sub(started) + 10*time.Millisecond)
	}
	return events.Done()
}
