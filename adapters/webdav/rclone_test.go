package webdav

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/testservers"
)

// These tests run the watcher against a WebDAV server no one here wrote: rclone serve webdav.

const rcloneBin = testservers.RcloneBin

// rcloneServer is `rclone serve webdav` on a temporary folder (internal/testservers).
type rcloneServer struct {
	*testservers.Rclone
	dir string
}

// startRclone starts rclone on a fresh folder and waits until it answers. Without rclone the test
// is skipped loudly, or fails when INGEST_REQUIRE_SERVERS is set (CI sets it).
func startRclone(t testing.TB) *rcloneServer {
	t.Helper()
	return startRcloneOn(t, t.TempDir())
}

// startRcloneOn serves dir.
func startRcloneOn(t testing.TB, dir string) *rcloneServer {
	t.Helper()
	return &rcloneServer{Rclone: testservers.StartRclone(t, dir, davUser, davPass), dir: dir}
}

func (s *rcloneServer) do(method, rel string, body io.Reader, hdr map[string]string) (*http.Response, error) {
	return s.Do(method, rel, body, hdr)
}

func (s *rcloneServer) put(rel string, body io.Reader) { s.Put(rel, body) }

func (s *rcloneServer) mkdirs(rel string) { s.Mkdirs(rel) }

func (s *rcloneServer) files() []string { return s.Files() }

func TestRcloneHappyPathWithMove(t *testing.T) {
	rc := startRclone(t)
	h := newHarness(t, rc.URL+"inbox/")
	rc.mkdirs("inbox")
	a, b := pdf("a", 20000), pdf("b", 30000)
	rc.put("inbox/a.pdf", bytes.NewReader(a))
	rc.put("inbox/b.pdf", bytes.NewReader(b))
	h.settle()
	got := h.received()
	if len(got) != 2 {
		t.Fatalf("%d documents, want 2", len(got))
	}
	for _, d := range got {
		want := map[string][]byte{"a.pdf": a, "b.pdf": b}[d.Metadata["path"]]
		if d.SHA256 != sha(want) || !strings.HasPrefix(d.Metadata["etag"], `"`) {
			t.Errorf("event %+v", d)
		}
	}
	equalStrings(t, "files", rc.files(), []string{"inbox/processed/a.pdf", "inbox/processed/b.pdf"})
	h.settle()
	if n := len(h.received()); n != 2 {
		t.Fatalf("%d documents after more polls", n)
	}
	// rclone gives collections no ETag: the watcher lists fully every poll.
	if e := h.w.tree[""]; e == nil || e.etag != "" {
		t.Fatalf("rclone gave the folder an ETag (%+v); update the notes on rclone", e)
	}
}

// rclone (1.60, --vfs-cache-mode off) keeps a file that is being uploaded out of its listings and
// holds PROPFIND answers on the folder until the upload ends: polls during a slow upload see
// nothing or time out. Either way the file is taken once, whole, after the upload.
func TestRcloneSlowWriter(t *testing.T) {
	rc := startRclone(t)
	h := newHarness(t, rc.URL, func(c *Config) { c.RequestTimeout = time.Second })
	full := pdf("slow", 192<<10)
	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	go func() {
		resp, err := rc.do(http.MethodPut, "slow.pdf", pr, nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				err = fmt.Errorf("PUT: %s", resp.Status)
			}
		}
		uploaded <- err
	}()
	const chunk = 64 << 10
	var held int
	for off := 0; off < len(full); off += chunk {
		// Write returns once the HTTP client has taken the chunk.
		if _, err := pw.Write(full[off : off+chunk]); err != nil {
			t.Fatal(err)
		}
		if err := h.poll(); err != nil {
			if !strings.Contains(err.Error(), "no answer within") {
				t.Fatalf("poll during the upload: %v", err)
			}
			held++
		}
		h.clock.advance(time.Hour)
		if n := len(h.received()); n != 0 {
			t.Fatalf("taken after %d of %d bytes", off+chunk, len(full))
		}
	}
	pw.Close()
	if err := <-uploaded; err != nil {
		t.Fatal(err)
	}
	h.settle()
	got := h.received()
	if len(got) != 1 || got[0].SHA256 != sha(full) {
		t.Fatalf("got %d events (%+v), want the whole file once", len(got), got)
	}
	t.Logf("%d of %d polls during the upload timed out (rclone holds the listing while a file uploads)", held, len(full)/chunk)
}

func TestRcloneSpecialNamesAndNestedFolders(t *testing.T) {
	rc := startRclone(t)
	h := newHarness(t, rc.URL, func(c *Config) { c.Recursive = true })
	names := []string{
		"with space.pdf", "Rechnung März ß.pdf", "hash#1.pdf", "100% sure.pdf", "q?uery&a=b.pdf",
		"[x] {y} (z)+;,'.pdf", "emoji 📄.pdf", strings.Repeat("long-", 45) + ".pdf",
		"2026/11/ä #2 100%.pdf", "deep/er/still deeper/x.pdf",
	}
	for i, n := range names {
		rc.put(n, bytes.NewReader(pdf(fmt.Sprint(i), 300+i)))
	}
	h.settle()
	want := slicesSorted(names)
	equalStrings(t, "received", h.receivedPaths(), want)
	var moved []string
	for _, n := range want {
		moved = append(moved, "processed/"+n)
	}
	equalStrings(t, "files", rc.files(), slicesSorted(moved))
}

func TestRcloneMoveConflict(t *testing.T) {
	rc := startRclone(t)
	h := newHarness(t, rc.URL)
	rc.put("processed/scan.pdf", bytes.NewReader(pdf("yesterday", 100)))
	rc.put("processed/scan-2.pdf", bytes.NewReader(pdf("the day before", 100)))
	today := pdf("today", 100)
	rc.put("scan.pdf", bytes.NewReader(today))
	h.settle()
	if n := len(h.received()); n != 1 {
		t.Fatalf("%d documents, want 1", n)
	}
	equalStrings(t, "files", rc.files(), []string{"processed/scan-2.pdf", "processed/scan-3.pdf", "processed/scan.pdf"})
	got, err := os.ReadFile(filepath.Join(rc.dir, "processed/scan-3.pdf"))
	if err != nil || !bytes.Equal(got, today) {
		t.Fatalf("processed/scan-3.pdf is not today's scan (%v)", err)
	}
}

func slicesSorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
