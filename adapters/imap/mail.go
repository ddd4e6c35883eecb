package imap

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/ingest-dev/ingest/adapters/imap/mimewalk"
	"github.com/ingest-dev/ingest/intake"
)

// outcome is what became of one mail.
type outcome int

const (
	ingested outcome = iota // its documents (and part rejections) are announced: post-action due
	filtered                // it failed a filter: left untouched
	empty                   // nothing in it to ingest (no attachment): left untouched
	rejected                // it could not be processed at all: announced as rejected, flagged

	notFetched outcome = -1 // the FETCH did not return it (handleBatch)
)

// mail is one fetched mail being processed.
type mail struct {
	*fetched
	uidValidity uint32
	key         string // account/mailbox/UIDVALIDITY/UID: the root of its derived ids
	env         mimewalk.Envelope
	identity    string // Message-ID, or the raw message's digest
	group       string
	problems    []string // what the MIME walk had to skip
}

// errPanic is a MIME parser crash, turned into a rejection of the mail.
type errPanic struct{ msg string }

func (e errPanic) Error() string { return e.msg }

// errStore marks a failure to store or announce: worth a retry, unlike anything about the mail.
type errStore struct{ err error }

func (e errStore) Error() string { return e.err.Error() }
func (e errStore) Unwrap() error { return e.err }

// process ingests one mail: plan (first walk: limits, filters, types, digests), then store and
// announce what is new (second walk), all before the caller runs the post-action and moves the
// checkpoint. Every id is derived from the mail's place in the mailbox, and every announced
// content is remembered by Message-ID and digest, so running it again for the same mail, after a
// crash or after a UIDVALIDITY change, announces nothing twice. A returned error means "try this
// mail again later"; problems with the mail itself are outcomes.
func (w *Watcher) process(ctx context.Context, f *fetched, uidValidity uint32) (outcome, error) {
	m := &mail{fetched: f, uidValidity: uidValidity}
	m.key = fmt.Sprintf("imap/%s/%s@%s/%s/%d/%d", w.cfg.Name, w.cfg.Username, w.cfg.Host, w.cfg.Mailbox, uidValidity, f.uid)
	m.group = intake.DerivedDocumentID(f.internal, m.key+"/group")

	if reason := w.mailFilter(f); reason != "" {
		w.log.Debug("mail filtered out", "uid", f.uid, "why", reason)
		return filtered, nil
	}
	if f.raw.truncated {
		m.identity = "sha256:" + f.raw.sha256
		return w.rejectMail(ctx, m, "limits", fmt.Sprintf("the message is %s, more than can be processed (%s)",
			intake.HumanBytes(f.size), intake.HumanBytes(maxSpoolBytes)))
	}

	plans, err := w.plan(m)
	if m.identity = m.env.MessageID; m.identity == "" {
		m.identity = "sha256:" + f.raw.sha256
	}
	var limit *mimewalk.LimitError
	var panicked errPanic
	switch {
	case errors.As(err, &limit):
		return w.rejectMail(ctx, m, "limits", "the message is over the limits for mail: "+limit.Error())
	case errors.As(err, &panicked):
		return w.rejectMail(ctx, m, "malformed", panicked.Error())
	case err != nil:
		// Only reading the spool can fail otherwise.
		return 0, errStore{fmt.Errorf("read mail %d: %w", f.uid, err)}
	}
	if reason := w.headerFilter(m.env); reason != "" {
		w.log.Debug("mail filtered out", "uid", f.uid, "why", reason)
		return filtered, nil
	}
	if len(m.problems) > 0 {
		w.log.Warn("parts of the mail could not be read", "uid", f.uid, "message_id", m.env.MessageID, "problems", m.problems)
	}
	if w.cfg.IncludeEML {
		plans = append(plans, w.planEML(m))
	}
	if !slices.ContainsFunc(plans, func(p *partPlan) bool { return p.fate != fateSkip }) {
		switch {
		case len(m.problems) > 0:
			// Nothing came out, and something could not be read: that is for a person to see.
			return w.rejectMail(ctx, m, "malformed", "nothing in the message could be read as a document: "+strings.Join(m.problems, "; "))
		case slices.ContainsFunc(plans, func(p *partPlan) bool { return p.filtered }):
			return filtered, nil
		}
		return empty, nil
	}
	// Mails are processed a few at a time: two copies of one message (same Message-ID) must not
	// both find their content new. The lock spans the look-up and the announcement that
	// remembers it.
	unlock := w.lockIdentity(m.identity)
	defer unlock()
	if err := w.dedupe(ctx, m, plans); err != nil {
		return 0, err
	}
	if err := w.announce(ctx, m, plans); err != nil {
		return 0, err
	}
	return ingested, nil
}

// lockIdentity serialises the mails of one identity (Message-ID or raw digest) among those
// processed at the same time; it returns the unlock. Locks are striped: unrelated mails that
// share a stripe merely wait for each other.
func (w *Watcher) lockIdentity(identity string) (unlock func()) {
	h := fnv.New32a()
	h.Write([]byte(identity))
	mu := &w.identityLocks[h.Sum32()%uint32(len(w.identityLocks))]
	mu.Lock()
	return mu.Unlock
}

// mailFilter applies the filters that need only what the server told: flags, date, size.
func (w *Watcher) mailFilter(f *fetched) string {
	fl := w.cfg.Filters
	switch {
	case fl.UnseenOnly && slices.Contains(f.flags, goimap.FlagSeen):
		return "already seen"
	case !fl.Since.IsZero() && f.internal.Before(fl.Since):
		return "arrived before " + fl.Since.Format(time.RFC3339)
	case fl.MinSize > 0 && f.size < fl.MinSize:
		return "smaller than min_size"
	case fl.MaxSize > 0 && f.size > fl.MaxSize:
		return "larger than max_size"
	}
	return ""
}

func (w *Watcher) headerFilter(env mimewalk.Envelope) string {
	fl := w.cfg.Filters
	switch {
	case fl.From != nil && !fl.From.MatchString(env.From):
		return "from does not match"
	case fl.To != nil && !fl.To.MatchString(env.To) && !fl.To.MatchString(env.Cc):
		return "to/cc does not match"
	case fl.Subject != nil && !fl.Subject.MatchString(env.Subject):
		return "subject does not match"
	}
	return ""
}
