package imap

import (
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/ingest-dev/ingest/adapters/imap/mimewalk"
	"github.com/ingest-dev/ingest/intake"
)

// Kinds of our own, beside mimewalk's, for metadata part_kind and messages.
const (
	kindEML  = "eml"  // the whole message as a document (IncludeEML)
	kindMail = "mail" // the whole message, rejected
)

// A part's fate, decided by the first (planning) walk.
type partFate int

const (
	fateSkip     partFate = iota // not a candidate, filtered, or empty
	fateDocument                 // becomes a document
	fateReject                   // announced as rejected (wrong type, too large, undecodable)
)

type partPlan struct {
	part       mimewalk.Part // Body is nil: only valid during the walk
	fate       partFate
	filtered   bool // skipped by a part filter (not merely uninteresting)
	checked    intake.Staged
	reason     string // for fateReject: intake reason code
	detail     string
	rawIsMail  bool // keep the whole mail as the raw bytes (the part itself cannot be decoded)
	docID      string
	contentKey string
	needsWork  bool // not announced before: stage (from body, or in the second walk) or reject
	// body is a document part's decoded bytes, kept from the planning walk when they fit the
	// mail's buffer budget: it is staged from here, without walking the mail a second time.
	body []byte
}

// Budgets for the decoded parts kept from the planning walk (partPlan.body): small documents
// are the common case and skip the second walk; larger ones are read again, never held whole.
const (
	maxBufferedPart = 512 << 10
	maxBufferedMail = 1 << 20
)

// partBuffer keeps what the planning walk reads of a part, up to limit bytes; past it, nothing.
type partBuffer struct {
	buf   []byte
	limit int
	over  bool
}

