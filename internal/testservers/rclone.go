package testservers

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// RcloneBin is where Debian's rclone is.
const RcloneBin = "/usr/bin/rclone"

// Rclone is `rclone serve webdav` on a folder: a WebDAV server no one here wrote.
type Rclone struct {
	t          testing.TB
	Dir        string // the served folder
	URL        string // the root collection, with its trailing slash
	User, Pass string
}

// StartRclone serves dir with basic auth user/pass and waits until it answers.
func StartRclone(t testing.TB, dir, user, pass string) *Rclone {
	t.Helper()
	Require(t, RcloneBin, "a real WebDAV server (rclone serve webdav)", "rclone")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	args := []string{"serve", "webdav", dir, "--addr", addr, "--user", user, "--pass", pass,
		"--config", filepath.Join(t.TempDir(), "rclone.conf")}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, RcloneBin, args...)
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
	s := &Rclone{t: t, Dir: dir, URL: "http://" + addr + "/", User: user, Pass: pass}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("rclone exited: %s", logs.String())
		default:
		}
		resp, err := s.Do("PROPFIND", "", nil, map[string]string{"Depth": "0"})
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusMultiStatus {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rclone did not answer on %s within 30 s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Do sends a request for rel (a slash-separated path below the root; a trailing slash names a
// collection) with basic auth.
func (s *Rclone) Do(method, rel string, body io.Reader, hdr map[string]string) (*http.Response, error) {
	var segs []string
	for _, seg := range strings.Split(strings.Trim(rel, "/"), "/") {
		if seg != "" {
			segs = append(segs, url.PathEscape(seg))
		}
	}
	u := s.URL + strings.Join(segs, "/")
	if strings.HasSuffix(rel, "/") && len(segs) > 0 {
		u += "/"
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(s.User, s.Pass)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return http.DefaultClient.Do(req)
}

// Put uploads through WebDAV, as a scanner or a sync client would, creating folders first.
func (s *Rclone) Put(rel string, body io.Reader) {
	s.t.Helper()
	if i := strings.LastIndex(rel, "/"); i > 0 {
		s.Mkdirs(rel[:i])
	}
	resp, err := s.Do(http.MethodPut, rel, body, nil)
	if err != nil {
		s.t.Fatalf("PUT %s: %v", rel, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		s.t.Fatalf("PUT %s: %s", rel, resp.Status)
	}
}

// Mkdirs makes the collections of rel, one after the other.
func (s *Rclone) Mkdirs(rel string) {
	s.t.Helper()
	var cur string
	for _, seg := range strings.Split(rel, "/") {
		if cur == "" {
			cur = seg
		} else {
			cur += "/" + seg
		}
		resp, err := s.Do("MKCOL", cur+"/", nil, nil)
		if err != nil {
			s.t.Fatalf("MKCOL %s: %v", cur, err)
		}
		resp.Body.Close()
	}
}

// Files lists the files below the served folder, on disk.
func (s *Rclone) Files() []string {
	s.t.Helper()
	var out []string
	err := filepath.Walk(s.Dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			rel, _ := filepath.Rel(s.Dir, p)
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
