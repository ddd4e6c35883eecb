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
