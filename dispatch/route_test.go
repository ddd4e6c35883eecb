package dispatch_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/dispatch"
	"github.com/ingest-dev/ingest/events"
)

func TestRouting(t *testing.T) {
	rules := []dispatch.Rule{
		{Name: "invoices-mail", SourceKind: "imap", SourceName: "invoices", Vendors: []string{"gini", "laigo"}},
		{Name: "scans", ContentType: "image/*", Vendors: []string{"laigo"}},
		{Name: "contracts", Filename: "contract-*.pdf", Vendors: []string{"documine"}},
		{Name: "text", ContentType: "text/plain", Vendors: []string{"allspark"}},
		{Name: "default", Vendors: []string{"gini"}},
	}
	r, err := dispatch.NewRouter(rules, []string{"gini", "laigo", "documine", "allspark"})
	if err != nil {
		t.Fatal(err)
	}
	doc := func(kind, name, file, ct string) events.ReceivedData {
		return events.ReceivedData{Source: events.SourceRef{Kind: kind, Name: name}, Filename: file, ContentType: ct}
	}
	cases := []struct {
		name      string
		d         events.ReceivedData
		want      []string
		wantRoute string
		err       string
	}{
		{"mailbox rule wins first", doc("imap", "invoices", "scan.png", "image/png"), []string{"gini", "laigo"}, "invoices-mail", ""},
		{"other mailbox falls through to type", doc("imap", "other", "scan.png", "image/png"), []string{"laigo"}, "scans", ""},
		{"filename glob, case-insensitive", doc("http", "api", "Contract-2026.PDF", "application/pdf"), []string{"documine"}, "contracts", ""},
		{"content type without parameters", doc("http", "api", "a.txt", "text/plain; charset=utf-8"), []string{"allspark"}, "text", ""},
		{"default route", doc("webdav", "share", "x.pdf", "application/pdf"), []string{"gini"}, "default", ""},
		{"explicit vendors win", func() events.ReceivedData {
			d := doc("http", "api", "scan.png", "image/png")
			d.Vendors = []string{"documine"}
			return d
		}(), []string{"documine"}, "", ""},
		{"explicit route wins", func() events.ReceivedData {
			d := doc("http", "api", "scan.png", "image/png")
			d.Route = "contracts"
			return d
		}(), []string{"documine"}, "contracts", ""},
		{"unknown vendor", func() events.ReceivedData {
			d := doc("http", "api", "a.pdf", "")
			d.Vendors = []string{"cradl"}
			return d
		}(), nil, "", `vendor "cradl" is not enabled`},
		{"unknown route", func() events.ReceivedData { d := doc("http", "api", "a.pdf", ""); d.Route = "nope"; return d }(), nil, "", `no route "nope"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, route, err := r.Route(c.d)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) || route != c.wantRoute {
				t.Fatalf("Route = %v %q %v; want %v %q", got, route, err, c.want, c.wantRoute)
			}
		})
	}
	// Without a catch-all, an unmatched document has no vendor.
	r2, _ := dispatch.NewRouter(rules[:1], []string{"gini", "laigo"})
	if got, _, err := r2.Route(doc("http", "api", "a.pdf", "application/pdf")); err != nil || got != nil {
		t.Fatalf("unmatched: %v %v", got, err)
	}
}

func TestRouterRejectsBadRules(t *testing.T) {
	cases := map[string][]dispatch.Rule{
		"no name":         {{Vendors: []string{"gini"}}},
		"twice":           {{Name: "a", Vendors: []string{"gini"}}, {Name: "a", Vendors: []string{"gini"}}},
		"disabled vendor": {{Name: "a", Vendors: []string{"laigo"}}},
		"no vendors":      {{Name: "a"}},
		"bad glob":        {{Name: "a", Filename: "[", Vendors: []string{"gini"}}},
	}
	for name, rules := range cases {
		if _, err := dispatch.NewRouter(rules, []string{"gini"}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
