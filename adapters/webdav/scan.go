package webdav

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// verifyEvery: on servers that look as if their collection ETags propagate, every verifyEvery-th
// poll still lists everything, to find out if they do not (see scanResult.stale).
const verifyEvery = 10

// maxDepth bounds the walk: a server with a folder loop (a symlink to a parent) cannot keep a poll
// going forever.
const maxDepth = 64

// dirState is what the last successful listing of one collection showed.
type dirState struct {
	etag    string
	files   map[string]entry  // wanted files directly in it, by path
	subdirs map[string]string // entered subfolders, by path, with the ETag the listing gave them
}

// scanResult is the folder tree as this poll knows it.
type scanResult struct {
	next map[string]*dirState
	// confirmed collections were listed this poll, or proved unchanged by their ETag. Files in
	// other collections (a listing failed) are neither counted as seen again nor as gone.
	confirmed map[string]bool
	// listed collections were listed this poll (the others in confirmed were carried over).
	listed map[string]bool
	errs   []error // listings that failed (below the root)
	// stale collections kept their ETag while their content changed: the server's collection
	// ETags cannot be trusted.
	stale []string
	// probed is set when a Depth 0 probe found the whole tree unchanged.
	probed bool
}

// scan lists the folder, cheaply when the server allows it: if collection ETags propagate, one
// Depth 0 request on the root says whether anything changed at all, and only collections whose
// ETag moved are listed again.
func (w *Watcher) scan(ctx context.Context) (*scanResult, error) {
	res := &scanResult{next: map[string]*dirState{}, confirmed: map[string]bool{}, listed: map[string]bool{}}
	prev := w.tree[""]
	cheap := !w.nonPropagating && prev != nil && prev.etag != "" && w.polls%verifyEvery != 0
	if cheap {
		l, err := w.dav.propfind(ctx, "", "0")
		if err != nil {
			return nil, err
		}
		if l.self != nil && l.self.etag == prev.etag {
			w.carry("", res, true)
			res.probed = true
			return res, nil
		}
	}
	if err := w.walk(ctx, "", 0, cheap, res); err != nil {
		return nil, err
	}
	return res, nil
}

// walk lists collection rel and, below it, every subfolder that needs it.
func (w *Watcher) walk(ctx context.Context, rel string, depth int, cheap bool, res *scanResult) error {
	l, err := w.dav.propfind(ctx, rel, "1")
	if err != nil {
		if rel == "" {
			return err
		}
		res.errs = append(res.errs, err)
		w.carry(rel, res, false)
		return nil
	}
	ds := &dirState{files: map[string]entry{}, subdirs: map[string]string{}}
	if l.self != nil {
		ds.etag = l.self.etag
	} else if parent := res.next[parentRel(rel)]; parent != nil && rel != "" {
		ds.etag = parent.subdirs[rel]
	}
	for _, e := range l.children {
		switch {
		case e.dir:
			if w.filter.enterDir(e.rel) {
				ds.subdirs[e.rel] = e.etag
			}
		case w.filter.wantFile(e.rel):
			ds.files[e.rel] = e
		}
	}
	res.next[rel] = ds
	res.confirmed[rel] = true
	res.listed[rel] = true
	if old := w.tree[rel]; old != nil && old.etag != "" && old.etag == ds.etag && !sameContent(old, ds) {
		res.stale = append(res.stale, rel)
	}
	for _, sub := range slices.Sorted(maps.Keys(ds.subdirs)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if depth+1 >= maxDepth {
			res.errs = append(res.errs, fmt.Errorf("folder %q is nested deeper than %d levels; not listed", sub, maxDepth))
			continue
		}
		if old := w.tree[sub]; cheap && old != nil && old.etag != "" && old.etag == ds.subdirs[sub] {
			w.carry(sub, res, true)
			continue
		}
		if err := w.walk(ctx, sub, depth+1, cheap, res); err != nil {
			return err
		}
	}
	return nil
}

// carry copies collection rel and everything below it from the last poll into this one.
func (w *Watcher) carry(rel string, res *scanResult, confirmed bool) {
	ds := w.tree[rel]
	if ds == nil {
		return
	}
	res.next[rel] = ds
	if confirmed {
		res.confirmed[rel] = true
	}
	for sub := range ds.subdirs {
		w.carry(sub, res, confirmed)
	}
}

// sameContent compares two listings of a collection: files by size and ETag, subfolders by ETag.
func sameContent(a, b *dirState) bool {
	if len(a.files) != len(b.files) || len(a.subdirs) != len(b.subdirs) {
		return false
	}
	for rel, e := range a.files {
		f, ok := b.files[rel]
		if !ok || f.etag != e.etag || f.size != e.size {
			return false
		}
	}
	for rel, etag := range a.subdirs {
		if other, ok := b.subdirs[rel]; !ok || other != etag {
			return false
		}
	}
	return true
}
