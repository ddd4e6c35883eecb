package webdav

import (
	"context"
	"slices"
	"testing"

	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/intake"
)

func TestConfigIsChecked(t *testing.T) {
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	in, err := intake.New(intake.Config{Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	good := func() Config {
		return Config{Name: "scans", URL: "https://cloud.example.com/dav/inbox", Bus: bus, Intake: in}
	}
	cases := []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"bad name", func(c *Config) { c.Name = "Scans!" }, []string{`name: "Scans!"`}},
		{"no url", func(c *Config) { c.URL = "" }, []string{"url: is required"}},
		{"not http", func(c *Config) { c.URL = "ftp://x/y" }, []string{"http:// or https://"}},
		{"credentials in the url", func(c *Config) { c.URL = "https://u:secret@x/y" }, []string{"must not carry credentials"}},
		{"two kinds of auth", func(c *Config) { c.Username = "u"; c.BearerToken = "t" }, []string{"not both"}},
		{"unknown post-action", func(c *Config) { c.After = "archive" }, []string{`after: "archive"`}},
		{"move_to climbing out", func(c *Config) { c.MoveTo = "../elsewhere" }, []string{"after:", `".."`}},
		{"absolute move_failed", func(c *Config) { c.MoveFailed = "/failed" }, []string{"move_failed", "relative"}},
		{"bad glob", func(c *Config) { c.Include = []string{"[a-"} }, []string{"include: pattern"}},
		{"negative interval", func(c *Config) { c.PollInterval = -1 }, []string{"poll_interval: must not be negative"}},
		{"bad vendor", func(c *Config) { c.Vendors = []string{"Gini"} }, []string{`vendor: "Gini"`}},
		{"every problem at once", func(c *Config) { c.Name = ""; c.After = "x"; c.MinAge = -1 }, []string{"name", "after", "min_age"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := good()
			c.mutate(&cfg)
			_, err := New(context.Background(), cfg)
			mustContain(t, err, c.want...)
		})
	}
	t.Run("defaults", func(t *testing.T) {
		w, err := New(context.Background(), good())
		if err != nil {
			t.Fatal(err)
		}
		c := w.cfg
		if c.After != AfterMove || c.MoveTo != "processed" || c.PollInterval != DefaultPollInterval || c.MinAge != DefaultMinAge ||
			c.MaxListingBytes != 64<<20 || c.MaxDocumentBytes != 64<<20 || !slices.Equal(c.SkipPatterns, DefaultSkipPatterns()) {
			t.Fatalf("defaults: %+v", c)
		}
		if w.root.String() != "https://cloud.example.com/dav/inbox/" {
			t.Fatalf("root = %s", w.root)
		}
		if !w.filter.isPrivate("processed/x.pdf") || w.filter.wantFile("processed/x.pdf") {
			t.Fatal("processed/ is watched")
		}
	})
	t.Run("empty skip patterns skip nothing", func(t *testing.T) {
		cfg := good()
		cfg.SkipPatterns = []string{}
		w, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !w.filter.wantFile(".dotfile.pdf") {
			t.Fatal("a dot-file was skipped with skip_patterns: []")
		}
	})
}

func TestGlobs(t *testing.T) {
	cases := []struct {
		pattern, rel string
		want         bool
	}{
		{"*.pdf", "a.pdf", true},
		{"*.pdf", "deep/down/a.pdf", true},
		{"*.pdf", "a.tif", false},
		{"scans/*.pdf", "scans/a.pdf", true},
		{"scans/*.pdf", "scans/x/a.pdf", false},
		{"scans/**/*.pdf", "scans/a.pdf", true},
		{"scans/**/*.pdf", "scans/x/y/a.pdf", true},
		{"scans/**/*.pdf", "other/a.pdf", false},
		{"**/tmp/**", "a/tmp/b/c.pdf", true},
		{"drafts/**", "drafts/a.pdf", true},
		{"drafts/**", "drafts", true},
		{"~$*", "~$lock.docx", true},
		{".*", ".hidden", true},
		{".*", "visible", false},
	}
	for _, c := range cases {
		if got := matchGlob(c.pattern, c.rel); got != c.want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", c.pattern, c.rel, got, c.want)
		}
	}
}
