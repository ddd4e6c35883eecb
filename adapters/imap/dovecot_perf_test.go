package imap_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/intake"
)

// TestDovecotPeakHeapForA50MiBAttachment ingests one mail with a 50 MiB PDF (68 MiB as base64)
// and logs the peak heap while it does. The literal is spooled to disk and every step streams,
// so the peak must stay far below the attachment's size.
func TestDovecotPeakHeapForA50MiBAttachment(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 68 MiB through IMAP and NATS")
	}
	const size = 50 << 20
	d := startDovecot(t, dovecotOptions{})
	func() { // the mail is built and sent before measuring; its bytes are garbage afterwards
		raw := message{subject: "big", id: "big@x", parts: []attachment{{name: "big.pdf", body: pdf("big", size)}}}.build()
		d.appendMails(t, "INBOX", raw)
	}()
	e := newEnv(t)
	cfg := e.config(d.addr)

	var got []events.ReceivedData
	began := time.Now()
	grew := peakHeap(func() {
		r := start(t, cfg)
		got = e.waitReceived(1, 2*time.Minute)
		r.stop()
	})
	took := time.Since(began)
	if got[0].Size != size {
		t.Fatalf("document of %d bytes, want %d", got[0].Size, size)
	}
	// For reference: the same bytes staged straight from memory into the Object Store. Most of
	// either peak is NATS (the client's window of asynchronous chunk publishes, the embedded
	// server's buffers), which grows the faster the source is.
	src := pdf("ref", size) // allocated before the measurement starts
	ref := peakHeap(func() {
		if _, err := e.intake.Stage(context.Background(), intake.NewDocumentID(), "ref.pdf", bytes.NewReader(src), size); err != nil {
			t.Fatal(err)
		}
	})
	runtime.KeepAlive(src)
	t.Logf("one mail with a 50 MiB PDF (68 MiB literal): received event after %s; peak heap +%.1f MiB "+
		"(intake.Stage of the bare 50 MiB into the embedded NATS: +%.1f MiB)",
		took.Round(time.Millisecond), float64(grew)/(1<<20), float64(ref)/(1<<20))
	// Holding the mail (68 MiB) or the decoded attachment (50 MiB) on top of NATS's share would
	// go well past this.
	if grew > 64<<20 {
		t.Errorf("peak heap +%d MiB: something holds the mail in memory", grew>>20)
	}
}

// peakHeap runs f and returns how far the heap grew above where it was before, at its peak.
func peakHeap(f func()) int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	peak := base
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
		}
	}()
	f()
	close(stop)
	<-done
	return int64(peak) - int64(base)
}

// BenchmarkIngestDovecot: 1,000 mails with a 200 KiB PDF each are APPENDed to a Dovecot folder
// (not timed); timed is a fresh watcher from its start until intake has the PubAck of all 1,000
// received events. Run with -benchtime=1x.
func BenchmarkIngestDovecot(b *testing.B) {
	const mails = 1000
	d := startDovecot(b, dovecotOptions{})
	raws := make([][]byte, mails)
	for i := range raws {
		s := fmt.Sprintf("bench-%04d", i)
		raws[i] = message{subject: s, id: s + "@x", parts: []attachment{{name: s + ".pdf", body: pdf(s, 200<<10)}}}.build()
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		folder := fmt.Sprintf("Bench%d", i)
		d.appendMails(b, folder, raws...)
		e := newEnv(b)
		cfg := e.config(d.addr)
		cfg.Mailbox = folder
		began := time.Now()
		b.StartTimer()
		r := start(b, cfg)
		eventstest.WaitFor(b, 10*time.Minute, "every document's PubAck", func() bool { return e.published() == mails })
		b.StopTimer()
		total += time.Since(began)
		r.stop()
	}
	b.ReportMetric(float64(mails*b.N)/total.Seconds(), "mails/s")
	b.ReportMetric(float64(mails*b.N)*200/1024/total.Seconds(), "MiB/s")

	// The ceiling for fetching over IMAP, in the same run: mbsync pulling the same mailbox into
	// a local Maildir.
	if _, err := exec.LookPath("mbsync"); err != nil {
		b.Log("mbsync not installed (Debian isync): no comparison")
		return
	}
	host, port, _ := net.SplitHostPort(d.addr)
	local := b.TempDir()
	rc := filepath.Join(local, "mbsyncrc")
	conf := fmt.Sprintf(`IMAPAccount bench
Host %s
Port %s
User %s
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account bench

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel pull
Far :remote:Bench0
Near :local:Bench0
Create Near
Sync Pull
SyncState *
`, host, port, testUser, testPass, local, local)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	out, err := exec.Command("mbsync", "-c", rc, "-q", "pull").CombinedOutput()
	if err != nil {
		b.Fatalf("mbsync: %v\n%s", err, out)
	}
	took := time.Since(began)
	files, _ := filepath.Glob(filepath.Join(local, "Bench0", "cur", "*"))
	newFiles, _ := filepath.Glob(filepath.Join(local, "Bench0", "new", "*"))
	if n := len(files) + len(newFiles); n != mails {
		b.Fatalf("mbsync pulled %d mails, want %d", n, mails)
	}
	b.ReportMetric(float64(mails)/took.Seconds(), "mbsync_mails/s")
	b.Logf("ingest: %s for %d mails; mbsync: %s", (total / time.Duration(b.N)).Round(time.Millisecond), mails, took.Round(time.Millisecond))
}
