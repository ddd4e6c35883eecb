package imap

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/ingest-dev/ingest/adapters/imap/mimewalk"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/intake"
)

// dedupe marks what was announced before: by this very mail (same derived id: a crash between the
// PubAck and the checkpoint) or by the same content under an earlier UIDVALIDITY.
func (w *Watcher) dedupe(ctx context.Context, m *mail, plans []*partPlan) error {
	occurrences := map[string]int{}
	for _, pl := range plans {
		if pl.fate == fateSkip {
			continue
		}
		what := pl.checked.SHA256
		if pl.fate == fateReject {
			what = "rejected:" + pl.reason + ":" + strconv.Itoa(pl.part.Index)
		}
		pl.contentKey = w.store.contentKey(m.identity, what, occurrences[what])
		occurrences[what]++
		earlier, err := w.store.ingestedAs(ctx, pl.contentKey)
		if err != nil {
			return errStore{err}
		}
		if earlier != "" {
			if earlier != pl.docID {
				w.log.Info("document already ingested (same Message-ID and content: an earlier copy of this mail, or the mail before the mailbox's UIDVALIDITY changed); not announced again",
					"uid", m.uid, "doc_id", earlier, "filename", pl.part.Filename)
			}
			continue
		}
		done, err := w.announced(ctx, pl)
		if err != nil {
			return errStore{err}
		}
		if done {
			if err := w.store.remember(ctx, pl.contentKey, pl.docID); err != nil {
				return errStore{err}
			}
			continue
		}
		pl.needsWork = true
	}
	return nil
}

// announced says whether the document (or rejection) pl was published before.
func (w *Watcher) announced(ctx context.Context, pl *partPlan) (bool, error) {
	doc, err := w.cfg.Bus.States().Get(ctx, pl.docID)
	if errors.Is(err, events.ErrUnknownDocument) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	suffix := ".received"
	if pl.fate == fateReject {
		suffix = ".rejected"
	}
	return slices.ContainsFunc(doc.History, func(h events.HistoryEntry) bool { return h.EventID == pl.docID+suffix }), nil
}

