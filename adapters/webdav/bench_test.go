package webdav

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// BenchmarkPoll10000 measures one poll of a folder of 10,000 files the watcher already knows
// (the steady state of a kept folder): listing plus change detection, nothing to take. It
// reports requests and listing bytes per poll. "full-listing" is a server without collection
// ETags (x/net/webdav, rclone: one PROPFIND Depth 1 of everything); "propagating-etags" one
// whose collection ETags propagate (Nextcloud: one PROPFIND Depth 0); "rclone-serve" the watcher
// against rclone serve webdav of the same files; "rclone-lsjson" is `rclone lsjson` listing the
// x/net server, for comparison with another client.
func BenchmarkPoll10000(b *testing.B) {
	const n = 10000
	fill := func(write func(rel string, body []byte)) {
		for i := range n {
			write(fmt.Sprintf("file-%05d.pdf", i), pdf(fmt.Sprint(i), 100))
		}
	}
	steady := func(b *testing.B, url string) *harness {
		h := newHarness(b, url, func(c *Config) { c.After = AfterKeep; c.RequestTimeout = 5 * time.Minute })
		h.mustPoll()
		if len(h.w.files) != n {
			b.Fatalf("tracking %d files", len(h.w.files))
		}
		for _, o := range h.w.files {
			o.handled = true // as after they were all taken and kept
		}
		return h
	}
	run := func(b *testing.B, h *harness, requests func() (int, int64)) {
		requests()
		b.ResetTimer()
		for b.Loop() {
			h.mustPoll()
		}
		b.StopTimer()
		reqs, bytes := requests()
		b.ReportMetric(float64(reqs)/float64(b.N), "requests/poll")
		b.ReportMetric(float64(bytes)/float64(b.N), "listing-bytes/poll")
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
	}
	davRequests := func(d *davServer) func() (int, int64) {
		return func() (int, int64) {
			c, bytes := d.requests()
			total := 0
			for _, v := range c {
				total += v
			}
			return total, bytes
		}
	}

	b.Run("full-listing", func(b *testing.B) {
		dav := newDAV(b)
		fill(dav.write)
		h := steady(b, dav.URL)
		run(b, h, davRequests(dav))
	})
	b.Run("propagating-etags", func(b *testing.B) {
		dav := newDAV(b, withDirETags("propagating"))
		fill(dav.write)
		h := steady(b, dav.URL)
		h.mustPoll() // the second poll is the first that can use the probe
		run(b, h, davRequests(dav))
	})
	b.Run("rclone-serve", func(b *testing.B) {
		if _, err := os.Stat(rcloneBin); err != nil {
			b.Skip("no rclone")
		}
		dir := b.TempDir()
		fill(func(rel string, body []byte) {
			if err := os.WriteFile(dir+"/"+rel, body, 0o644); err != nil {
				b.Fatal(err)
			}
		})
		rc := startRcloneOn(b, dir)
		h := steady(b, rc.URL)
		// rclone's answers are not counted here: bytes are reported as 0.
		run(b, h, func() (int, int64) { return int(h.w.dav.requests.Swap(0)), 0 })
	})
	b.Run("rclone-lsjson", func(b *testing.B) {
		if _, err := os.Stat(rcloneBin); err != nil {
			b.Skip("no rclone")
		}
		dav := newDAV(b)
		fill(dav.write)
		obscured, err := exec.Command(rcloneBin, "obscure", davPass).Output()
		if err != nil {
			b.Fatal(err)
		}
		conf := b.TempDir() + "/rclone.conf"
		for b.Loop() {
			out, err := exec.Command(rcloneBin, "lsjson", ":webdav:", "--config", conf, "--webdav-url", dav.URL,
				"--webdav-user", davUser, "--webdav-pass", strings.TrimSpace(string(obscured))).Output()
			if err != nil {
				b.Fatalf("rclone lsjson: %v", err)
			}
			if c := strings.Count(string(out), `"Path"`); c != n {
				b.Fatalf("rclone lsjson listed %d entries", c)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "files/s")
	})
}

// BenchmarkIngest1000 takes 1,000 PDFs of 200 KiB from a folder into the store and announces
// them (GET, Object Store, PubAck, record, MOVE), and reports files/s and MB/s.
func BenchmarkIngest1000(b *testing.B) {
	const n, size = 1000, 200 << 10
	for b.Loop() {
		b.StopTimer()
		dav := newDAV(b)
		for i := range n {
			dav.write(fmt.Sprintf("doc-%04d.pdf", i), pdf(fmt.Sprint(i), size))
		}
		h := newHarness(b, dav.URL, func(c *Config) { c.RequestTimeout = 5 * time.Minute })
		h.mustPoll()
		h.clock.advance(time.Minute)
		b.StartTimer()
		start := time.Now()
		h.mustPoll()
		elapsed := time.Since(start)
		b.StopTimer()
		if got := len(h.received()); got != n {
			b.Fatalf("%d documents, want %d", got, n)
		}
		if files := dav.files(); len(files) != n || !strings.HasPrefix(files[0], "processed/") {
			b.Fatalf("%d files, first %q", len(files), files[0])
		}
		b.ReportMetric(float64(n)/elapsed.Seconds(), "files/s")
		b.ReportMetric(float64(n*size)/elapsed.Seconds()/1e6, "MB/s")
		b.StartTimer()
	}
}

// TestIngestRateLog takes 200 files of 200 KiB and logs the rate, so a plain `go test -v` run
// shows a number too (the benchmark has the 1,000-file figure).
func TestIngestRateLog(t *testing.T) {
	if testing.Short() {
		t.Skip("throughput")
	}
	const n, size = 200, 200 << 10
	dav := newDAV(t)
	for i := range n {
		dav.write(fmt.Sprintf("doc-%04d.pdf", i), pdf(fmt.Sprint(i), size))
	}
	h := newHarness(t, dav.URL, func(c *Config) { c.RequestTimeout = time.Minute })
	h.mustPoll()
	h.clock.advance(time.Minute)
	start := time.Now()
	ctx := context.Background()
	if err := h.w.pollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if got := len(h.received()); got != n {
		t.Fatalf("%d documents, want %d", got, n)
	}
	t.Logf("took %d files of %d KiB in %s: %.0f files/s, %.1f MB/s (slower under -race)", n, size>>10,
		elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), float64(n*size)/elapsed.Seconds()/1e6)
}
