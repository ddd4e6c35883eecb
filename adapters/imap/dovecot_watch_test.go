package imap_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/ingest-dev/ingest/events/eventstest"
)

func TestDovecotIdleDeliveryWithinASecond(t *testing.T) {
	d := startDovecot(t, dovecotOptions{})
	e := newEnv(t)
	cfg := e.config(d.addr)
	cfg.PollInterval, cfg.CatchUpInterval = time.Hour, time.Hour // only IDLE can be this quick
	r := start(t, cfg)
	r.waitHealthy(t)
	for i := range 3 {
		at := time.Now()
		d.appendMails(t, "INBOX", simple(fmt.Sprintf("idle-%d", i)))
		e.waitReceived(i+1, 2*time.Second)
		t.Logf("mail %d: received event %s after the APPEND", i, time.Since(at).Round(time.Millisecond))
	}
}

func TestDovecotRestartMidMailbox(t *testing.T) {
	const mails = 40
	d := startDovecot(t, dovecotOptions{})
	e := newEnv(t)
	var raws [][]byte
	for i := range mails {
		raws = append(raws, simple(fmt.Sprintf("d%02d", i)))
	}
	d.appendMails(t, "INBOX", raws...)
	cfg := e.config(d.addr)
	a := start(t, cfg)
	e.waitReceived(8, 10*time.Second)
	a.stop()
	if n := e.published(); n >= mails {
		t.Fatalf("the first watcher finished the mailbox (%d documents) before it was stopped; the test proves nothing", n)
	}
	t.Logf("first watcher stopped after %d documents", e.published())
	b := start(t, cfg)
	e.waitReceived(mails, 20*time.Second)
	waitAllSeen(t, d.addr, testUser, testPass, "INBOX", mails)
	b.stop()
	e.assertOnce(t, mails)
}

// TestDovecotUIDValidityReset deletes and recreates the watched mailbox under a running watcher,
// with the same mails and one more: only the new one is announced.
func TestDovecotUIDValidityReset(t *testing.T) {
	d := startDovecot(t, dovecotOptions{})
	e := newEnv(t)
	var raws [][]byte
	for i := range 5 {
		raws = append(raws, simple(fmt.Sprintf("v%d", i)))
	}
	d.appendMails(t, "Invoices", raws...)
	cfg := e.config(d.addr)
	cfg.Mailbox = "Invoices"
	cfg.CatchUpInterval = 500 * time.Millisecond // notices the new UIDVALIDITY even if Dovecot says nothing
	r := start(t, cfg)
	e.waitReceived(len(raws), 10*time.Second)
	waitAllSeen(t, d.addr, testUser, testPass, "Invoices", len(raws))

	c := login(t, d.addr, testUser, testPass)
	if err := c.Delete("Invoices").Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	d.appendMails(t, "Invoices", append(raws, simple("v-new"))...)
	e.waitReceived(len(raws)+1, 20*time.Second)
	waitAllSeen(t, d.addr, testUser, testPass, "Invoices", len(raws)+1)
	r.stop()
	e.assertOnce(t, len(raws)+1)
}

func TestDovecotPostActions(t *testing.T) {
	for _, tt := range postActionCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			caps := dovecotCapability
			if !tt.caps.Has("MOVE") {
				caps = strings.Replace(caps, " MOVE", "", 1)
			}
			if !tt.caps.Has("UIDPLUS") && !tt.caps.Has("IMAP4rev2") {
				caps = strings.Replace(caps, " UIDPLUS", "", 1)
			}
			d := startDovecot(t, dovecotOptions{capability: caps})
			e := newEnv(t)
			d.appendMails(t, "INBOX", message{subject: "Trash", id: "trash@x"}.build())
			markDeleted(t, d.addr, "Trash")
			d.appendMails(t, "INBOX", simple("Invoice"))
			cfg := e.config(d.addr)
			cfg.After = tt.after
			r := start(t, cfg)
			e.waitReceived(1, 10*time.Second)
			look := func() string {
				in := mailbox(t, d.addr, testUser, testPass, "INBOX")
				done := mailbox(t, d.addr, testUser, testPass, "Done")
				return first(tt.check(in, done), expect(in, "Trash", goimap.FlagDeleted))
			}
			eventstest.WaitFor(t, 10*time.Second, "the post-action", func() bool {
				return look() == "" && e.counter("ingest_imap_mails_seen_total", nil) == 2
			})
			r.stop()
			if problem := look(); problem != "" {
				t.Error(problem)
			}
			if n := e.published(); n != 1 {
				t.Errorf("published %d documents, want 1", n)
			}
		})
	}
}

// markDeleted flags the INBOX mail with this subject \Deleted, as a user's client does before
// it expunges.
func markDeleted(t *testing.T, addr, subject string) {
	t.Helper()
	for _, m := range mailbox(t, addr, testUser, testPass, "INBOX") {
		if m.subject == subject {
			c := login(t, addr, testUser, testPass)
			defer c.Close()
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			flags := &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}
			if err := c.Store(goimap.UIDSetNum(m.uid), flags, nil).Close(); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no mail %q", subject)
}

func TestDovecotConnectionCutMidFetch(t *testing.T) {
	const mails = 20
	d := startDovecot(t, dovecotOptions{})
	e := newEnv(t)
	var raws [][]byte
	for i := range mails {
		raws = append(raws, simple(fmt.Sprintf("cut%02d", i)))
	}
	d.appendMails(t, "INBOX", raws...)
	proxy := startCutProxy(t, d.addr)
	proxy.cutAt(18) // in the second FETCH: the first batch is done by then
	r := start(t, e.config(proxy.addr))
	e.waitReceived(mails, 20*time.Second)
	waitAllSeen(t, d.addr, testUser, testPass, "INBOX", mails)
	r.stop()
	if proxy.cuts.Load() != 1 {
		t.Fatalf("the proxy cut %d connections, want 1", proxy.cuts.Load())
	}
	e.assertOnce(t, mails)
}

// TestDovecotFilters runs the filter cases against Dovecot's own SEARCH (header decoding, CHARSET
// UTF-8 for the umlauts), which decides what is downloaded at all.
func TestDovecotFilters(t *testing.T) {
	for _, tt := range filterCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runFilterCase(t, startDovecot(t, dovecotOptions{}), tt.filters, tt.want)
		})
	}
}
