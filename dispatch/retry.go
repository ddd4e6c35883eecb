package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ingest-dev/ingest/events"
)

// Retries: a retried event (ingest.document.retried.<vendor>) starts round n of a (document,
// vendor) whose round n-1 failed. The round is dispatched exactly like round 0 — a submission
// record written before the vendor is called, reconciliation after a crash, the same redelivery
// rules — but under keys, tags and event ids of its own (slot), so that nothing of one round can
// be taken for another's. It has its own durable consumer: NATS 2.9 allows one filter subject per
// consumer, and the received events' consumer keeps the filter it always had.

const retryConsumer = "dispatch-retried"

func decodeRetried(data []byte) (events.RetriedData, error) {
	ev, err := events.Decode(data)
	var rt events.RetriedData
	if err == nil {
		err = ev.DecodeData(&rt)
	}
	switch {
	case err != nil:
	case rt.DocumentID == "" || rt.Vendor == "":
		err = errors.New("the event names no document or vendor")
	case rt.Round < 1:
		err = fmt.Errorf("round %d: a retry's round counts from 1", rt.Round)
	case ev.Subject != rt.DocumentID:
		err = fmt.Errorf("the event is about %s, its data about %s", ev.Subject, rt.DocumentID)
	}
	return rt, err
}

// receivedOf rebuilds what the received event said from the document's state: what a later
// round needs to submit the document again.
func receivedOf(doc events.Document) events.ReceivedData {
	return events.ReceivedData{
		DocumentID: doc.ID, Source: doc.Source, Filename: doc.Filename, ContentType: doc.ContentType,
		Size: doc.Size, SHA256: doc.SHA256, ObjectKey: doc.ObjectKey, Metadata: doc.Metadata,
		Vendors: doc.Chosen, Route: doc.Route, ReceivedAt: doc.ReceivedAt,
	}
}

// unknownDocumentPatience is how long a retried event waits for its document's state to be
// readable (a state write the projector has still to make) before it is dropped, loudly.
const unknownDocumentPatience = 10

func (d *Dispatcher) handleRetried(ctx context.Context, dl events.Delivery) events.Outcome {
	rt, err := decodeRetried(dl.Data)
	if err != nil {
		return events.Drop("not a retried event: " + err.Error())
	}
	log := d.log.With("doc_id", rt.DocumentID, "vendor", rt.Vendor, "round", rt.Round)
	doc, err := d.cfg.Bus.States().Get(ctx, rt.DocumentID)
	switch {
	case errors.Is(err, events.ErrUnknownDocument) && dl.Attempt >= unknownDocumentPatience:
		log.Error("a retry names a document whose state cannot be found; dropping it", "attempts", dl.Attempt)
		return events.Drop("retry of an unknown document")
	case err != nil:
		log.Warn("cannot read the document's state for its retry; trying again", "err", err)
		return events.RetryAfter(min(time.Duration(dl.Attempt)*d.cfg.RetryInitial, d.cfg.RetryMax))
	case doc.ObjectKey == "":
		log.Error("a retry names a document without stored content; dropping it")
		return events.Drop("retry of a document without content")
	}
	if vs := doc.Vendors[rt.Vendor]; vs != nil && (vs.Round > rt.Round ||
		vs.Round == rt.Round && (vs.Status == events.StatusCompleted || vs.Status == events.StatusFailed)) {
		// The round is over (this is a redelivery), or a newer one began: a stale round is never
		// submitted.
		return events.Done()
	}
	if dl.Attempt == 1 {
		d.m.retries.WithLabelValues(rt.Vendor).Inc()
	}
	delay, err := d.dispatch(ctx, receivedOf(doc), doc.Route, slot{doc: rt.DocumentID, vendor: rt.Vendor, round: rt.Round}, dl.Attempt == 1)
	if err == nil {
		return events.Done()
	}
	if !errors.Is(err, errBusy) && !errors.Is(err, errNotYet) {
		log.Warn("submission will be retried", "retry_in", delay.String(), "err", err)
	}
	return events.RetryAfter(delay)
}

// panickedRetried fails the round whose handler panicked, as panicked does for a first round.
func (d *Dispatcher) panickedRetried(ctx context.Context, dl events.Delivery, p any) events.Outcome {
	rt, err := decodeRetried(dl.Data)
	if err != nil {
		return events.Drop("not a retried event")
	}
	s := slot{doc: rt.DocumentID, vendor: rt.Vendor, round: rt.Round}
	if err := d.fail(ctx, s, submission{}, fmt.Sprintf("ingest failed on this document with an internal error (%v); it is reported in the log", p)); err != nil {
		return events.RetryAfter(d.cfg.RetryInitial)
	}
	return events.Done()
}
