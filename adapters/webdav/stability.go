package webdav

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// fileObs is what the watcher knows about one file path across polls.
type fileObs struct {
	e       entry
	version string    // the ETag, or a stand-in when the server gives none
	seenAt  time.Time // when this version was first seen
	// listings counts consecutive successful listings that showed this version with this size.
	listings int
	// handled: nothing more is to be done with this version while it stays (ingested and kept,
	// rejected and left, or a kept file that changed and is not reingested).
	handled bool
	// recorded: a record in the seen bucket is about this file; it is forgotten when the file
	// disappears.
	recorded bool
	lastErr  string // the last failure to take it, logged once
}

// version is what identifies a file's content: its ETag, or, from a server that has none, its
// modification time and size (a change of equal size within the same second is then missed).
func version(e entry) string {
	if e.etag != "" {
		return e.etag
	}
	if !e.lastModified.IsZero() {
		return fmt.Sprintf("lm=%d;size=%d", e.lastModified.Unix(), e.size)
	}
	return fmt.Sprintf("size=%d", e.size)
}

// identity names a file across polls: its oc:fileid where the server has one (so a rename is the
// same file), else its path.
func identity(e entry) string {
	if e.fileID != "" {
		return "fileid:" + e.fileID
	}
	return "path:" + e.rel
}

// observe folds this poll's listing into the per-file state, and returns the files that are gone
// (from a collection that was listed: a failed listing loses no file).
func (w *Watcher) observe(res *scanResult) (gone []*fileObs) {
	now := w.now()
	present := map[string]bool{}
	for dir, ds := range res.next {
		for rel, e := range ds.files {
			present[rel] = true
			if !res.confirmed[dir] {
				continue
			}
			o := w.files[rel]
			v := version(e)
			if o != nil && o.version == v && o.e.size == e.size {
				o.listings++
				o.e = e
				continue
			}
			w.files[rel] = &fileObs{e: e, version: v, seenAt: now, listings: 1}
		}
	}
	for rel, o := range w.files {
		if !present[rel] {
			delete(w.files, rel)
			gone = append(gone, o)
		}
	}
	w.tree = res.next
	return gone
}

// candidates are the files to take now: stable (the same size and version in two listings in a
// row, the latest one this poll), old enough, and not dealt with. A zero-byte file waits until it
// grows, or until it has been empty for EmptyGrace, when it is taken to be rejected. Oldest
// first, one per identity.
func (w *Watcher) candidates(res *scanResult) []fileObs {
	now := w.now()
	var out []fileObs
	for rel, o := range w.files {
		if !res.confirmed[parentRel(rel)] || o.handled || o.listings < 2 {
			continue
		}
		since := o.e.lastModified
		if since.IsZero() {
			since = o.seenAt
		}
		age := now.Sub(since)
		if o.e.size == 0 {
			if age < w.cfg.EmptyGrace {
				continue
			}
		} else if age < w.cfg.MinAge {
			continue
		}
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b fileObs) int {
		if c := a.e.lastModified.Compare(b.e.lastModified); c != 0 {
			return c
		}
		return strings.Compare(a.e.rel, b.e.rel)
	})
	ids := map[string]bool{}
	return slices.DeleteFunc(out, func(o fileObs) bool {
		id := identity(o.e)
		dup := ids[id]
		ids[id] = true
		return dup
	})
}

// apply folds the result of taking one file into its state.
func (w *Watcher) apply(ctx context.Context, r takeResult) {
	if r.outcome != "" && r.err == nil {
		w.m.files.WithLabelValues(w.cfg.Name, r.outcome).Inc()
	}
	o := w.files[r.rel]
	if o == nil {
		return
	}
	switch {
	case r.err != nil:
		w.m.files.WithLabelValues(w.cfg.Name, "failed").Inc()
		o.recorded = o.recorded || r.recorded
		if msg := r.err.Error(); msg != o.lastErr {
			o.lastErr = msg
			w.log.WarnContext(ctx, "could not take a file; retrying at the next poll", "path", r.rel, "err", r.err)
		}
	case r.gone || r.changed:
		// Observed afresh: gone files will not be listed again; changed ones must prove
		// stable again.
		delete(w.files, r.rel)
		if ds := w.tree[parentRel(r.rel)]; ds != nil {
			delete(ds.files, r.rel)
		}
	case r.handled:
		o.handled, o.recorded, o.lastErr = true, r.recorded, ""
	}
}

// forgetGone drops the record of a file that stayed in the folder on purpose and has now gone, so
// that a new file under its name is a new file. A file known by its fileid that was only renamed
// is still there under its id and keeps its record.
func (w *Watcher) forgetGone(ctx context.Context, o *fileObs) {
	if !o.recorded {
		return
	}
	id := identity(o.e)
	if o.e.fileID != "" {
		for _, other := range w.files {
			if other.e.fileID == o.e.fileID {
				return
			}
		}
	}
	if err := w.seen.forget(ctx, id); err != nil {
		w.log.WarnContext(ctx, "could not forget a file that left the folder", "path", o.e.rel, "err", err)
	}
}
