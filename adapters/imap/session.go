package imap

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// session is one connection with the mailbox selected. It is driven from one goroutine; only the
// unilateral-data handler runs on go-imap's reader goroutine, and it only signals wake.
type session struct {
	w    *Watcher
	c    *imapclient.Client
	wake chan struct{} // EXISTS arrived: look for new mail
	cp   checkpoint
}

// runSession connects, selects the mailbox and watches it until ctx ends or the connection fails.
// healthy is called once the mailbox is selected.
func (w *Watcher) runSession(ctx context.Context, healthy func()) error {
	s := &session{w: w, wake: make(chan struct{}, 1)}
	handler := &imapclient.UnilateralDataHandler{
		// Runs on the reader goroutine, which must never wait on us: a non-blocking signal only.
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
		},
	}
	c, err := w.dial(ctx, handler)
	if err != nil {
		return err
	}
	s.c = c
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	if err := s.selectMailbox(ctx); err != nil {
		return err
	}
	if w.cfg.After.Action == ActionMove {
		if err := s.ensureFolder(w.cfg.After.Folder); err != nil {
			return err
		}
	}
	healthy()
	if err := s.cycle(ctx); err != nil {
		return err
	}
	return s.watch(ctx)
}

// selectMailbox selects the mailbox and reconciles the checkpoint with its UIDVALIDITY.
func (s *session) selectMailbox(ctx context.Context) error {
	cfg := s.w.cfg
	sel, err := s.c.Select(cfg.Mailbox, nil).Wait()
	if err != nil {
		if isCode(err, goimap.ResponseCodeNonExistent) {
			return fmt.Errorf("the mailbox %q does not exist on %s: %w", cfg.Mailbox, cfg.Host, err)
		}
		return fmt.Errorf("select the mailbox %q: %w", cfg.Mailbox, err)
	}
	if sel.UIDValidity == 0 {
		return fmt.Errorf("the server gave the mailbox %q no UIDVALIDITY, without which mails cannot be tracked", cfg.Mailbox)
	}
	s.checkFlags(sel.PermanentFlags)
	// Read again on every (re)connection: another instance may have moved it while it held the
	// lease.
	cp, err := s.w.store.load(ctx)
	if err != nil {
		return err
	}
	if cp.UIDValidity != sel.UIDValidity {
		if cp.UIDValidity != 0 {
			s.w.log.Warn("the mailbox's UIDVALIDITY changed (it was recreated or restored): reading it all again; documents ingested before are recognised by Message-ID and checksum and not announced again",
				"old_uidvalidity", cp.UIDValidity, "new_uidvalidity", sel.UIDValidity)
		}
		cp = checkpoint{UIDValidity: sel.UIDValidity, rev: cp.rev}
		if err := s.w.store.save(ctx, &cp); err != nil {
			return err
		}
	}
	s.cp = cp
	return nil
}

// checkFlags warns when the keywords we set would not stick.
func (s *session) checkFlags(permanent []goimap.Flag) {
	if slices.Contains(permanent, goimap.FlagWildcard) {
		return
	}
	for _, k := range []goimap.Flag{RejectedKeyword, goimap.Flag(s.w.cfg.After.Keyword)} {
		if k != "" && (k == RejectedKeyword || s.w.cfg.After.Action == ActionFlag) && !slices.Contains(permanent, k) {
			s.w.warnOnce("keyword-"+string(k), "the mailbox does not keep new keywords; this one will not be set", "keyword", k)
		}
	}
}

// watch waits for new mail (IDLE, or polling), with a full pass every CatchUpInterval.
func (s *session) watch(ctx context.Context) error {
	cfg := s.w.cfg
	idle := !cfg.NoIdle && s.c.Caps().Has(goimap.CapIdle)
	s.w.infoOnce(fmt.Sprintf("mode-%v", idle), "watching the mailbox", "idle", idle, "poll_interval", cfg.PollInterval, "catch_up_interval", cfg.CatchUpInterval)
	catchUp := time.NewTicker(cfg.CatchUpInterval)
	defer catchUp.Stop()
	for {
		var full bool
		var err error
		if idle {
			full, err = s.idle(ctx, catchUp.C)
		} else {
			full, err = s.poll(ctx, catchUp.C)
		}
		if err != nil {
			return err
		}
		if full {
			// Select again: a mailbox recreated under us shows as a new UIDVALIDITY.
			if err := s.selectMailbox(ctx); err != nil {
				return err
			}
		}
		if err := s.cycle(ctx); err != nil {
			return err
		}
	}
}

