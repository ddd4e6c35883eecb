package webdav

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// maxSuffix bounds the search for a free name in the target folder (name-2.pdf, name-3.pdf, …).
const maxSuffix = 1000

// finish runs the post-action for a file whose outcome is announced and recorded.
func (w *Watcher) finish(ctx context.Context, o fileObs, id string, rec record, r takeResult) takeResult {
	if !rec.Left && rec.Outcome == outcomeIngested && w.cfg.After == AfterKeep {
		// Recorded under another post-action (the configuration changed since): keep it now.
		rec.Left = true
		if err := w.seen.put(ctx, id, rec); err != nil {
			r.err = err
			return r
		}
	}
	if rec.Left {
		r.handled, r.recorded = true, true
		return r
	}
	var (
		err  error
		done string
	)
	switch {
	case rec.Outcome == outcomeRejected:
		var dest string
		if dest, err = w.moveAside(ctx, o.e.rel, w.cfg.MoveFailed); err == nil {
			done = "moved to " + dest
		}
	case w.cfg.After == AfterMove:
		var dest string
		if dest, err = w.moveAside(ctx, o.e.rel, w.cfg.MoveTo); err == nil {
			done = "moved to " + dest
		}
	case w.cfg.After == AfterDelete:
		if err = w.remove(ctx, o.e.rel); err == nil {
			done = "deleted"
		}
	}
	if err != nil {
		// The file stays; the next poll finds the record and tries the post-action again.
		r.err = fmt.Errorf("document %s is %s, but the file stays in the folder for now: %w", rec.DocID, rec.Outcome, err)
		r.recorded = true
		return r
	}
	w.log.InfoContext(ctx, "webdav file done", "doc_id", rec.DocID, "path", o.e.rel, "outcome", rec.Outcome, "post_action", done)
	r.gone = true
	if err := w.seen.forget(ctx, id); err != nil {
		// Harmless: a stale record only matches this very version, which has left the folder.
		w.log.WarnContext(ctx, "could not forget a file that left the folder", "doc_id", rec.DocID, "path", o.e.rel, "err", err)
	}
	return r
}

// moveAside moves rel into the folder toDir (below the watched folder), keeping its subfolder
// path, under a free name: MOVE never overwrites (Overwrite: F); a taken name gets a suffix. It
// returns the destination, or "" when the file had already gone.
func (w *Watcher) moveAside(ctx context.Context, rel, toDir string) (string, error) {
	destDir := joinRel(toDir, parentRel(rel))
	if err := w.ensureDir(ctx, destDir); err != nil {
		return "", err
	}
	name := path.Base(rel)
	retried := false
	for i := 1; i <= maxSuffix; i++ {
		dest := joinRel(destDir, suffixed(name, i))
		err := w.dav.move(ctx, rel, dest)
		switch code := statusOf(err); {
		case err == nil:
			return dest, nil
		case code == http.StatusPreconditionFailed:
			continue // the name is taken
		case (code == http.StatusConflict || code == http.StatusForbidden || code == http.StatusNotFound) && !retried:
			// The target folder went away since we made it (servers answer 409, 403 or 404).
			retried = true
			w.forgetDir(destDir)
			if err := w.ensureDir(ctx, destDir); err != nil {
				return "", err
			}
			i--
			continue
		case code == http.StatusNotFound:
			return "", nil // the file itself is gone: someone else moved it
		default:
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for %s in %s after %d tries", name, destDir, maxSuffix)
}

// suffixed is name for i = 1, else name with "-i" before its extension: report.pdf, report-2.pdf.
func suffixed(name string, i int) string {
	if i == 1 {
		return name
	}
	ext := path.Ext(name)
	if ext == name || len(ext) > 16 || strings.ContainsAny(ext, " ") {
		ext = ""
	}
	return strings.TrimSuffix(name, ext) + "-" + strconv.Itoa(i) + ext
}

// remove deletes rel; a file that is already gone is fine.
func (w *Watcher) remove(ctx context.Context, rel string) error {
	if err := w.dav.del(ctx, rel); err != nil && statusOf(err) != http.StatusNotFound {
		return err
	}
	return nil
}

// ensureDir makes collection rel (and its parents) exist. Collections made once are remembered.
func (w *Watcher) ensureDir(ctx context.Context, rel string) error {
	if rel == "" {
		return nil
	}
	// One at a time: workers moving files into the same new folder would otherwise race to
	// create it, and servers answer the loser with 423 Locked (x/net/webdav does).
	w.dirsMu.Lock()
	defer w.dirsMu.Unlock()
	return w.ensureDirLocked(ctx, rel)
}

func (w *Watcher) ensureDirLocked(ctx context.Context, rel string) error {
	if rel == "" || w.dirsOK[rel] {
		return nil
	}
	err := w.dav.mkcol(ctx, rel)
	if statusOf(err) == http.StatusConflict {
		// A parent is missing.
		if err := w.ensureDirLocked(ctx, parentRel(rel)); err != nil {
			return err
		}
		err = w.dav.mkcol(ctx, rel)
	}
	// 405: it exists already (RFC 4918 9.3.1).
	if err != nil && statusOf(err) != http.StatusMethodNotAllowed {
		return fmt.Errorf("create folder %s: %w", rel, err)
	}
	w.dirsOK[rel] = true
	return nil
}

func (w *Watcher) forgetDir(rel string) {
	w.dirsMu.Lock()
	defer w.dirsMu.Unlock()
	for d := rel; d != ""; d = parentRel(d) {
		delete(w.dirsOK, d)
	}
}
