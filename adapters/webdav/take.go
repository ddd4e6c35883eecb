package webdav

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/intake"
)

// takeResult is what taking one file came to; the poll folds it into the file's state.
type takeResult struct {
	rel      string
	outcome  string // for metrics: ingested, rejected, skipped_changed, post_action (only the post-action was left)
	handled  bool   // nothing more to do while this version stays
	recorded bool   // a record in the seen bucket is about this file
	gone     bool   // the file has left the folder (moved, deleted, or vanished under us)
	changed  bool   // the file changed while being taken: it must prove stable again
	err      error  // to retry at the next poll
}

// errChanged and errVanished end an attempt without fault: the file changed or disappeared
// between the listing and the GET.
var (
	errChanged  = errors.New("the file changed while it was being read")
	errVanished = errors.New("the file disappeared before it could be read")
)

// take deals with one stable file: announce it (or its rejection) unless that was done before,
// remember it, then run the post-action.
func (w *Watcher) take(ctx context.Context, o fileObs) takeResult {
	r := takeResult{rel: o.e.rel}
	id := identity(o.e)
	rec, found, err := w.seen.get(ctx, id)
	if err != nil {
		r.err = err
		return r
	}
	if found && rec.Version == o.version {
		r.outcome = "post_action"
		return w.finish(ctx, o, id, rec, r)
	}
	if found && rec.Outcome == outcomeIngested && rec.Left && !w.cfg.ReingestOnChange {
		w.log.InfoContext(ctx, "a kept file changed after it was ingested; not ingesting it again (reingest_on_change is off)",
			"doc_id", rec.DocID, "path", o.e.rel, "etag", o.version)
		r.outcome, r.handled, r.recorded = "skipped_changed", true, true
		return r
	}
	// Otherwise this is a new file, or a new version of a file that stays, or a new file under the
	// name of one that was moved away: a document of its own.

	// The id depends only on the file version, so a repeat after a crash is the same document.
	docID := intake.DerivedDocumentID(o.e.lastModified, w.cfg.Name+"/"+id+"/"+o.version)
	outcome, err := w.announce(ctx, o, docID)
	switch {
	case errors.Is(err, errChanged):
		r.changed = true
		return r
	case errors.Is(err, errVanished):
		r.gone = true
		return r
	case err != nil:
		r.err = err
		return r
	}
	if w.hooks.afterAnnounce != nil {
		if err := w.hooks.afterAnnounce(o.e.rel); err != nil {
			r.err = err
			return r
		}
	}
	rec = record{
		Path: o.e.rel, FileID: o.e.fileID, Version: o.version, DocID: docID, Outcome: outcome, At: w.now().UTC(),
		Left: (outcome == outcomeIngested && w.cfg.After == AfterKeep) || (outcome == outcomeRejected && w.cfg.MoveFailed == ""),
	}
	// After the PubAck: should this fail, the next poll finds the document announced (same id)
	// and only catches up with the bookkeeping.
	if err := w.seen.put(ctx, id, rec); err != nil {
		r.err = fmt.Errorf("document %s is announced, but: %w", docID, err)
		return r
	}
	r.outcome = outcome
	return w.finish(ctx, o, id, rec, r)
}