// idle returns when there is something to look at: new mail (true: a catch-up is due as well).
// IDLE is re-issued every IdleRestart, which also proves the connection still carries data.
func (s *session) idle(ctx context.Context, catchUp <-chan time.Time) (full bool, err error) {
	restart := time.NewTimer(s.w.cfg.IdleRestart)
	defer restart.Stop()
	for {
		select {
		case <-s.wake: // EXISTS during the last pass
			return false, nil
		default:
		}
		cmd, err := s.c.Idle()
		if err != nil {
			return false, fmt.Errorf("start IDLE: %w", err)
		}
		again := false
		select {
		case <-s.wake:
		case <-catchUp:
			full = true
		case <-restart.C:
			again = true
			restart.Reset(s.w.cfg.IdleRestart)
		case <-ctx.Done():
		case <-s.c.Closed():
		}
		if err := cmd.Close(); err != nil {
			return false, fmt.Errorf("end IDLE: %w", err)
		}
		if err := cmd.Wait(); err != nil {
			return false, fmt.Errorf("IDLE: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if !again {
			return full, nil
		}
	}
}

// poll waits PollInterval (or for a catch-up) and asks the server what is new with a NOOP.
func (s *session) poll(ctx context.Context, catchUp <-chan time.Time) (full bool, err error) {
	t := time.NewTimer(s.w.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.wake:
	case <-catchUp:
		full = true
	case <-ctx.Done():
		return false, ctx.Err()
	case <-s.c.Closed():
		return false, fmt.Errorf("the server closed the connection")
	}
	if err := s.c.Noop().Wait(); err != nil {
		return false, fmt.Errorf("NOOP: %w", err)
	}
	return full, nil
}

// cycle processes every mail after the checkpoint, in UID order, in fetch batches. Each mail is
// done — documents announced, post-action run, checkpoint moved — before the next one; mails
// the server's search filtered out are passed over with the checkpoint.
func (s *session) cycle(ctx context.Context) (err error) {
	defer func() {
		if err == nil {
			s.w.passed()
		}
	}()
	select {
	case <-s.wake: // whatever it announced, this pass sees
	default:
	}
	uids, err := newUIDs(s.c, s.cp.LastUID+1)
	if err != nil || len(uids) == 0 {
		return err
	}
	mode := s.w.searchMode
	matched, err := s.w.searchPlan.matching(s.c, uids, &s.w.searchMode)
	if err != nil {
		return err
	}
	if s.w.searchMode != mode {
		s.w.warnOnce(fmt.Sprintf("search-%d", s.w.searchMode), "the server refused part of the search; those filters are applied after downloading instead",
			"level", []string{"full", "ascii-only", "uids-only"}[s.w.searchMode])
	}
	cur := &cursor{uids: uids, m: s.w.metrics}
	for len(matched) > 0 {
		batch := matched[:min(fetchBatch, len(matched))]
		matched = matched[len(batch):]
		mails, err := fetchMails(s.c, batch, "")
		if err != nil {
			return err
		}
		err = s.handleBatch(ctx, batch, mails, cur)
		for _, m := range mails {
			m.raw.Close()
		}
		if err != nil {
			return err
		}
	}
	cur.passOver(uids[len(uids)-1] + 1)
	return s.advance(ctx, uids[len(uids)-1])
}

// cursor walks a pass's UIDs, counting those the server's search passed over.
type cursor struct {
	uids []goimap.UID
	next int // uids[next:] are not done yet
	m    *metrics
}

func (c *cursor) passOver(below goimap.UID) {
	for ; c.next < len(c.uids) && c.uids[c.next] < below; c.next++ {
		c.m.seen.Inc()
		c.m.skipped.WithLabelValues("filtered").Inc()
	}
}

func (c *cursor) take(uid goimap.UID) {
	c.passOver(uid)
	if c.next < len(c.uids) && c.uids[c.next] == uid {
		c.next++
		c.m.seen.Inc()
	}
}

// handleBatch processes the fetched mails of batch, a few at a time (processing a mail is
// NATS round trips — look-ups, storing, announcing, remembering — and no IMAP), then runs their
// post-actions — one command per action for the whole batch rather than a round trip per mail —
// and moves the checkpoint past the mails done without a gap. A mail whose documents have their
// PubAck but whose post-action has not run yet is safe across a crash: it is fetched again,
// found announced (dedupe), and its post-action runs then. When a mail fails, the others still
// get theirs; the checkpoint stays before the failed one.
func (s *session) handleBatch(ctx context.Context, batch []goimap.UID, mails []*fetched, cur *cursor) error {
	outs := make([]outcome, len(batch))
	errs := make([]error, len(batch))
	sem := make(chan struct{}, processConcurrency)
	var wg sync.WaitGroup
	for i, uid := range batch {
		j := slices.IndexFunc(mails, func(f *fetched) bool { return f.uid == uid })
		if j < 0 {
			outs[i] = notFetched // looked into below, in order
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			outs[i], errs[i] = s.w.process(ctx, mails[j], s.cp.UIDValidity)
		}()
	}
	wg.Wait()

	var done batchOutcomes
	var last goimap.UID
	var err error
	for i, uid := range batch {
		if outs[i] == notFetched {
			errs[i] = s.missing(uid)
		}
		if errs[i] != nil {
			if err == nil {
				err = errs[i]
			}
			continue
		}
		s.note(&done, uid, outs[i])
		if err == nil {
			last = uid
		}
	}
	if perr := s.postActions(&done); perr != nil {
		return perr
	}
	// Counted as seen once done, post-action included.
	for _, uid := range batch {
		if uid <= last {
			cur.take(uid)
		}
	}
	if last != 0 {
		if aerr := s.advance(ctx, last); aerr != nil {
			return aerr
		}
	}
	return err
}

// processConcurrency is how many mails of a batch are processed at once: enough to overlap
// their round trips to NATS, few enough that a batch's spooled mails are not all parsed at once.
const processConcurrency = 8

// batchOutcomes collects the batch's mails that have a post-action due.
type batchOutcomes struct {
	ingested, rejected []goimap.UID
}

// note records what became of a mail: a post-action due, or nothing to do (counted now).
func (s *session) note(b *batchOutcomes, uid goimap.UID, out outcome) {
	switch out {
	case ingested:
		b.ingested = append(b.ingested, uid)
	case rejected:
		b.rejected = append(b.rejected, uid)
	case filtered:
		s.w.metrics.skipped.WithLabelValues("filtered").Inc()
	case empty:
		s.w.metrics.skipped.WithLabelValues("no_documents").Inc()
		s.w.log.Info("mail has nothing to ingest; left as it is", "uid", uid)
	}
}

// postActions runs the post-action on the ingested mails and flags the rejected ones, then counts
// and logs them; filtered and empty mails were counted as they were seen.
func (s *session) postActions(b *batchOutcomes) error {
	if len(b.ingested) > 0 {
		if err := s.afterIngest(b.ingested...); err != nil {
			return err
		}
		for _, uid := range b.ingested {
			s.w.metrics.processed.Inc()
			s.w.log.Info("mail processed", "uid", uid, "post_action", s.w.cfg.After.Action)
		}
	}
	if len(b.rejected) > 0 {
		if err := s.afterReject(b.rejected...); err != nil {
			return err
		}
		for _, uid := range b.rejected {
			s.w.metrics.rejected.Inc()
			s.w.log.Warn("mail rejected and flagged; moving on", "uid", uid, "keyword", RejectedKeyword)
		}
	}
	*b = batchOutcomes{}
	return nil
}

// missing handles a mail the FETCH did not return: gone (expunged meanwhile) is fine; still
// there means the server's answer was not understood, and the mail is not passed over.
func (s *session) missing(uid goimap.UID) error {
	data, err := s.c.UIDSearch(&goimap.SearchCriteria{UID: []goimap.UIDSet{goimap.UIDSetNum(uid)}}, nil).Wait()
	if err != nil {
		return fmt.Errorf("check on mail %d: %w", uid, err)
	}
	if slices.Contains(data.AllUIDs(), uid) {
		return fmt.Errorf("the server did not return mail %d although it exists; it will be tried again", uid)
	}
	s.w.log.Info("mail disappeared before it could be fetched", "uid", uid)
	return nil
}

// advance moves the checkpoint to uid.
func (s *session) advance(ctx context.Context, uid goimap.UID) error {
	if uint32(uid) <= s.cp.LastUID {
		return nil
	}
	cp := s.cp
	cp.LastUID = uint32(uid)
	if err := s.w.store.save(context.WithoutCancel(ctx), &cp); err != nil {
		return err
	}
	s.cp = cp
	return nil
}
