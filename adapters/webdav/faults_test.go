package webdav

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// Whatever the server does wrong, and wherever, no file is lost and none is announced twice: the
// failing poll says what happened, and the next one goes through.
func TestServerFaultsLoseNothing(t *testing.T) {
	cases := []struct {
		name  string
		fault func(d *davServer) fault
		want  string // in the failing poll's error
		// announced: the documents are announced despite the fault (it hits the post-action).
		announced bool
	}{
		{"500 listing the folder", func(*davServer) fault { return failNth("PROPFIND", "", 500, 1000) }, "500 Internal Server Error", false},
		{"507 listing the folder", func(*davServer) fault { return failNth("PROPFIND", "", 507, 1000) }, "out of storage", false},
		{"500 listing a subfolder only", func(*davServer) fault { return failNth("PROPFIND", "/sub/", 500, 1000) }, "sub/", false},
		{"listing times out", func(d *davServer) fault { return d.hang("PROPFIND") }, "no answer within 500ms", false},
		{"listing cut off in the middle", func(d *davServer) fault { return cutShort(d.handler, "PROPFIND") }, "truncated", false},
		{"500 on GET", func(*davServer) fault { return failNth("GET", "", 500, 1000) }, "500 Internal Server Error", false},
		{"GET times out", func(d *davServer) fault { return d.hang("GET") }, "no answer within", false},
		{"507 on MOVE", func(*davServer) fault { return failNth("MOVE", "", 507, 1000) }, "stays in the folder", true},
		{"500 on MKCOL", func(*davServer) fault { return failNth("MKCOL", "", 500, 1000) }, "create folder processed", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dav := newDAV(t)
			h := newHarness(t, dav.URL, func(cfg *Config) { cfg.Recursive = true; cfg.RequestTimeout = 500 * time.Millisecond })
			a, b := pdf("a", 2000), pdf("b", 3000)
			dav.write("a.pdf", a)
			dav.write("sub/b.pdf", b)
			// Both files are seen once before the server starts failing.
			h.mustPoll()
			h.clock.advance(time.Minute)
			dav.setFault(c.fault(dav))
			for i := 0; i < 3; i++ {
				err := h.poll()
				mustContain(t, err, c.want)
				if h.w.Health() == nil {
					t.Fatal("Health is nil during failing polls")
				}
			}
			n := len(h.received())
			if c.announced && n != 2 || !c.announced && n > 1 {
				t.Fatalf("%d documents announced during the fault", n)
			}
			dav.clearFault()
			h.settle()
			if err := h.w.Health(); err != nil {
				t.Fatalf("Health after recovery = %v", err)
			}
			got := h.received()
			if len(got) != 2 {
				t.Fatalf("%d documents after recovery, want 2", len(got))
			}
			for _, d := range got {
				want := map[string][]byte{"a.pdf": a, "sub/b.pdf": b}[d.Metadata["path"]]
				if d.SHA256 != sha(want) {
					t.Errorf("%s: wrong bytes", d.Metadata["path"])
				}
			}
			equalStrings(t, "files", dav.files(), []string{"processed/a.pdf", "processed/sub/b.pdf"})
		})
	}
}

// A failed subfolder listing neither loses its files nor holds up the rest.
func TestFailingSubfolderDoesNotHoldUpOthers(t *testing.T) {
	dav := newDAV(t)
	h := newHarness(t, dav.URL, func(c *Config) { c.Recursive = true })
	dav.write("a.pdf", pdf("a", 100))
	dav.write("sub/b.pdf", pdf("b", 100))
	h.mustPoll()
	h.clock.advance(time.Minute)
	dav.setFault(failNth("PROPFIND", "/sub/", 500, 1))
	mustContain(t, h.poll(), "sub/")
	equalStrings(t, "received while sub/ fails", h.receivedPaths(), []string{"a.pdf"})
	h.mustPoll()
	equalStrings(t, "received after", h.receivedPaths(), []string{"a.pdf", "sub/b.pdf"})
}

func TestRestartAnnouncesNothingTwice(t *testing.T) {
	t.Run("kept files", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL, func(c *Config) { c.After = AfterKeep })
		dav.write("a.pdf", pdf("a", 100))
		dav.write("b.pdf", pdf("b", 100))
		h.settle()
		h.w = h.newWatcher()
		h.settle()
		h.settle()
		if n := len(h.received()); n != 2 {
			t.Fatalf("%d events after a restart, want 2", n)
		}
	})
	t.Run("crash between the PubAck and the bookkeeping", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL)
		body := pdf("a", 100)
		dav.write("a.pdf", body)
		h.w.hooks.afterAnnounce = func(string) error { return errors.New("simulated crash") }
		h.mustPoll()
		h.clock.advance(time.Minute)
		mustContain(t, h.poll(), "simulated crash")
		if n := len(h.received()); n != 1 {
			t.Fatalf("%d events before the restart, want 1", n)
		}
		equalStrings(t, "files before the restart", dav.files(), []string{"a.pdf"})

		h.w = h.newWatcher()
		h.settle()
		got := h.received()
		if len(got) != 1 || got[0].SHA256 != sha(body) {
			t.Fatalf("%d events after the restart, want the one from before", len(got))
		}
		equalStrings(t, "files after the restart", dav.files(), []string{"processed/a.pdf"})
	})
	t.Run("move failed, then restart", func(t *testing.T) {
		dav := newDAV(t)
		h := newHarness(t, dav.URL)
		dav.write("a.pdf", pdf("a", 100))
		dav.setFault(failNth("MOVE", "", 500, 1000))
		h.mustPoll()
		h.clock.advance(time.Minute)
		mustContain(t, h.poll(), "stays in the folder")
		dav.clearFault()
		h.w = h.newWatcher()
		h.settle()
		if n := len(h.received()); n != 1 {
			t.Fatalf("%d events, want 1", n)
		}
		equalStrings(t, "files", dav.files(), []string{"processed/a.pdf"})
	})
}

// A server (or something in between) answering PROPFIND with an endless body: the poll fails
// with a clear error after a bounded read.
func TestListingBombOverHTTP(t *testing.T) {
	var sent atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusMultiStatus)
		g := &generator{head: `<d:multistatus xmlns:d="DAV:"><d:response><d:href>/dav/inbox/`, filler: "aaaaaaaa", size: 100 << 20}
		n, _ := io.Copy(w, g)
		sent.Store(n)
	}))
	h := newHarness(t, srv.URL+"/dav/inbox/")
	start := time.Now()
	err := h.poll()
	mustContain(t, err, "list "+srv.URL+"/dav/inbox/", "larger than 256 KiB")
	t.Logf("%v after %s", err, time.Since(start).Round(time.Millisecond))
	srv.Close() // waits for the handler, which stops when the client hangs up
	if n := sent.Load(); n >= 100<<20 || n == 0 {
		t.Fatalf("the server could send %d bytes; the client should hang up early", n)
	} else {
		t.Logf("the server got %s out before the client hung up", fmtBytes(n))
	}
}
