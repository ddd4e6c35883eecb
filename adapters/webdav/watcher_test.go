package webdav

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestHappyPathTwoPDFsAreIngestedAndMoved(t *testing.T) {
	dav := newDAV(t)
	h := newHarness(t, dav.URL, func(c *Config) { c.Vendors = []string{"gini"}; c.Route = "scans" })
	a, b := pdf("a", 3000), pdf("b", 5000)
	dav.write("invoice-a.pdf", a)
	dav.write("invoice-b.pdf", b)

	h.mustPoll()
	if n := len(h.received()); n != 0 {
		t.Fatalf("%d documents after the first listing; a file must be seen unchanged twice first", n)
	}
	h.clock.advance(time.Minute)
	h.mustPoll()

	got := h.received()
	if len(got) != 2 {
		t.Fatalf("received %d events, want 2", len(got))
	}
	want := map[string][]byte{"invoice-a.pdf": a, "invoice-b.pdf": b}
	for _, d := range got {
		body, ok := want[d.Metadata["path"]]
		if !ok {
			t.Fatalf("unexpected path %q", d.Metadata["path"])
		}
		if d.Source.Kind != "webdav" || d.Source.Name != "scans" {
			t.Errorf("source = %+v", d.Source)
		}
		if d.Filename != d.Metadata["path"] || d.ContentType != "application/pdf" || d.SHA256 != sha(body) {
			t.Errorf("event %+v does not describe %s", d, d.Metadata["path"])
		}
		if !strings.HasPrefix(d.Metadata["etag"], `"`) || d.Metadata["size"] == "" || d.Metadata["last_modified"] == "" ||
			d.Metadata["folder"] != dav.URL {
			t.Errorf("metadata %v misses folder, etag, size or last_modified", d.Metadata)
		}
		if len(d.Vendors) != 1 || d.Vendors[0] != "gini" || d.Route != "scans" {
			t.Errorf("vendors %v route %q", d.Vendors, d.Route)
		}
		if string(h.stored(d.ObjectKey)) != string(body) {
			t.Errorf("stored bytes of %s differ", d.Metadata["path"])
		}
	}
	equalStrings(t, "files after the post-action", dav.files(), []string{"processed/invoice-a.pdf", "processed/invoice-b.pdf"})

	// Nothing happens again: processed/ is not watched.
	h.clock.advance(time.Minute)
	h.settle()
	if n := len(h.received()); n != 2 {
		t.Fatalf("%d events after more polls, want still 2", n)
	}
	if err := h.w.Health(); err != nil {
		t.Fatalf("Health = %v", err)
	}
}

func TestSlowWriterIsTakenOnlyWhenComplete(t *testing.T) {
	dav := newDAV(t)
	h := newHarness(t, dav.URL)
	full := pdf("slow", 64<<10)
	chunks := [][]byte{full[:1000], full[1000:20000], full[20000:40000], full[40000:]}

	// The writer appends between every two polls.
	dav.write("scan.pdf", chunks[0])
	for _, c := range chunks[1:] {
		h.mustPoll()
		// Long past MinAge: only the two-listings rule can hold the file back.
		h.clock.advance(time.Hour)
		dav.appendTo("scan.pdf", c)
		if n := len(h.received()); n != 0 {
			t.Fatalf("a file still being written was taken (%d events)", n)
		}
	}
	h.mustPoll()
	if n := len(h.received()); n != 0 {
		t.Fatalf("taken on the first listing after the last write")
	}
	h.mustPoll()
	got := h.received()
	if len(got) != 1 || got[0].Size != int64(len(full)) || got[0].SHA256 != sha(full) {
		t.Fatalf("got %+v, want one event with all %d bytes", got, len(full))
	}
}

func TestMinAge(t *testing.T) {
	dav := newDAV(t)
	h := newHarness(t, dav.URL, func(c *Config) { c.MinAge = 10 * time.Minute })
	dav.write("fresh.pdf", pdf("fresh", 100))
	h.mustPoll()
	h.mustPoll()
	h.clock.advance(9 * time.Minute)
	h.mustPoll()
	if n := len(h.received()); n != 0 {
		t.Fatalf("a file younger than MinAge (by getlastmodified) was taken")
	}
	h.clock.advance(2 * time.Minute)
	h.mustPoll()
	if n := len(h.received()); n != 1 {
		t.Fatalf("%d events once the file is older than MinAge, want 1", n)
	}
}

func TestMinAgeWithoutLastModifiedCountsFromFirstSight(t *testing.T) {
	w := &Watcher{cfg: Config{MinAge: time.Minute, EmptyGrace: time.Hour}, files: map[string]*fileObs{}}
	clock := &testClock{}
	w.now = clock.now
	res := &scanResult{next: map[string]*dirState{"": {files: map[string]entry{
		"a.pdf": {rel: "a.pdf", etag: `"1"`, size: 10}, // no getlastmodified
	}}}, confirmed: map[string]bool{"": true}}
	w.observe(res)
	w.observe(res)
	if c := w.candidates(res); len(c) != 0 {
		t.Fatalf("taken %d files seen for the first time just now", len(c))
	}
	clock.advance(2 * time.Minute)
	w.observe(res)
	if c := w.candidates(res); len(c) != 1 {
		t.Fatalf("%d candidates a while after the first sight, want 1", len(c))
	}
}