// announce publishes the received event of this file version, or its rejected event, and says
// which; a version announced before (by a run that stopped short of its bookkeeping) is not
// announced again.
func (w *Watcher) announce(ctx context.Context, o fileObs, docID string) (string, error) {
	doc, err := w.bus.States().Get(ctx, docID)
	switch {
	case err == nil && hasEvent(doc, docID+".received"):
		return outcomeIngested, nil
	case err == nil && hasEvent(doc, docID+".rejected"):
		return outcomeRejected, nil
	case err != nil && !errors.Is(err, events.ErrUnknownDocument):
		return "", err
	}
	if o.e.size == 0 {
		return w.reject(ctx, o, docID, "empty", fmt.Sprintf("the file has stayed empty (0 bytes) for %s", w.cfg.EmptyGrace), false)
	}
	if o.e.size > w.cfg.MaxDocumentBytes {
		return w.reject(ctx, o, docID, "too_large", (&intake.TooLargeError{Limit: w.cfg.MaxDocumentBytes}).Error(), true)
	}
	body, err := w.open(ctx, o)
	if err != nil {
		if statusOf(err) == http.StatusForbidden {
			return w.reject(ctx, o, docID, "unreadable", "the server does not let this account read the file: "+err.Error(), false)
		}
		return "", err
	}
	st, err := w.in.Stage(ctx, docID, path.Base(o.e.rel), body, w.cfg.MaxDocumentBytes)
	body.Close()
	var unsupported *intake.UnsupportedTypeError
	var tooLarge *intake.TooLargeError
	switch {
	case errors.As(err, &unsupported):
		return w.reject(ctx, o, docID, "unsupported_type", unsupported.Error(), true)
	case errors.As(err, &tooLarge):
		return w.reject(ctx, o, docID, "too_large", tooLarge.Error(), true)
	case errors.Is(err, intake.ErrEmpty):
		return "", errChanged // listed with bytes, read empty: it is being rewritten
	case err != nil:
		return "", fmt.Errorf("store %s: %w", o.e.rel, err)
	}
	if !strongETag(o.e.etag) && o.e.size >= 0 && st.Size != o.e.size {
		// Without an ETag to pin the version with If-Match, the listed size is the check that
		// the bytes read are the file that was seen stable. (With If-Match the server vouches
		// for the version, and some servers list sizes that differ from what GET sends.)
		w.in.Discard(ctx, st)
		return "", errChanged
	}
	// Should Commit fail, the bytes stay under the document's object key; the next attempt
	// stores them again under the same key. They are not removed here: a publish whose
	// acknowledgement was lost may well have gone through.
	if _, err := w.in.Commit(ctx, st, w.origin(o)); err != nil {
		return "", fmt.Errorf("announce %s: %w", o.e.rel, err)
	}
	return outcomeIngested, nil
}

// open GETs the version of the file that was listed.
func (w *Watcher) open(ctx context.Context, o fileObs) (io.ReadCloser, error) {
	body, err := w.dav.get(ctx, o.e.rel, o.e.etag)
	switch statusOf(err) {
	case http.StatusNotFound, http.StatusGone:
		return nil, errVanished
	case http.StatusPreconditionFailed:
		return nil, errChanged
	}
	return body, err
}

// reject announces that the file cannot become a document, keeping its bytes (up to
// MaxDocumentBytes) when withBytes is set.
func (w *Watcher) reject(ctx context.Context, o fileObs, docID, reason, detail string, withBytes bool) (string, error) {
	rj := intake.Rejection{
		DocumentID: docID, Origin: w.origin(o), Filename: path.Base(o.e.rel),
		Reason: reason, Detail: detail, MaxRawBytes: w.cfg.MaxDocumentBytes,
	}
	if withBytes {
		body, err := w.open(ctx, o)
		if err != nil {
			return "", err
		}
		defer body.Close()
		rj.Raw = body
	}
	if _, err := w.in.Reject(ctx, rj); err != nil {
		return "", fmt.Errorf("announce the rejection of %s: %w", o.e.rel, err)
	}
	return outcomeRejected, nil
}

// origin is the source and metadata every event about the file carries.
func (w *Watcher) origin(o fileObs) intake.Origin {
	md := map[string]string{"folder": w.folder, "path": o.e.rel}
	if o.e.etag != "" {
		md["etag"] = o.e.etag
	}
	if o.e.fileID != "" {
		md["fileid"] = o.e.fileID
	}
	if !o.e.lastModified.IsZero() {
		md["last_modified"] = o.e.lastModified.UTC().Format(time.RFC3339)
	}
	if o.e.size >= 0 {
		md["size"] = strconv.FormatInt(o.e.size, 10)
	}
	return intake.Origin{
		Source:   events.SourceRef{Kind: events.SourceWebDAV, Name: w.cfg.Name},
		Metadata: md,
		Vendors:  slices.Clone(w.cfg.Vendors),
		Route:    w.cfg.Route,
	}
}

func hasEvent(doc events.Document, id string) bool {
	return slices.ContainsFunc(doc.History, func(h events.HistoryEntry) bool { return h.EventID == id })
}
