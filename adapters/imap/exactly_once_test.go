package imap_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	imapsrc "github.com/ingest-dev/ingest/adapters/imap"
	"github.com/ingest-dev/ingest/adapters/imap/mimewalk"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/lease"
)

// assertOnce checks that every mail's document was published exactly once: by intake's own
// count (a repeat JetStream would drop still counts there) and by the stream.
func (e *env) assertOnce(t *testing.T, want int) {
	t.Helper()
	if n := e.published(); n != want {
		t.Errorf("intake published %d received events, want exactly %d", n, want)
	}
	ids, names := map[string]bool{}, map[string]bool{}
	for _, d := range e.events.Received() {
		ids[d.DocumentID], names[d.Filename] = true, true
	}
	if len(ids) != want || len(names) != want || len(e.events.Received()) != want {
		t.Errorf("the stream holds %d received events for %d ids and %d files, want %d of each",
			len(e.events.Received()), len(ids), len(names), want)
	}
}

// waitAllSeen waits until every mail of the mailbox is \Seen.
func waitAllSeen(t *testing.T, addr, user, pass, mbox string, n int) {
	t.Helper()
	eventstest.WaitFor(t, 20*time.Second, fmt.Sprintf("%d mails marked seen", n), func() bool {
		ms := mailbox(t, addr, user, pass, mbox)
		seen := 0
		for _, m := range ms {
			if m.has(goimap.FlagSeen) {
				seen++
			}
		}
		return len(ms) == n && seen == n
	})
}

// TestTakeoverMidMailbox stops the instance holding the mailbox's lease in the middle of the
// mailbox; the standby takes over and finishes with nothing lost and nothing twice.
func TestTakeoverMidMailbox(t *testing.T) {
	const mails = 60
	e := newEnv(t)
	srv := startMemServer(t, memOptions{})
	for i := range mails {
		srv.appendMail(t, "INBOX", simple(fmt.Sprintf("m%02d", i)))
	}
	cfg := e.config(srv.addr)
	instance := func(owner string) (stop func()) {
		m, err := lease.New(context.Background(), lease.Config{Bus: e.bus, TTL: 1500 * time.Millisecond, Owner: owner})
		if err != nil {
			t.Fatal(err)
		}
		w, err := imapsrc.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Run(ctx, "imap-"+cfg.Name, func(ctx context.Context) {
				if err := w.Run(ctx); err != nil {
					t.Errorf("%s: Run: %v", owner, err)
				}
			})
		}()
		stop = func() { cancel(); wg.Wait() }
		t.Cleanup(stop)
		return stop
	}
	stopA := instance("a")
	e.waitReceived(8, 10*time.Second)
	instance("b") // stands by while a holds the lease
	stopA()
	if n := e.published(); n >= mails {
		t.Fatalf("the first instance finished the mailbox (%d documents) before it was stopped; the test proves nothing", n)
	}
	t.Logf("first instance stopped after %d documents", e.published())
	e.waitReceived(mails, 20*time.Second)
	waitAllSeen(t, srv.addr, testUser, testPass, "INBOX", mails)
	e.assertOnce(t, mails)
}

// TestUIDValidityReset recreates the mailbox with the same mails (a restore, a server move): the
// new UIDVALIDITY makes the watcher read everything again, and the record of what was ingested
// keeps it from announcing anything twice. The mails still get their post-action.
func TestUIDValidityReset(t *testing.T) {
	e := newEnv(t)
	srv := startMemServer(t, memOptions{})
	var raws [][]byte
	for i := range 5 {
		raws = append(raws, simple(fmt.Sprintf("old%d", i)))
	}
	// The same attachment bytes in a mail without a Message-ID: identified by its digest.
	raws = append(raws, []byte(strings.Replace(string(simple("noid")), "Message-ID: <noid@example.com>\r\n", "", 1)))
	for _, raw := range raws {
		srv.appendMail(t, "INBOX", raw)
	}
	cfg := e.config(srv.addr)
	a := start(t, cfg)
	e.waitReceived(len(raws), 10*time.Second)
	waitAllSeen(t, srv.addr, testUser, testPass, "INBOX", len(raws))
	a.stop()

	if err := srv.user.Delete("INBOX"); err != nil {
		t.Fatal(err)
	}
	if err := srv.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	for _, raw := range raws {
		srv.appendMail(t, "INBOX", raw) // unseen again
	}
	srv.appendMail(t, "INBOX", simple("new"))

	b := start(t, cfg)
	e.waitReceived(len(raws)+1, 10*time.Second)
	waitAllSeen(t, srv.addr, testUser, testPass, "INBOX", len(raws)+1)
	b.stop()
	e.assertOnce(t, len(raws)+1)
}