func (b *partBuffer) Write(p []byte) (int, error) {
	switch {
	case b.over:
	case len(b.buf)+len(p) > b.limit:
		b.over, b.buf = true, nil
	default:
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

// plan walks the mail once without storing anything: the envelope, the limits, and for each
// part whether it becomes a document, with its sniffed type, size and digest.
func (w *Watcher) plan(m *mail) (plans []*partPlan, err error) {
	defer func() {
		// A MIME parser bug must not stop the mailbox: the mail is rejected as malformed.
		if r := recover(); r != nil {
			err = errPanic{fmt.Sprintf("the MIME parser failed on this message: %v", r)}
		}
	}()
	var res mimewalk.Result
	budget := maxBufferedMail
	m.env, res, err = mimewalk.Walk(m.raw.Reader(), w.cfg.Limits, mimewalk.Options{IncludeBody: w.cfg.IncludeBody}, func(p mimewalk.Part) error {
		pl := &partPlan{part: p}
		pl.part.Body = nil
		pl.part.Path = slices.Clone(p.Path)
		plans = append(plans, pl)
		pl.docID = intake.DerivedDocumentID(m.internal, m.key+"/part/"+strconv.Itoa(p.Index))
		if !w.candidate(p) {
			return nil
		}
		if !w.filenameAllowed(p) {
			pl.filtered = true
			return nil
		}
		kept := &partBuffer{limit: min(maxBufferedPart, budget)}
		st, err := intake.Check(pl.docID, p.Filename, io.TeeReader(p.Body, kept), w.cfg.MaxDocumentBytes)
		var limit *mimewalk.LimitError
		var unsupported *intake.UnsupportedTypeError
		var tooLarge *intake.TooLargeError
		switch {
		case errors.As(err, &limit):
			return err // the whole mail is over the limits
		case errors.Is(err, intake.ErrEmpty):
		case errors.As(err, &unsupported):
			switch {
			case len(w.cfg.Filters.ContentTypes) > 0 && !globAny(w.cfg.Filters.ContentTypes, unsupported.Detected):
				pl.filtered = true
			case p.Kind == mimewalk.KindInline:
				// Decoration (an embedded picture of a type we do not take): not worth a rejection.
			default:
				pl.fate, pl.reason, pl.detail = fateReject, "unsupported_type", err.Error()
			}
		case errors.As(err, &tooLarge):
			pl.fate, pl.reason, pl.detail = fateReject, "too_large", err.Error()
		case err != nil:
			// Damaged (garbage in base64, cut short: mimewalk.ErrBrokenPart): the part's own bytes
			// cannot be read, so the whole mail is kept for inspection.
			pl.fate, pl.reason, pl.detail, pl.rawIsMail = fateReject, "malformed", "the part cannot be decoded: "+err.Error(), true
		case len(w.cfg.Filters.ContentTypes) > 0 && !globAny(w.cfg.Filters.ContentTypes, st.ContentType):
			pl.filtered = true
		case p.Kind == mimewalk.KindInline && !inlineDocument(st.ContentType):
		default:
			pl.fate, pl.checked = fateDocument, st
			// Check read the whole part: what was kept is all of it, unless it did not fit.
			if !kept.over && int64(len(kept.buf)) == st.Size {
				pl.body = kept.buf
				budget -= len(kept.buf)
			}
		}
		return nil
	})
	m.problems = res.Problems
	return plans, err
}

// candidate says whether a part can become a document at all: attachments (files named by the
// sender, or given an attachment disposition), files unpacked from a winmail.dat, and the text
// body when asked for. Inline parts (embedded images, unnamed leaves) are looked at after
// sniffing: see inlineDocument.
func (w *Watcher) candidate(p mimewalk.Part) bool {
	switch p.Kind {
	case mimewalk.KindAttachment, mimewalk.KindTNEF, mimewalk.KindInline:
		return true
	case mimewalk.KindBody:
		return w.cfg.IncludeBody
	}
	return false
}

// inlineDocument says whether an inline part of this sniffed type is a document: PDFs and TIFFs
// are (a scanner's mail may carry its PDF with no disposition and no name), pictures are not
// (logos and signatures embedded in HTML, which would flood the vendors).
func inlineDocument(contentType string) bool {
	return contentType == "application/pdf" || contentType == "image/tiff"
}

func (w *Watcher) filenameAllowed(p mimewalk.Part) bool {
	if len(w.cfg.Filters.Filenames) == 0 || p.Kind == mimewalk.KindBody {
		return true
	}
	return globAny(w.cfg.Filters.Filenames, p.Filename)
}

// globAny matches name against globs, ignoring case.
func globAny(globs []string, name string) bool {
	name = strings.ToLower(name)
	for _, g := range globs {
		if ok, _ := path.Match(strings.ToLower(g), name); ok {
			return true
		}
	}
	return false
}

// planEML plans the whole message as one more document.
func (w *Watcher) planEML(m *mail) *partPlan {
	pl := &partPlan{part: mimewalk.Part{Index: -1, Filename: emlName(m.env.Subject), Kind: kindEML}}
	pl.docID = intake.DerivedDocumentID(m.internal, m.key+"/eml")
	st, err := intake.Check(pl.docID, pl.part.Filename, m.raw.Reader(), w.cfg.MaxDocumentBytes)
	var tooLarge *intake.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		pl.fate, pl.reason, pl.detail = fateReject, "too_large", "the whole message: "+err.Error()
	case err != nil:
		// 8-bit text in a legacy charset is not UTF-8 text, which is all intake takes as text.
		pl.fate, pl.reason, pl.detail = fateReject, "unsupported_type", "the whole message: "+err.Error()
	default:
		pl.fate, pl.checked = fateDocument, st
	}
	pl.rawIsMail = true
	return pl
}

func emlName(subject string) string {
	name := strings.Map(func(r rune) rune {
		if strings.ContainsRune(`/\:*?"<>|`, r) {
			return '_'
		}
		return r
	}, strings.TrimSpace(subject))
	if name == "" {
		name = "message"
	}
	return truncateUTF8(name, 120) + ".eml"
}
