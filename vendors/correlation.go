package vendors

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Correlation: every submission carries a tag derived from our document id and the attempt, in a
// field the vendor stores and shows back (the uploaded file name where the vendor has nothing
// better). After a crash in the middle of a submission, Find accepts a vendor job only when it
// carries the document's tag: a file name and a time window are never enough, since scanners and
// mail gateways name every file scan.pdf or image001.pdf.
//
// A tag reads "ig-<16 hex digits>-<attempt>"; the hex digits are the first 64 bits of the SHA-256
// of the document id, the same for every attempt, so that any attempt of the document is
// recognised while the attempt number says which one reached the vendor.

const tagLead = "ig-"

// TagPrefix is the part of a tag that is the same for every attempt of docID.
func TagPrefix(docID string) string {
	sum := sha256.Sum256([]byte(docID))
	return tagLead + hex.EncodeToString(sum[:8]) + "-"
}

// NewTag is the tag of one attempt of docID.
func NewTag(docID string, attempt int) string {
	return TagPrefix(docID) + strconv.Itoa(max(attempt, 1))
}

// UploadName is the file name doc is uploaded under: its tag, then the original name (still
// readable in the vendor's console), e.g. "ig-3f9a0c1d2e4b5a69-1_scan.pdf".
func UploadName(doc Document) string {
	name := doc.Filename
	if name == "" {
		name = "document"
	}
	if doc.Tag == "" {
		return name
	}
	return doc.Tag + "_" + name
}

// TaggedAttempt reports whether s (a file name, a title, a subject) carries a tag of docID, and
// of which attempt. The tag may stand anywhere in s, since some vendors prefix or decorate
// what they store.
func TaggedAttempt(docID, s string) (attempt int, ok bool) {
	prefix := TagPrefix(docID)
	for {
		i := strings.Index(s, prefix)
		if i < 0 {
			return 0, false
		}
		rest := s[i+len(prefix):]
		n := 0
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if a, err := strconv.Atoi(rest[:n]); err == nil && n > 0 && (n == len(rest) || !isTagChar(rest[n])) {
			return a, true
		}
		s = rest
	}
}

func isTagChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// Outcome is the answer of a vendor to "do you have this submission?".
type Outcome int

const (
	// Unknown: the vendor could not be asked everything needed (a listing that stops before the
	// attempt's time, a job that could not be read). It is never taken as "absent".
	Unknown Outcome = iota
	// Found: a vendor job carries the document's tag.
	Found
	// Absent: the vendor was asked about everything made since the attempt began, and none of it
	// carries the tag.
	Absent
)

func (o Outcome) String() string {
	switch o {
	case Found:
		return "found"
	case Absent:
		return "absent"
	}
	return "unknown"
}

// Lookup is what Find learnt.
type Lookup struct {
	Outcome Outcome
	// Ref is the vendor's reference of the job found (Found).
	Ref string
	// Attempt is which of our attempts the job found carries.
	Attempt int
	// Duplicates are further jobs carrying the tag (two attempts both arrived): the vendor has
	// the document more than once, which an operator may want to clean up.
	Duplicates []string
	// Candidates are jobs that may be ours but could not be checked (Unknown), for the operator
	// who has to decide.
	Candidates []string
	// Reason says why the answer is Unknown, in words for the operator.
	Reason string
}

// Reconciler is implemented by vendors that let us look for a submission we may have made: the
// dispatcher died during Submit, so it does not know whether the vendor has the document.
type Reconciler interface {
	// Find looks for a job carrying doc's tag (any attempt: TaggedAttempt(doc.ID, …)) made at or
	// after since. It answers Absent only when everything the vendor made since then was looked
	// at; an error is a failure to ask (retried), not an answer.
	Find(ctx context.Context, doc Document, since time.Time) (Lookup, error)
}

// ErrNotReconcilable is returned by Find where the vendor (in the configured mode) cannot be
// asked: the dispatcher then submits again, counted, as it does for vendors without Find.
var ErrNotReconcilable = errors.New("this vendor cannot be asked whether it has a submission")

// Matcher collects the jobs of a listing that carry a document's tag, keeping the earliest
// attempt as the one found.
type Matcher struct {
	DocID string
	found []match
}

type match struct {
	ref     string
	attempt int
}

// Offer looks at one job: its reference and the text the tag was put in. It reports whether the
// job is the document's.
func (m *Matcher) Offer(ref, tagged string) bool {
	a, ok := TaggedAttempt(m.DocID, tagged)
	if !ok || ref == "" {
		return false
	}
	m.Add(ref, a)
	return true
}

// Add records a job known to be the document's by other means (an e-mail subject naming its id).
func (m *Matcher) Add(ref string, attempt int) {
	for _, f := range m.found {
		if f.ref == ref {
			return
		}
	}
	m.found = append(m.found, match{ref: ref, attempt: attempt})
}

// Any reports whether a job was found.
func (m *Matcher) Any() bool { return len(m.found) > 0 }

// Lookup is Found with the earliest attempt and the rest as duplicates, or else what covered
// says: Absent when the listing covered everything since the attempt began, Unknown (with
// reason) when it did not.
func (m *Matcher) Lookup(covered bool, reason string) Lookup {
	if len(m.found) == 0 {
		if covered {
			return Lookup{Outcome: Absent}
		}
		return Lookup{Outcome: Unknown, Reason: reason}
	}
	best := 0
	for i, f := range m.found {
		if f.attempt < m.found[best].attempt {
			best = i
		}
	}
	l := Lookup{Outcome: Found, Ref: m.found[best].ref, Attempt: m.found[best].attempt}
	for i, f := range m.found {
		if i != best {
			l.Duplicates = append(l.Duplicates, f.ref)
		}
	}
	return l
}
