package webdav

import (
	"strings"
	"testing"
	"time"
)

func TestPostActions(t *testing.T) {
	cases := []struct {
		name     string
		cfg      func(*Config)
		existing map[string]string // files in place before (path → seed)
		want     []string          // files afterwards
	}{
		{"move (default)", nil, nil, []string{"processed/a.pdf", "processed/sub/b.pdf"}},
		{"move into a nested folder that does not exist yet", func(c *Config) { c.MoveTo = "done/2026/11/" }, nil,
			[]string{"done/2026/11/a.pdf", "done/2026/11/sub/b.pdf"}},
		{"move when processed/ already has the names", nil,
			map[string]string{"processed/a.pdf": "old-a", "processed/a-2.pdf": "old-a2", "processed/sub/b.pdf": "old-b"},
			[]string{"processed/a-2.pdf", "processed/a-3.pdf", "processed/a.pdf", "processed/sub/b-2.pdf", "processed/sub/b.pdf"}},
		{"delete", func(c *Config) { c.After = AfterDelete }, nil, nil},
		{"keep", func(c *Config) { c.After = AfterKeep }, nil, []string{"a.pdf", "sub/b.pdf"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dav := newDAV(t)
			h := newHarness(t, dav.URL, func(cfg *Config) {
				cfg.Recursive = true
				if c.cfg != nil {
					c.cfg(cfg)
				}
			})
			for p, seed := range c.existing {
				dav.write(p, pdf(seed, 100))
			}
			a, b := pdf("a", 300), pdf("b", 400)
			dav.write("a.pdf", a)
			dav.write("sub/b.pdf", b)
			h.settle()
			equalStrings(t, "received", h.receivedPaths(), []string{"a.pdf", "sub/b.pdf"})
			equalStrings(t, "files", dav.files(), c.want)
			// Files that were there keep their content; ours are under a free name.
			for p, seed := range c.existing {
				if string(dav.read(p)) != string(pdf(seed, 100)) {
					t.Errorf("%s was overwritten", p)
				}
			}
			if c.existing != nil && (string(dav.read("processed/a-3.pdf")) != string(a) || string(dav.read("processed/sub/b-2.pdf")) != string(b)) {
				t.Errorf("moved files are not under the suffixed names")
			}
			// More polls change nothing.
			h.clock.advance(time.Hour)
			h.settle()
			if n := len(h.received()); n != 2 {
				t.Fatalf("%d events after more polls, want 2", n)
			}
			equalStrings(t, "files after more polls", dav.files(), c.want)
		})
	}
}

func TestSuffixedNames(t *testing.T) {
	for _, c := range []struct {
		name string
		i    int
		want string
	}{
		{"report.pdf", 1, "report.pdf"},
		{"report.pdf", 2, "report-2.pdf"},
		{"archive.tar.gz", 3, "archive.tar-3.gz"},
		{"README", 2, "README-2"},
		{"odd. name", 2, "odd. name-2"},
	} {
		if got := suffixed(c.name, c.i); got != c.want {
			t.Errorf("suffixed(%q, %d) = %q, want %q", c.name, c.i, got, c.want)
		}
	}
}

func TestReingestOnChange(t *testing.T) {
	for _, reingest := range []bool{false, true} {
		t.Run(map[bool]string{false: "off", true: "on"}[reingest], func(t *testing.T) {
			dav := newDAV(t)
			h := newHarness(t, dav.URL, func(c *Config) { c.After = AfterKeep; c.ReingestOnChange = reingest })
			v1, v2 := pdf("v1", 1000), pdf("v2 edited", 1500)
			dav.write("contract.pdf", v1)
			h.settle()
			dav.write("contract.pdf", v2)
			h.settle()
			h.settle()
			got := h.received()
			if !reingest {
				if len(got) != 1 || got[0].SHA256 != sha(v1) {
					t.Fatalf("got %d events, want only the first version", len(got))
				}
				return
			}
			if len(got) != 2 || got[0].SHA256 != sha(v1) || got[1].SHA256 != sha(v2) {
				t.Fatalf("got %d events, want both versions", len(got))
			}
			if got[0].DocumentID == got[1].DocumentID || got[0].Metadata["etag"] == got[1].Metadata["etag"] {
				t.Fatalf("the two versions share a document id or ETag")
			}
		})
	}
}

// A new file under the name of one that was moved away is a new file, not a new version, even
// with reingest_on_change off.
func TestSameNameAgainAfterMove(t *testing.T) {
	dav := newDAV(t)
	h := newHarness(t, dav.URL)
	dav.write("scan.pdf", pdf("monday", 100))
	h.settle()
	dav.write("scan.pdf", pdf("tuesday", 100))
	h.settle()
	if n := len(h.received()); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
	equalStrings(t, "files", dav.files(), []string{"processed/scan-2.pdf", "processed/scan.pdf"})
}

