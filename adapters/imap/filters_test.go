package imap_test

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	imapsrc "github.com/ingest-dev/ingest/adapters/imap"
	"github.com/ingest-dev/ingest/events/eventstest"
)

// filterMails is one mailbox for every filter case: subject → mail.
var filterMails = []struct {
	subject string
	from    string
	parts   []attachment
	seen    bool
}{
	{"Rechnung 42", "Billing <billing@acme.example>", []attachment{{name: "r42.pdf", body: pdf("r42", 3000)}}, false},
	{"Hello", "Friend <friend@else.example>", []attachment{{name: "hello.pdf", body: pdf("hello", 3000)}}, false},
	{"Scan", "Billing <billing@acme.example>", []attachment{{name: "scan.png", body: png("scan")}}, false},
	{"Old news", "Billing <billing@acme.example>", []attachment{{name: "old.pdf", body: pdf("old", 3000)}}, true},
	{"Größenordnung", "Müller <mueller@acme.example>", []attachment{{name: "gr.pdf", body: pdf("gr", 3000)}}, false},
	{"Big one", "Billing <billing@acme.example>", []attachment{{name: "big.pdf", body: pdf("big", 60000)}}, false},
	{"Notes only", "Billing <billing@acme.example>", []attachment{{name: "notes.docx", body: []byte("PK\x03\x04 not really a docx")}}, false},
}

type filterCase struct {
	name    string
	filters imapsrc.Filters
	want    []string // subjects of the mails ingested, which get the post-action
}

func filterCases() []filterCase {
	return []filterCase{
		{"from", imapsrc.Filters{From: regexp.MustCompile(`billing@acme\.example`)}, []string{"Big one", "Notes only", "Old news", "Rechnung 42", "Scan"}},
		{"subject, case-insensitive", imapsrc.Filters{Subject: regexp.MustCompile(`(?i)^rechnung`)}, []string{"Rechnung 42"}},
		{"subject with umlauts", imapsrc.Filters{Subject: regexp.MustCompile(`Größen`)}, []string{"Größenordnung"}},
		{"filenames", imapsrc.Filters{Filenames: []string{"*.PDF"}}, []string{"Big one", "Größenordnung", "Hello", "Old news", "Rechnung 42"}},
		{"sniffed content type", imapsrc.Filters{ContentTypes: []string{"image/*"}}, []string{"Scan"}},
		{"unseen only", imapsrc.Filters{UnseenOnly: true, Filenames: []string{"*.pdf"}}, []string{"Big one", "Größenordnung", "Hello", "Rechnung 42"}},
		{"max size", imapsrc.Filters{MaxSize: 20000, From: regexp.MustCompile(`billing`)}, []string{"Notes only", "Old news", "Rechnung 42", "Scan"}},
		{"min size", imapsrc.Filters{MinSize: 20000}, []string{"Big one"}},
		{"since, in the future", imapsrc.Filters{Since: time.Now().Add(time.Hour)}, nil},
		{"since, in the past", imapsrc.Filters{Since: time.Now().Add(-time.Hour), Subject: regexp.MustCompile(`Hello`)}, []string{"Hello"}},
	}
}

func TestFilters(t *testing.T) {
	for _, tt := range filterCases() {
		t.Run(tt.name, func(t *testing.T) {
			runFilterCase(t, startMemServer(t, memOptions{}), tt.filters, tt.want)
		})
	}
}

// TestSearchFallsBackOnBadCharset runs against a server that refuses CHARSET UTF-8 (Exchange
// answers NO [BADCHARSET]) and one that rejects the command outright (BAD, as Yahoo does): the
// filter is then applied after the download, with the same result.
func TestSearchFallsBackOnBadCharset(t *testing.T) {
	for _, answer := range []*goimap.Error{
		{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeBadCharset, Text: "charset not supported"},
		{Type: goimap.StatusResponseTypeBad, Text: "Command Argument Error. 11"},
	} {
		t.Run(string(answer.Type), func(t *testing.T) {
			var refused atomic.Int32
			opt := memOptions{
				// IMAP4rev1 only: the client must announce CHARSET UTF-8 for non-ASCII criteria.
				caps: goimap.CapSet{goimap.CapIMAP4rev1: {}, goimap.CapUIDPlus: {}, goimap.CapMove: {}},
				wrap: func(s imapserver.SessionIMAP4rev2) imapserver.Session {
					return &asciiSearchSession{SessionIMAP4rev2: s, answer: answer, refused: &refused}
				},
			}
			runFilterCase(t, startMemServer(t, opt), imapsrc.Filters{Subject: regexp.MustCompile(`Größen`)}, []string{"Größenordnung"})
			if refused.Load() == 0 {
				t.Error("the server never refused a search: the fallback was not exercised")
			}
		})
	}
}

