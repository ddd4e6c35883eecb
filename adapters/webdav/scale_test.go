package webdav

import (
	"fmt"
	"testing"
	"time"
)

// A folder of 10,000 files is listed in one PROPFIND, every file is tracked with the right size,
// and the ones wanted are taken. (Correctness only; BenchmarkPoll10000 measures.)
func TestTenThousandFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 files")
	}
	dav := newDAV(t)
	h := newHarness(t, dav.URL, func(c *Config) { c.After = AfterKeep; c.RequestTimeout = 2 * time.Minute })
	for i := range 10000 {
		dav.write(fmt.Sprintf("file-%05d.pdf", i), pdf(fmt.Sprint(i), 100+i%7))
	}
	h.mustPoll()
	if n := len(h.w.files); n != 10000 {
		t.Fatalf("tracking %d files, want 10000", n)
	}
	for i := range 10000 {
		o := h.w.files[fmt.Sprintf("file-%05d.pdf", i)]
		if o == nil || o.e.size != int64(100+i%7) || o.listings != 1 {
			t.Fatalf("file %d: %+v", i, o)
		}
	}
	if got, _ := dav.requests(); got["PROPFIND"] != 1 {
		t.Fatalf("requests %v, want a single PROPFIND", got)
	}
	// Take ten of them (taking all 10,000 is for the benchmark).
	h.w.filter.include = []string{"file-0000?.pdf"}
	h.clock.advance(time.Minute)
	h.mustPoll()
	equalStrings(t, "received", h.receivedPaths(), []string{
		"file-00000.pdf", "file-00001.pdf", "file-00002.pdf", "file-00003.pdf", "file-00004.pdf",
		"file-00005.pdf", "file-00006.pdf", "file-00007.pdf", "file-00008.pdf", "file-00009.pdf"})
}
