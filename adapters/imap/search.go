package imap

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// newUIDs returns the UIDs from `from` on, ascending. "UID n:*" always matches the highest UID,
// even when it is below n, hence the filter.
func newUIDs(c *imapclient.Client, from uint32) ([]goimap.UID, error) {
	var set goimap.UIDSet
	set.AddRange(goimap.UID(from), 0) // 0 is "*"
	data, err := c.UIDSearch(&goimap.SearchCriteria{UID: []goimap.UIDSet{set}}, nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("search the mailbox for new mail: %w", err)
	}
	return atLeast(data.AllUIDs(), goimap.UID(from)), nil
}

func atLeast(uids []goimap.UID, from goimap.UID) []goimap.UID {
	out := uids[:0:0]
	for _, u := range uids {
		if u >= from {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

// searchPlan is the part of the filters a server can apply, to spare downloading mails that
// cannot match. Everything is checked again on our side after the download, so the server
// may return too much, never too little — provided what it is sent is a necessary condition.
type searchPlan struct {
	flags   goimap.SearchCriteria // UNSEEN, SINCE, LARGER, SMALLER: plain ASCII
	headers []headerTerm          // a substring every match of a header regexp must contain
}

type headerTerm struct {
	keys  []string // one key, or To and Cc (either may match)
	value string
}

func (t headerTerm) ascii() bool {
	return strings.IndexFunc(t.value, func(r rune) bool { return r > unicode.MaxASCII }) < 0
}

func newSearchPlan(f Filters) searchPlan {
	var p searchPlan
	if f.UnseenOnly {
		p.flags.NotFlag = []goimap.Flag{goimap.FlagSeen}
	}
	if !f.Since.IsZero() {
		// SINCE compares dates in the server's time zone: a day earlier is always enough.
		p.flags.Since = f.Since.AddDate(0, 0, -1)
	}
	if f.MinSize > 1 {
		p.flags.Larger = f.MinSize - 1
	}
	if f.MaxSize > 0 {
		p.flags.Smaller = f.MaxSize + 1
	}
	for _, h := range []struct {
		re   *regexp.Regexp
		keys []string
	}{{f.From, []string{"From"}}, {f.To, []string{"To", "Cc"}}, {f.Subject, []string{"Subject"}}} {
		if h.re == nil {
			continue
		}
		if lit := requiredLiteral(h.re); lit != "" {
			p.headers = append(p.headers, headerTerm{keys: h.keys, value: lit})
		}
	}
	return p
}

func (p searchPlan) empty() bool {
	return len(p.headers) == 0 && len(p.flags.NotFlag) == 0 && p.flags.Since.IsZero() && p.flags.Larger == 0 && p.flags.Smaller == 0
}

func (p searchPlan) hasNonASCII() bool {
	return slices.ContainsFunc(p.headers, func(t headerTerm) bool { return !t.ascii() })
}

// criteria builds the search for UIDs in set; asciiOnly leaves out header terms with non-ASCII
// text, which some servers refuse (Exchange answers BADCHARSET to CHARSET UTF-8, Yahoo rejects
// the command).
func (p searchPlan) criteria(set goimap.UIDSet, asciiOnly bool) *goimap.SearchCriteria {
	c := p.flags
	c.UID = []goimap.UIDSet{set}
	for _, t := range p.headers {
		if asciiOnly && !t.ascii() {
			continue
		}
		if len(t.keys) == 1 {
			c.Header = append(c.Header, goimap.SearchCriteriaHeaderField{Key: t.keys[0], Value: t.value})
			continue
		}
		c.Or = append(c.Or, [2]goimap.SearchCriteria{
			{Header: []goimap.SearchCriteriaHeaderField{{Key: t.keys[0], Value: t.value}}},
			{Header: []goimap.SearchCriteriaHeaderField{{Key: t.keys[1], Value: t.value}}},
		})
	}
	return &c
}

// searchMode is how far a server's SEARCH can be trusted; it only ever degrades.
type searchMode int

const (
	searchFull     searchMode = iota // every term
	searchASCII                      // header terms with non-ASCII text are left to us
	searchUIDsOnly                   // the server refused even that: every filter is ours
)

// matching narrows uids (ascending, from newUIDs) to those the server finds matching the plan.
// A refusal (NO/BAD) degrades the mode and tries again; a broken connection is returned.
func (p searchPlan) matching(c *imapclient.Client, uids []goimap.UID, mode *searchMode) ([]goimap.UID, error) {
	if p.empty() || len(uids) == 0 {
		return uids, nil
	}
	var set goimap.UIDSet
	set.AddRange(uids[0], uids[len(uids)-1])
	for *mode < searchUIDsOnly {
		if *mode == searchFull && !p.hasNonASCII() {
			*mode = searchASCII // the same search; skip a step
		}
		data, err := c.UIDSearch(p.criteria(set, *mode == searchASCII), nil).Wait()
		if err == nil {
			found, _ := data.All.(goimap.UIDSet)
			// Only UIDs we listed count: a mail that arrived in between is found next time.
			return slices.DeleteFunc(slices.Clone(uids), func(u goimap.UID) bool { return !found.Contains(u) }), nil
		}
		var imapErr *goimap.Error
		if !errors.As(err, &imapErr) {
			return nil, fmt.Errorf("search the mailbox: %w", err)
		}
		*mode++
	}
	return uids, nil
}

// requiredLiteral returns text that every match of re contains, as a server-side substring
// search (case-insensitive, like IMAP's): the longest literal run of re's top-level sequence, cut
// to characters that read the same however a header is folded or quoted (letters, digits, @ . _
// - +). "" when there is none of at least three characters.
func requiredLiteral(re *regexp.Regexp) string {
	tree, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return ""
	}
	tree = unwrap(tree.Simplify())
	var runs []string
	switch tree.Op {
	case syntax.OpLiteral:
		runs = append(runs, literalText(tree))
	case syntax.OpConcat:
		var cur strings.Builder
		for _, sub := range tree.Sub {
			if sub = unwrap(sub); sub.Op == syntax.OpLiteral {
				cur.WriteString(literalText(sub))
				continue
			}
			runs = append(runs, cur.String())
			cur.Reset()
		}
		runs = append(runs, cur.String())
	}
	best := ""
	for _, run := range runs {
		for _, piece := range strings.FieldsFunc(run, func(r rune) bool {
			return !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("@._-+", r))
		}) {
			if len([]rune(piece)) > len([]rune(best)) {
				best = piece
			}
		}
	}
	if len([]rune(best)) < 3 {
		return ""
	}
	return best
}

// unwrap looks through capture groups, which do not change what matches.
func unwrap(re *syntax.Regexp) *syntax.Regexp {
	for re.Op == syntax.OpCapture && len(re.Sub) == 1 {
		re = re.Sub[0]
	}
	return re
}

// literalText is a literal's text; a case-insensitive one is folded to lower case (IMAP SEARCH
// ignores case anyway).
func literalText(re *syntax.Regexp) string {
	if re.Flags&syntax.FoldCase != 0 {
		return strings.ToLower(string(re.Rune))
	}
	return string(re.Rune)
}
