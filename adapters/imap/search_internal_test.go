package imap

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

func TestRequiredLiteral(t *testing.T) {
	tests := []struct {
		re   string
		want string
	}{
		{`billing@acme\.example`, "billing@acme.example"},
		{`(?i)^rechnung`, "rechnung"},
		{`^Invoice \d+ from ACME-Corp`, "ACME-Corp"}, // the longest piece; spaces may fold
		{`Größen`, "Größen"},
		{`(invoice|rechnung)`, ""}, // either may match: nothing is required
		{`a.b`, ""},                // pieces shorter than three characters say too little
		{`(acme\.example)$`, "acme.example"},
		{`.*`, ""},
	}
	for _, tt := range tests {
		if got := requiredLiteral(regexp.MustCompile(tt.re)); got != tt.want {
			t.Errorf("requiredLiteral(%q) = %q, want %q", tt.re, got, tt.want)
		}
		// Whatever it returns must be in every match, whatever the case.
		if tt.want != "" {
			re := regexp.MustCompile(tt.re)
			for _, s := range []string{"billing@acme.example", "Rechnung 7", "Invoice 12 from ACME-Corp", "Größenordnung", "x@acme.example"} {
				if re.MatchString(s) && !strings.Contains(strings.ToLower(s), strings.ToLower(tt.want)) {
					t.Errorf("%q matches %q but lacks %q", tt.re, s, tt.want)
				}
			}
		}
	}
}

func TestSearchPlanCriteria(t *testing.T) {
	since := time.Date(2026, 11, 20, 15, 0, 0, 0, time.UTC)
	p := newSearchPlan(Filters{
		UnseenOnly: true, Since: since, MinSize: 100, MaxSize: 1000,
		From: regexp.MustCompile(`billing@acme\.example`), To: regexp.MustCompile(`invoices@`),
		Subject: regexp.MustCompile(`Größe`),
	})
	var set goimap.UIDSet
	set.AddRange(5, 9)
	full := p.criteria(set, false)
	if !slices.Equal(full.NotFlag, []goimap.Flag{goimap.FlagSeen}) || !full.Since.Equal(since.AddDate(0, 0, -1)) ||
		full.Larger != 99 || full.Smaller != 1001 {
		t.Errorf("flags criteria %+v", full)
	}
	if len(full.Header) != 2 || len(full.Or) != 1 {
		t.Fatalf("header criteria %+v, or %+v: want From and Subject, and To OR Cc", full.Header, full.Or)
	}
	ascii := p.criteria(set, true)
	if len(ascii.Header) != 1 || ascii.Header[0].Key != "From" || len(ascii.Or) != 1 {
		t.Errorf("ASCII-only criteria keep From and To/Cc, drop the subject: %+v", ascii)
	}
	if !p.hasNonASCII() || newSearchPlan(Filters{From: regexp.MustCompile("acme")}).hasNonASCII() {
		t.Error("hasNonASCII is wrong")
	}
	if !newSearchPlan(Filters{}).empty() || newSearchPlan(Filters{MaxSize: 1}).empty() {
		t.Error("empty is wrong")
	}
}

func TestAtLeastDropsTheStarMatch(t *testing.T) {
	// "UID 10:*" on a mailbox whose highest UID is 7 answers 7.
	if got := atLeast([]goimap.UID{7}, 10); len(got) != 0 {
		t.Errorf("atLeast = %v, want none", got)
	}
	if got := atLeast([]goimap.UID{12, 10, 11}, 10); !slices.Equal(got, []goimap.UID{10, 11, 12}) {
		t.Errorf("atLeast = %v", got)
	}
}

func TestEMLName(t *testing.T) {
	tests := map[string]string{
		"Invoice 11/2026: ACME":  "Invoice 11_2026_ ACME.eml",
		"":                       "message.eml",
		strings.Repeat("ü", 100): strings.Repeat("ü", 60) + "….eml",
	}
	for subject, want := range tests {
		if got := emlName(subject); got != want {
			t.Errorf("emlName(%q) = %q, want %q", subject, got, want)
		}
	}
}