func TestNonDocumentsAreRejected(t *testing.T) {
	zip := append([]byte("PK\x03\x04"), []byte(strings.Repeat("zipped bytes ", 100))...)
	t.Run("moved to move_failed", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL, func(c *Config) { c.MoveFailed = "failed/" })
		dav.write("archive.zip", zip)
		dav.write("ok.pdf", pdf("ok", 100))
		h.settle()
		rej := h.rejected()
		if len(rej) != 1 || rej[0].Reason != "unsupported_type" || !strings.Contains(rej[0].Detail, "application/zip") ||
			rej[0].Metadata["path"] != "archive.zip" || rej[0].Source.Kind != "webdav" {
			t.Fatalf("rejected = %+v", rej)
		}
		if string(h.stored(rej[0].ObjectKey)) != string(zip) {
			t.Fatalf("the rejected file's bytes were not kept")
		}
		equalStrings(t, "received", h.receivedPaths(), []string{"ok.pdf"})
		equalStrings(t, "files", dav.files(), []string{"failed/archive.zip", "processed/ok.pdf"})
	})
	t.Run("left in place without move_failed, rejected once", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL)
		dav.write("archive.zip", zip)
		h.settle()
		h.settle()
		if n := len(h.rejected()); n != 1 {
			t.Fatalf("%d rejections, want 1", n)
		}
		equalStrings(t, "files", dav.files(), []string{"archive.zip"})
		// Replaced by a document under the same name: that one is taken.
		dav.write("archive.zip", pdf("now a pdf", 200))
		h.settle()
		if n := len(h.received()); n != 1 {
			t.Fatalf("%d documents after the file was replaced, want 1", n)
		}
	})
	t.Run("too large", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL, func(c *Config) { c.MaxDocumentBytes = 1000; c.MoveFailed = "failed" })
		dav.write("huge.pdf", pdf("huge", 5000))
		h.settle()
		rej := h.rejected()
		if len(rej) != 1 || rej[0].Reason != "too_large" || !strings.Contains(rej[0].Detail, "1000 bytes") || rej[0].Size != 1000 {
			t.Fatalf("rejected = %+v", rej)
		}
		equalStrings(t, "files", dav.files(), []string{"failed/huge.pdf"})
	})
}

func TestZeroByteFiles(t *testing.T) {
	t.Run("waits until the file grows", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL)
		dav.write("later.pdf", nil)
		h.settle()
		h.settle()
		if n := len(h.received()) + len(h.rejected()); n != 0 {
			t.Fatalf("an empty file was taken")
		}
		body := pdf("grown", 300)
		dav.write("later.pdf", body)
		h.settle()
		if got := h.received(); len(got) != 1 || got[0].SHA256 != sha(body) {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("rejected once it has stayed empty for EmptyGrace", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL, func(c *Config) { c.MoveFailed = "failed/" })
		dav.write("empty.pdf", nil)
		h.settle()
		h.clock.advance(DefaultEmptyGrace)
		h.mustPoll()
		rej := h.rejected()
		if len(rej) != 1 || rej[0].Reason != "empty" {
			t.Fatalf("rejected = %+v", rej)
		}
		equalStrings(t, "files", dav.files(), []string{"failed/empty.pdf"})
	})
}

func TestSkipPatternsAndFilters(t *testing.T) {
	dav := newDAV(t)
	h := newHarness(t, dav.URL, func(c *Config) {
		c.Recursive = true
		c.Include = []string{"*.pdf", "scans/**/*.tif"}
		c.Exclude = []string{"drafts/**", "*-draft.pdf"}
	})
	for _, p := range []string{"a.pdf", "b.pdf.part", "~$c.pdf", "d.tmp", ".e.pdf", "f.crdownload", "g-draft.pdf", "h.txt",
		"drafts/i.pdf", "scans/2026/j.tif", "k.tif", "deep/er/l.pdf"} {
		body := pdf(p, 100)
		if strings.HasSuffix(p, ".tif") {
			body = append([]byte("II*\x00"), body...)
		}
		dav.write(p, body)
	}
	h.settle()
	equalStrings(t, "received", h.receivedPaths(), []string{"a.pdf", "deep/er/l.pdf", "scans/2026/j.tif"})
}

func TestWrongCredentials(t *testing.T) {
	dav := newDAV(t)
	h := newHarness(t, dav.URL, func(c *Config) { c.Password = "wrong" })
	dav.write("a.pdf", pdf("a", 100))
	err := h.poll()
	mustContain(t, err, "401", "refused the credentials")
	if h.w.Health() == nil {
		t.Fatal("Health is nil after a failed poll")
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatal("the password is in the error")
	}
}
