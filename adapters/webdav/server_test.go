package webdav

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	xwebdav "golang.org/x/net/webdav"
)

// The test servers are golang.org/x/net/webdav's Handler on a real directory, behind Basic auth,
// with a hook that injects failures. propFS makes the same server look like Nextcloud where a
// test needs it: collection ETags (propagating or not) and oc:fileid, served as properties
// through the handler's own dead-property mechanism.

const (
	davUser = "scanner"
	davPass = "s3cret pass"
)

// fault handles a request instead of the server when it returns true.
type fault func(w http.ResponseWriter, r *http.Request) bool

type davServer struct {
	t     testing.TB
	dir   string // served directory; the watched folder is dir/inbox
	srv   *httptest.Server
	URL   string // the watched collection
	fault atomic.Pointer[fault]
	// handler is the x/net server itself, without auth and faults.
	handler http.Handler
	stop    chan struct{} // closed when the test ends

	mu     sync.Mutex
	counts map[string]int // requests by method
	bytes  int64          // response bytes of PROPFIND answers
}

type davOption func(*propFS)

// withDirETags gives collections an ETag: "propagating" changes with anything below (Nextcloud),
// "shallow" only with the collection's own modification time (Apache-like: a file that grows
// does not change it).
func withDirETags(mode string) davOption { return func(p *propFS) { p.dirETags = mode } }

// withFileIDs gives files an oc:fileid (their inode, which a rename keeps).
func withFileIDs() davOption { return func(p *propFS) { p.fileIDs = true } }

func newDAV(t testing.TB, opts ...davOption) *davServer {
	t.Helper()
	d := &davServer{t: t, dir: t.TempDir(), counts: map[string]int{}}
	if err := os.Mkdir(filepath.Join(d.dir, "inbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	pfs := &propFS{Dir: xwebdav.Dir(d.dir), dir: d.dir}
	for _, o := range opts {
		o(pfs)
	}
	var fsys xwebdav.FileSystem = xwebdav.Dir(d.dir)
	if pfs.dirETags != "" || pfs.fileIDs {
		fsys = pfs
	}
	h := &xwebdav.Handler{Prefix: "/dav", FileSystem: fsys, LockSystem: xwebdav.NewMemLS()}
	d.handler = h
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		d.counts[r.Method]++
		d.mu.Unlock()
		if u, p, ok := r.BasicAuth(); !ok || u != davUser || p != davPass {
			w.Header().Set("WWW-Authenticate", `Basic realm="dav"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		if f := d.fault.Load(); f != nil && (*f)(w, r) {
			return
		}
		cw := &countingWriter{ResponseWriter: w}
		h.ServeHTTP(cw, r)
		if r.Method == "PROPFIND" {
			d.mu.Lock()
			d.bytes += cw.n
			d.mu.Unlock()
		}
	}))
	t.Cleanup(d.srv.Close)
	d.stop = make(chan struct{})
	t.Cleanup(func() { close(d.stop) }) // runs first: hanging handlers let go
	d.URL = d.srv.URL + "/dav/inbox/"
	return d
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (d *davServer) setFault(f fault) { d.fault.Store(&f) }
func (d *davServer) clearFault()      { d.fault.Store(nil) }

// requests returns the request counts by method and the PROPFIND answer bytes, and resets them.
func (d *davServer) requests() (map[string]int, int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, b := d.counts, d.bytes
	d.counts, d.bytes = map[string]int{}, 0
	return c, b
}

// path is the file rel below the watched folder, on disk.
func (d *davServer) path(rel string) string {
	return filepath.Join(d.dir, "inbox", filepath.FromSlash(rel))
}

func (d *davServer) write(rel string, body []byte) {
	d.t.Helper()
	p := d.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(p, body, 0o644); err != nil {
		d.t.Fatal(err)
	}
}

func (d *davServer) appendTo(rel string, body []byte) {
	d.t.Helper()
	f, err := os.OpenFile(d.path(rel), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(body); err != nil {
		d.t.Fatal(err)
	}
}

func (d *davServer) exists(rel string) bool {
	_, err := os.Stat(d.path(rel))
	return err == nil
}

func (d *davServer) read(rel string) []byte {
	d.t.Helper()
	b, err := os.ReadFile(d.path(rel))
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

// files lists every file below the watched folder (relative paths, sorted).
func (d *davServer) files() []string {
	d.t.Helper()
	var out []string
	base := d.path("")
	err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			rel, _ := filepath.Rel(base, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		d.t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// --- faults ---

// failNth answers the first n requests of method (any path containing pathPart) with code.
func failNth(method, pathPart string, code, n int) fault {
	var left atomic.Int64
	left.Store(int64(n))
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != method || !bytes.Contains([]byte(r.URL.Path), []byte(pathPart)) || left.Add(-1) < 0 {
			return false
		}
		http.Error(w, "injected failure", code)
		return true
	}
}

// hang keeps requests of method waiting until the client gives up (or the test ends).
func (d *davServer) hang(method string) fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != method {
			return false
		}
		// The server notices a client hanging up only once the request body is read.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-d.stop:
		}
		return true
	}
}

// cutShort lets the server answer method, but sends only the first half of the body and then
// breaks the connection.
func cutShort(h http.Handler, method string) fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != method {
			return false
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		w.Header().Set("Content-Type", rec.Header().Get("Content-Type"))
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
}

// --- Nextcloud-like properties on the x/net server ---

type propFS struct {
	xwebdav.Dir
	dir      string
	dirETags string // "", "propagating", "shallow"
	fileIDs  bool
}

func (p *propFS) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (xwebdav.File, error) {
	f, err := p.Dir.OpenFile(ctx, name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &propFile{File: f, fs: p, name: name}, nil
}

func (p *propFS) disk(name string) string {
	return filepath.Join(p.dir, filepath.FromSlash(path.Clean("/"+name)))
}

type propFile struct {
	xwebdav.File
	fs   *propFS
	name string
}

var (
	propETag   = xml.Name{Space: "DAV:", Local: "getetag"}
	propFileID = xml.Name{Space: "http://owncloud.org/ns", Local: "fileid"}
)

func (f *propFile) DeadProps() (map[xml.Name]xwebdav.Property, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	props := map[xml.Name]xwebdav.Property{}
	switch {
	case fi.IsDir() && f.fs.dirETags == "shallow":
		props[propETag] = xwebdav.Property{XMLName: propETag, InnerXML: []byte(fmt.Sprintf(`"d%x"`, fi.ModTime().UnixNano()))}
	case fi.IsDir() && f.fs.dirETags == "propagating":
		h := sha256.New()
		err := filepath.WalkDir(f.fs.disk(f.name), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00%d\x00%d\n", p, info.Size(), info.ModTime().UnixNano())
			return nil
		})
		if err != nil {
			return nil, err
		}
		props[propETag] = xwebdav.Property{XMLName: propETag, InnerXML: []byte(`"` + hex.EncodeToString(h.Sum(nil)[:8]) + `"`)}
	case !fi.IsDir() && f.fs.fileIDs:
		if id, ok := inode(fi); ok {
			props[propFileID] = xwebdav.Property{XMLName: propFileID, InnerXML: []byte(strconv.FormatUint(id, 10))}
		}
	}
	return props, nil
}

func (f *propFile) Patch([]xwebdav.Proppatch) ([]xwebdav.Propstat, error) {
	return nil, errors.New("properties are read-only on this test server")
}