func runFilterCase(t *testing.T, srv mailServer, f imapsrc.Filters, want []string) {
	t.Helper()
	e := newEnv(t)
	for _, m := range filterMails {
		var flags []goimap.Flag
		if m.seen {
			flags = append(flags, goimap.FlagSeen)
		}
		srv.deliver(t, "INBOX", message{from: m.from, subject: m.subject, id: m.subject + "@x", parts: m.parts}.build(), flags...)
	}
	cfg := e.config(srv.address())
	cfg.Filters = f
	cfg.After = imapsrc.After{Action: imapsrc.ActionFlag, Keyword: "$Ingested"}
	r := start(t, cfg)
	// "Notes only" carries a file of a type ingest does not take: ingested means rejected there.
	wantDocs := slices.DeleteFunc(slices.Clone(want), func(s string) bool { return s == "Notes only" })
	wantRejections := 0
	if slices.Contains(want, "Notes only") {
		wantRejections = 1
	}
	// (A mail is counted as seen before its documents and rejections are announced: wait for
	// those too.)
	eventstest.WaitFor(t, 10*time.Second, "the whole mailbox to be passed", func() bool {
		return e.counter("ingest_imap_mails_seen_total", nil) == float64(len(filterMails)) &&
			len(e.events.Received()) >= len(wantDocs) && len(e.events.Rejected()) >= wantRejections
	})
	r.stop()
	var got []string
	for _, d := range e.events.Received() {
		got = append(got, d.Metadata["subject"])
	}
	sort.Strings(got)
	if n := e.published(); n != len(wantDocs) {
		t.Errorf("intake published %d documents, want %d", n, len(wantDocs))
	}
	if !slices.Equal(got, wantDocs) {
		t.Errorf("documents from %q, want %q", got, wantDocs)
	}
	// Only the ingested mails got the post-action; the others are untouched.
	for _, m := range mailbox(t, srv.address(), testUser, testPass, "INBOX") {
		if flagged, wanted := m.has("$Ingested"), slices.Contains(want, m.subject); flagged != wanted {
			t.Errorf("mail %q: flagged %v, want %v (flags %v)", m.subject, flagged, wanted, m.flags)
		}
	}
	rej := e.events.Rejected()
	if wantRej := slices.Contains(want, "Notes only"); wantRej != (len(rej) == 1) {
		t.Errorf("rejections %s, want one (for notes.docx) %v", jsonString(rej), wantRej)
	} else if wantRej && (rej[0].Reason != "unsupported_type" || rej[0].Filename != "notes.docx") {
		t.Errorf("rejection %s, want unsupported_type of notes.docx", jsonString(rej[0]))
	}
}

// asciiSearchSession refuses a SEARCH with non-ASCII text, like Exchange and Yahoo.
type asciiSearchSession struct {
	imapserver.SessionIMAP4rev2
	answer  *goimap.Error
	refused *atomic.Int32
}

func (s *asciiSearchSession) Search(kind imapserver.NumKind, c *goimap.SearchCriteria, o *goimap.SearchOptions) (*goimap.SearchData, error) {
	if !criteriaASCII(c) {
		s.refused.Add(1)
		return nil, s.answer
	}
	return s.SessionIMAP4rev2.Search(kind, c, o)
}

func criteriaASCII(c *goimap.SearchCriteria) bool {
	for _, h := range c.Header {
		if strings.IndexFunc(h.Value, func(r rune) bool { return r > 127 }) >= 0 {
			return false
		}
	}
	for _, or := range c.Or {
		if !criteriaASCII(&or[0]) || !criteriaASCII(&or[1]) {
			return false
		}
	}
	for i := range c.Not {
		if !criteriaASCII(&c.Not[i]) {
			return false
		}
	}
	return true
}