func TestMailOverLimitsIsRejectedAndTheMailboxGoesOn(t *testing.T) {
	many := message{subject: "Many parts", id: "many@x"}
	for i := range 6 {
		many.parts = append(many.parts, attachment{name: fmt.Sprintf("p%d.pdf", i), body: pdf(fmt.Sprintf("p%d", i), 500)})
	}
	tests := []struct {
		name   string
		limits mimewalk.Limits
		raw    []byte
	}{
		{"too many parts", mimewalk.Limits{MaxParts: 4}, many.build()},
		{"too large", mimewalk.Limits{MaxMessageBytes: 20000}, message{subject: "Large", id: "large@x",
			parts: []attachment{{name: "large.pdf", body: pdf("large", 30000)}}}.build()},
		{"part too large", mimewalk.Limits{MaxPartBytes: 10000}, message{subject: "Large part", id: "largepart@x",
			parts: []attachment{{name: "large.pdf", body: pdf("large", 15000)}}}.build()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			srv := startMemServer(t, memOptions{})
			srv.appendMail(t, "INBOX", tt.raw)
			srv.appendMail(t, "INBOX", simple("after"))
			cfg := e.config(srv.addr)
			cfg.Limits = tt.limits
			r := start(t, cfg)
			e.waitReceived(1, 10*time.Second)
			eventstest.WaitFor(t, 10*time.Second, "the rejection", func() bool { return len(e.events.Rejected()) == 1 })
			eventstest.WaitFor(t, 10*time.Second, "both mails handled", func() bool {
				ms := mailbox(t, srv.addr, testUser, testPass, "INBOX")
				return len(ms) == 2 && ms[0].has(imapsrc.RejectedKeyword) && ms[1].has(goimap.FlagSeen)
			})
			r.stop()

			rej := e.events.Rejected()[0]
			if rej.Reason != "limits" || rej.ObjectKey == "" || rej.Size != int64(len(tt.raw)) {
				t.Errorf("rejection %s: want reason limits with the %d raw bytes kept", jsonString(rej), len(tt.raw))
			}
			if got := blobSHA(t, e.bus, rej.ObjectKey); got != sha(tt.raw) {
				t.Errorf("the kept bytes are not the raw mail")
			}
			if rej.Metadata["uid"] != "1" || rej.Metadata["mailbox"] != "INBOX" {
				t.Errorf("rejection metadata %v", rej.Metadata)
			}
			ms := mailbox(t, srv.addr, testUser, testPass, "INBOX")
			if ms[0].has(goimap.FlagSeen) {
				t.Errorf("the rejected mail must stay unread for a person to see: %v", ms[0].flags)
			}
			if got := e.events.Received(); got[0].Filename != "after.pdf" {
				t.Errorf("received %q, want after.pdf", got[0].Filename)
			}
			if n := e.counter("ingest_imap_mails_rejected_total", nil); n != 1 {
				t.Errorf("rejected mails = %v", n)
			}
		})
	}
}

// TestConnectionCutMidFetch cuts the connection inside a FETCH literal, in the first batch (nothing
// processed yet) and in the second (the first batch done): the watcher reconnects and finishes
// with every document announced once.
func TestConnectionCutMidFetch(t *testing.T) {
	for _, at := range []int{3, 18} {
		t.Run(fmt.Sprintf("literal %d", at), func(t *testing.T) {
			const mails = 20
			e := newEnv(t)
			srv := startMemServer(t, memOptions{})
			for i := range mails {
				srv.appendMail(t, "INBOX", simple(fmt.Sprintf("c%02d", i)))
			}
			proxy := startCutProxy(t, srv.addr)
			proxy.cutAt(at)
			r := start(t, e.config(proxy.addr))
			e.waitReceived(mails, 20*time.Second)
			waitAllSeen(t, srv.addr, testUser, testPass, "INBOX", mails)
			r.stop()
			if proxy.cuts.Load() != 1 {
				t.Fatalf("the proxy cut %d connections, want 1", proxy.cuts.Load())
			}
			if n := e.counter("ingest_imap_reconnects_total", nil); n < 1 {
				t.Errorf("reconnects = %v, want ≥ 1", n)
			}
			e.assertOnce(t, mails)
		})
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func blobSHA(t *testing.T, bus *events.Bus, key string) string {
	t.Helper()
	r, _, err := bus.Blobs().Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Copies of one message (same Message-ID, same attachment) in one fetch batch are processed at the
// same time as the other mails, yet announced once: the copies wait for each other.
func TestCopiesInOneBatchAnnouncedOnce(t *testing.T) {
	e := newEnv(t)
	srv := startMemServer(t, memOptions{})
	copyOf := simple("copied")
	for i := range 8 {
		srv.appendMail(t, "INBOX", copyOf)
		if i%3 == 0 {
			srv.appendMail(t, "INBOX", simple(fmt.Sprintf("other%d", i)))
		}
	}
	r := start(t, e.config(srv.addr))
	waitAllSeen(t, srv.addr, testUser, testPass, "INBOX", 11)
	r.stop()
	e.assertOnce(t, 4)
	if n := e.published(); n != 4 {
		t.Fatalf("published %d documents, want 4 (one for the eight copies)", n)
	}
}