func TestRenameAndOverwrite(t *testing.T) {
	t.Run("upload under a temporary name, then renamed", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL)
		body := pdf("renamed", 4000)
		dav.write("upload.pdf.part", body)
		h.settle()
		if n := len(h.received()); n != 0 {
			t.Fatalf("a .part file was taken")
		}
		if err := os.Rename(dav.path("upload.pdf.part"), dav.path("upload.pdf")); err != nil {
			t.Fatal(err)
		}
		h.mustPoll()
		if n := len(h.received()); n != 0 {
			t.Fatalf("taken on the first listing under its new name")
		}
		h.mustPoll()
		got := h.received()
		if len(got) != 1 || got[0].Metadata["path"] != "upload.pdf" || got[0].SHA256 != sha(body) {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("renamed while waiting to be taken", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL)
		dav.write("a.pdf", pdf("a", 100))
		h.mustPoll()
		h.clock.advance(time.Minute)
		if err := os.Rename(dav.path("a.pdf"), dav.path("b.pdf")); err != nil {
			t.Fatal(err)
		}
		h.mustPoll()
		h.mustPoll()
		equalStrings(t, "received", h.receivedPaths(), []string{"b.pdf"})
	})
	t.Run("overwritten with the same size between listings", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL)
		v1, v2 := pdf("version-1", 2000), pdf("version-2", 2000)
		dav.write("report.pdf", v1)
		h.mustPoll()
		h.clock.advance(time.Minute)
		dav.write("report.pdf", v2)
		h.mustPoll()
		if n := len(h.received()); n != 0 {
			t.Fatalf("taken although the ETag changed between the listings")
		}
		h.mustPoll()
		got := h.received()
		if len(got) != 1 || got[0].SHA256 != sha(v2) {
			t.Fatalf("got %+v, want the second version once", got)
		}
	})
}

func TestNestedFolders(t *testing.T) {
	for _, recursive := range []bool{true, false} {
		t.Run(fmt.Sprintf("recursive=%v", recursive), func(t *testing.T) {
			dav := newDAV(t)
			h := newHarness(t, dav.URL, func(c *Config) { c.Recursive = recursive })
			dav.write("top.pdf", pdf("top", 100))
			dav.write("2026/11/deep.pdf", pdf("deep", 100))
			dav.write("2026/mid.pdf", pdf("mid", 100))
			dav.write(".hidden/secret.pdf", pdf("hidden", 100))
			dav.write("processed/old.pdf", pdf("old", 100)) // the post-action target is never watched
			h.settle()
			if recursive {
				equalStrings(t, "received", h.receivedPaths(), []string{"2026/11/deep.pdf", "2026/mid.pdf", "top.pdf"})
				equalStrings(t, "files", dav.files(), []string{".hidden/secret.pdf", "processed/2026/11/deep.pdf", "processed/2026/mid.pdf", "processed/old.pdf", "processed/top.pdf"})
			} else {
				equalStrings(t, "received", h.receivedPaths(), []string{"top.pdf"})
			}
		})
	}
}

func TestSpecialNames(t *testing.T) {
	dav := newDAV(t)
	h := newHarness(t, dav.URL, func(c *Config) { c.Recursive = true })
	names := []string{
		"with space.pdf",
		"Rechnung März Größe ß.pdf",
		"hash#1.pdf",
		"100% sure.pdf",
		"%41 not an A.pdf",
		"q?uery&a=b.pdf",
		"[brackets] {braces} (parens).pdf",
		"plus+semi;colon,comma'quote.pdf",
		"emoji 📄 日本語.pdf",
		strings.Repeat("long-", 50) + ".pdf",
		strings.Repeat("ü", 120) + ".pdf",
		"sub folder #2/ä 100%.pdf",
	}
	bodies := map[string][]byte{}
	for i, n := range names {
		bodies[n] = pdf(fmt.Sprint(i), 500+i)
		dav.write(n, bodies[n])
	}
	h.settle()
	got := h.received()
	if len(got) != len(names) {
		t.Fatalf("received %d of %d files: %q", len(got), len(names), h.receivedPaths())
	}
	for _, d := range got {
		if body, ok := bodies[d.Metadata["path"]]; !ok || d.SHA256 != sha(body) {
			t.Errorf("event for %q does not match a file", d.Metadata["path"])
		}
	}
	var want []string
	for _, n := range names {
		want = append(want, "processed/"+n)
	}
	sort.Strings(want)
	equalStrings(t, "files after the move", dav.files(), want)
}

// The watched folder's own name needs escaping too (Nextcloud folders are named by people).
func TestWatchedFolderWithSpecialName(t *testing.T) {
	dav := newDAV(t)
	if err := os.MkdirAll(dav.path("Scan Eingang ü#1"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, dav.URL+"Scan%20Eingang%20%C3%BC%231/")
	dav.write("Scan Eingang ü#1/a b.pdf", pdf("a", 100))
	h.settle()
	equalStrings(t, "received", h.receivedPaths(), []string{"a b.pdf"})
	equalStrings(t, "files", dav.files(), []string{"Scan Eingang ü#1/processed/a b.pdf"})
	if got := h.received()[0].Metadata["folder"]; got != dav.URL+"Scan%20Eingang%20%C3%BC%231/" {
		t.Fatalf("folder = %q", got)
	}
}

func TestMissingFolder(t *testing.T) {
	dav := newDAV(t)
	h := newHarness(t, dav.URL+"nope/")
	mustContain(t, h.poll(), "404", "no such folder")
}