// announce stores and announces what dedupe left: rejections as they come, documents staged
// during the walk and committed once all of them are stored, so that a mail is never half
// announced because its third attachment could not be stored.
func (w *Watcher) announce(ctx context.Context, m *mail, plans []*partPlan) error {
	byIndex := map[int]*partPlan{}
	var eml *partPlan
	for _, pl := range plans {
		if !pl.needsWork {
			continue
		}
		if pl.part.Kind == kindEML {
			eml = pl
		} else {
			byIndex[pl.part.Index] = pl
		}
	}
	var staged []intake.Staged
	var order []*partPlan
	discard := func() {
		for _, st := range staged {
			w.cfg.Intake.Discard(ctx, st)
		}
	}
	handle := func(pl *partPlan, body io.Reader) error {
		if pl.fate == fateReject {
			return w.rejectPart(ctx, m, pl, body)
		}
		st, err := w.cfg.Intake.Stage(ctx, pl.docID, pl.part.Filename, body, w.cfg.MaxDocumentBytes)
		if err != nil {
			return errStore{fmt.Errorf("store %s from mail %d: %w", describePart(pl), m.uid, err)}
		}
		staged, order = append(staged, st), append(order, pl)
		return nil
	}
	// Parts kept from the planning walk are staged from memory, in the mail's order; the mail is
	// walked again only for the others.
	for _, idx := range slices.Sorted(maps.Keys(byIndex)) {
		pl := byIndex[idx]
		if pl.fate != fateDocument || pl.body == nil {
			continue
		}
		delete(byIndex, idx)
		body := pl.body
		pl.body = nil
		if err := handle(pl, bytes.NewReader(body)); err != nil {
			discard()
			return err
		}
	}
	if len(byIndex) > 0 {
		_, _, err := mimewalk.Walk(m.raw.Reader(), w.cfg.Limits, mimewalk.Options{IncludeBody: w.cfg.IncludeBody}, func(p mimewalk.Part) error {
			pl := byIndex[p.Index]
			if pl == nil {
				return nil
			}
			delete(byIndex, p.Index)
			return handle(pl, p.Body)
		})
		if err == nil && len(byIndex) > 0 {
			err = fmt.Errorf("the second reading of mail %d did not find every part of the first", m.uid)
		}
		if err != nil {
			discard()
			var se errStore
			if !errors.As(err, &se) {
				err = errStore{fmt.Errorf("read mail %d again: %w", m.uid, err)}
			}
			return err
		}
	}
	if eml != nil {
		if err := handle(eml, m.raw.Reader()); err != nil {
			discard()
			return err
		}
	}
	// Announced in the mail's order (the whole message, when asked for, last), however they
	// were stored.
	idx := make([]int, len(staged))
	for i := range idx {
		idx[i] = i
	}
	position := func(pl *partPlan) int {
		if pl.part.Kind == kindEML {
			return math.MaxInt
		}
		return pl.part.Index
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(position(order[a]), position(order[b])) })
	staged, order = permute(staged, idx), permute(order, idx)
	for i, st := range staged {
		pl := order[i]
		_, err := w.cfg.Intake.Commit(ctx, st, w.origin(m, pl))
		if err == nil {
			err = w.store.remember(ctx, pl.contentKey, pl.docID)
		} else {
			err = fmt.Errorf("announce %s from mail %d: %w", describePart(pl), m.uid, err)
		}
		if err != nil {
			// The bytes of this one stay: its event may have been stored all the same, and the
			// retry stages it again under the same id. Those not tried yet go.
			for _, rest := range staged[i+1:] {
				w.cfg.Intake.Discard(ctx, rest)
			}
			return errStore{err}
		}
	}
	return nil
}

func (w *Watcher) rejectPart(ctx context.Context, m *mail, pl *partPlan, body io.Reader) error {
	raw := body
	if pl.rawIsMail {
		raw = m.raw.Reader()
	}
	_, err := w.cfg.Intake.Reject(ctx, intake.Rejection{
		DocumentID: pl.docID, Origin: w.origin(m, pl), Filename: pl.part.Filename,
		Reason: pl.reason, Detail: describePart(pl) + ": " + pl.detail,
		Raw: raw, MaxRawBytes: maxSpoolBytes, ContentType: pl.part.DeclaredType,
	})
	if err != nil {
		return errStore{fmt.Errorf("announce the rejection of %s from mail %d: %w", describePart(pl), m.uid, err)}
	}
	if err := w.store.remember(ctx, pl.contentKey, pl.docID); err != nil {
		return errStore{err}
	}
	return nil
}

// rejectMail announces a mail that cannot be processed, keeping its raw bytes.
func (w *Watcher) rejectMail(ctx context.Context, m *mail, reason, detail string) (outcome, error) {
	pl := &partPlan{part: mimewalk.Part{Index: -1, Filename: emlName(m.env.Subject), Kind: kindMail}, fate: fateReject,
		reason: reason, detail: detail, rawIsMail: true}
	pl.docID = intake.DerivedDocumentID(m.internal, m.key+"/rejected")
	pl.contentKey = w.store.contentKey(m.identity, "rejected-mail:"+m.raw.sha256, 0)
	defer w.lockIdentity(m.identity)()
	earlier, err := w.store.ingestedAs(ctx, pl.contentKey)
	if err != nil {
		return 0, errStore{err}
	}
	if earlier == "" {
		if err := w.rejectPart(ctx, m, pl, nil); err != nil {
			return 0, err
		}
	}
	return rejected, nil
}

// permute returns s reordered so that its i-th element is s[idx[i]].
func permute[T any](s []T, idx []int) []T {
	out := make([]T, len(s))
	for i, j := range idx {
		out[i] = s[j]
	}
	return out
}
