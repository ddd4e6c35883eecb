package webdav

import (
	"context"
	"os"
	"testing"
	"time"
)

// On a server whose collection ETags propagate (Nextcloud), an unchanged folder costs one
// PROPFIND Depth 0, and a change deep down lists only the folders on its way.
func TestCheapPollsWithPropagatingETags(t *testing.T) {
	dav := newDAV(t, withDirETags("propagating"))
	h := newHarness(t, dav.URL, func(c *Config) { c.Recursive = true; c.After = AfterKeep })
	dav.write("a.pdf", pdf("a", 100))
	dav.write("x/b.pdf", pdf("b", 100))
	dav.write("y/c.pdf", pdf("c", 100))
	dav.write("y/deep/d.pdf", pdf("d", 100))
	h.settle() // polls 1 (full) and 2
	if n := len(h.received()); n != 4 {
		t.Fatalf("%d documents, want 4", n)
	}
	dav.requests()

	h.mustPoll() // poll 3: nothing changed
	if got, _ := dav.requests(); got["PROPFIND"] != 1 || len(got) != 1 {
		t.Fatalf("an unchanged folder took %v, want one PROPFIND", got)
	}

	dav.write("y/deep/e.pdf", pdf("e", 100))
	h.mustPoll() // poll 4: probe, then root, y, y/deep; x is skipped
	if got, _ := dav.requests(); got["PROPFIND"] != 4 {
		t.Fatalf("a change in y/deep took %v, want 4 PROPFINDs (probe, /, y, y/deep)", got)
	}
	h.clock.advance(time.Minute)
	h.mustPoll() // poll 5: unchanged again; the new file is seen a second time and taken
	if got, _ := dav.requests(); got["PROPFIND"] != 1 || got["GET"] != 1 {
		t.Fatalf("poll 5 took %v, want one PROPFIND and one GET", got)
	}
	equalStrings(t, "received", h.receivedPaths(), []string{"a.pdf", "x/b.pdf", "y/c.pdf", "y/deep/d.pdf", "y/deep/e.pdf"})
	if h.w.nonPropagating {
		t.Fatal("a propagating server was taken for a non-propagating one")
	}
}

// A server whose collection ETag changes only with the collection's own entries (Apache-like)
// is found out: by a file that turned out to have changed under an unchanged folder ETag, or by
// the full listing every tenth poll. From then on every poll lists everything.
func TestNonPropagatingETagsAreDetected(t *testing.T) {
	t.Run("by a file that changed under an unchanged folder ETag", func(t *testing.T) {
		dav := newDAV(t, withDirETags("shallow"))
		h := newHarness(t, dav.URL)
		full := pdf("growing", 10000)
		dav.write("scan.pdf", full[:4000])
		h.mustPoll() // full listing
		h.mustPoll() // probe: unchanged; the file is seen twice but too young
		dav.appendTo("scan.pdf", full[4000:])
		h.clock.advance(time.Minute)
		// The probe says nothing changed, the GET (If-Match the old ETag) says otherwise.
		h.mustPoll()
		if n := len(h.received()); n != 0 {
			t.Fatal("the partial file was taken")
		}
		if !h.w.nonPropagating {
			t.Fatal("not detected")
		}
		h.mustPoll()
		h.mustPoll()
		if got := h.received(); len(got) != 1 || got[0].SHA256 != sha(full) {
			t.Fatalf("got %+v, want the whole file once", got)
		}
	})
	t.Run("by the verifying full listing", func(t *testing.T) {
		dav := newDAV(t, withDirETags("shallow"))
		h := newHarness(t, dav.URL, func(c *Config) { c.After = AfterKeep })
		dav.write("kept.pdf", pdf("kept", 1000))
		h.settle() // polls 1, 2
		dav.appendTo("kept.pdf", []byte("edited in place"))
		for h.w.polls < verifyEvery-1 {
			h.mustPoll()
			if h.w.nonPropagating {
				t.Fatalf("detected at poll %d already, without evidence", h.w.polls)
			}
		}
		dav.requests()
		h.mustPoll() // the tenth: lists everything
		if !h.w.nonPropagating {
			t.Fatal("not detected by the full listing")
		}
		h.mustPoll()
		if got, _ := dav.requests(); got["PROPFIND"] != 2 {
			t.Fatalf("requests %v: after detection every poll lists (one PROPFIND Depth 1 here)", got)
		}
		if n := len(h.received()); n != 1 {
			t.Fatalf("%d documents; the edited kept file is not taken again without reingest_on_change", n)
		}
	})
}

// With oc:fileid a kept file that is renamed is the same file; without, the new name is a new
// file.
func TestFileIDIdentityAcrossRenames(t *testing.T) {
	for _, withIDs := range []bool{true, false} {
		name := map[bool]string{true: "with fileid", false: "path only"}[withIDs]
		t.Run(name, func(t *testing.T) {
			var opts []davOption
			if withIDs {
				opts = append(opts, withFileIDs())
			}
			dav := newDAV(t, opts...)
			h := newHarness(t, dav.URL, func(c *Config) { c.After = AfterKeep })
			dav.write("a.pdf", pdf("a", 100))
			h.settle()
			first := h.received()
			if len(first) != 1 || withIDs && first[0].Metadata["fileid"] == "" {
				t.Fatalf("first = %+v", first)
			}
			if err := os.Rename(dav.path("a.pdf"), dav.path("renamed.pdf")); err != nil {
				t.Fatal(err)
			}
			h.settle()
			h.settle()
			n := len(h.received())
			if withIDs && n != 1 {
				t.Fatalf("%d documents: a renamed file with the same fileid was taken again", n)
			}
			if !withIDs && n != 2 {
				t.Fatalf("%d documents: without fileid the renamed file is a new path and is taken", n)
			}
			// The record of a.pdf is forgotten once the file is gone (path identity), kept while
			// its id is still there.
			_, found, err := h.w.seen.get(context.Background(), "path:a.pdf")
			if err != nil || found {
				t.Fatalf("record of the vanished path: found=%v err=%v", found, err)
			}
		})
	}
}
