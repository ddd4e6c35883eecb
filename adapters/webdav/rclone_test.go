package webdav

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events/eventstest"
)

// These tests run the watcher against a WebDAV server no one here wrote: rclone serve webdav.

const rcloneBin = "/usr/bin/rclone"

// rcloneServer is `rclone serve webdav` on a temporary folder.
type rcloneServer struct {
	t   testing.TB
	dir string // served folder
	URL string // root collection
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
	if _, err := os.Stat(rcloneBin); err != nil {
		msg := "\n\n!!! SKIPPING: " + rcloneBin + " is missing (" + err.Error() + ").\n" +
			"!!! This test proves the WebDAV watcher against a real server (rclone serve webdav); CI runs it.\n" +
			"!!! Install it with: apt-get install rclone\n\n"
		if os.Getenv("INGEST_REQUIRE_SERVERS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := []string{"serve", "webdav", dir, "--addr", addr, "--user", davUser, "--pass", davPass,
		"--config", filepath.Join(t.TempDir(), "rclone.conf")}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, rcloneBin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start rclone: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("rclone output:\n%s", logs.String())
		}
	})
	s := &rcloneServer{t: t, dir: dir, URL: "http://" + addr + "/"}
	eventstest.WaitFor(t, 30*time.Second, "rclone to answer on "+addr, func() bool {
		select {
		case <-exited:
			t.Fatalf("rclone exited: %s", logs.String())
		default:
		}
		resp, err := s.do("PROPFIND", "", nil, map[string]string{"Depth": "0"})
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusMultiStatus
	})
	return s
}

func (s *rcloneServer) do(method, rel string, body io.Reader, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequest(method, resourceURL(mustURL(s.URL), rel, strings.HasSuffix(rel, "/")), body)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(davUser, davPass)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return http.DefaultClient.Do(req)
}

// put uploads through WebDAV, as a scanner or a sync client would, creating folders first.
func (s *rcloneServer) put(rel string, body io.Reader) {
	s.t.Helper()
	if dir := parentRel(rel); dir != "" {
		s.mkdirs(dir)
	}
	resp, err := s.do(http.MethodPut, rel, body, nil)
	if err != nil {
		s.t.Fatalf("PUT %s: %v", rel, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.t.Fatalf("PUT %s: %s", rel, resp.Status)
	}
}

func (s *rcloneServer) mkdirs(rel string) {
	s.t.Helper()
	var cur string
	for _, seg := range strings.Split(rel, "/") {
		cur = joinRel(cur, seg)
		resp, err := s.do("MKCOL", cur+"/", nil, nil)
		if err != nil {
			s.t.Fatalf("MKCOL %s: %v", cur, err)
		}
		resp.Body.Close()
	}
}

// files lists the files below the served folder, on disk.
func (s *rcloneServer) files() []string {
	s.t.Helper()
	var out []string
	err := filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(s.dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		s.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

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
