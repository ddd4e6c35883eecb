package imap_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	imapsrc "github.com/ingest-dev/ingest/adapters/imap"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
)

func TestHappyPathTwoPDFs(t *testing.T) {
	e := newEnv(t)
	srv := startMemServer(t, memOptions{})
	raw := message{from: "Billing <billing@acme.example>", subject: "Invoices 11/2026", id: "inv-1@acme.example",
		parts: []attachment{
			{name: "invoice-1.pdf", ctype: "application/pdf", body: pdf("one", 3000)},
			// A PDF the sender declared as octet-stream: the type is sniffed.
			{name: "invoice-2.pdf", body: pdf("two", 5000)},
		}}.build()
	srv.appendMail(t, "INBOX", raw)

	cfg := e.config(srv.addr)
	cfg.Vendors, cfg.Route = []string{"gini"}, ""
	r := start(t, cfg)
	got := e.waitReceived(2, 10*time.Second)
	eventstest.WaitFor(t, 5*time.Second, "the mail to be marked seen", func() bool {
		m := mailbox(t, srv.addr, testUser, testPass, "INBOX")
		return len(m) == 1 && m[0].has(goimap.FlagSeen)
	})
	r.stop()

	if len(got) != 2 {
		t.Fatalf("got %d received events, want 2: %s", len(got), jsonString(got))
	}
	slices.SortFunc(got, func(a, b events.ReceivedData) int { return strings.Compare(a.Filename, b.Filename) })
	sel := mailbox(t, srv.addr, testUser, testPass, "INBOX")
	for i, d := range got {
		want := map[string]string{
			"account": testUser, "mailbox": "INBOX", "uid": strconv.Itoa(int(sel[0].uid)),
			"message_id": "inv-1@acme.example", "from": "Billing <billing@acme.example>", "to": testUser,
			"subject": "Invoices 11/2026", "date": "2026-11-27T09:00:00Z",
			"attachment_index": strconv.Itoa(i + 1), "filename": "invoice-" + strconv.Itoa(i+1) + ".pdf",
		}
		for k, v := range want {
			if d.Metadata[k] != v {
				t.Errorf("document %d: metadata %s = %q, want %q (all: %v)", i, k, d.Metadata[k], v, d.Metadata)
			}
		}
		if d.Metadata["uidvalidity"] == "" || d.Metadata["group"] == "" {
			t.Errorf("document %d: uidvalidity and group must be set: %v", i, d.Metadata)
		}
		if d.ContentType != "application/pdf" || d.Source != (events.SourceRef{Kind: "imap", Name: "mail"}) {
			t.Errorf("document %d: content type %q, source %+v", i, d.ContentType, d.Source)
		}
		if !slices.Equal(d.Vendors, []string{"gini"}) {
			t.Errorf("document %d: vendors %v, want [gini]", i, d.Vendors)
		}
	}
	if got[0].Metadata["group"] != got[1].Metadata["group"] {
		t.Errorf("the documents of one mail must share their group: %q vs %q", got[0].Metadata["group"], got[1].Metadata["group"])
	}
	// The bytes are those of the attachments.
	for i, want := range [][]byte{pdf("one", 3000), pdf("two", 5000)} {
		if got[i].Size != int64(len(want)) {
			t.Errorf("document %d: size %d, want %d", i, got[i].Size, len(want))
		}
	}
	if n := e.published(); n != 2 {
		t.Errorf("intake published %d received events, want 2", n)
	}
	if n := e.counter("ingest_imap_mails_processed_total", map[string]string{"source": "mail"}); n != 1 {
		t.Errorf("mails processed = %v, want 1", n)
	}
}

func TestNewMailDuringIdleArrivesWithinASecond(t *testing.T) {
	e := newEnv(t)
	srv := startMemServer(t, memOptions{})
	cfg := e.config(srv.addr)
	cfg.PollInterval = time.Hour // so only IDLE can explain a quick delivery
	cfg.CatchUpInterval = time.Hour
	r := start(t, cfg)
	r.waitHealthy(t)

	for i := range 3 {
		select {
		case <-srv.idling:
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher never went into IDLE")
		}
		at := time.Now()
		srv.appendMail(t, "INBOX", simple("idle-"+strconv.Itoa(i)))
		e.waitReceived(i+1, 2*time.Second)
		t.Logf("mail %d: received event %s after APPEND", i, time.Since(at).Round(time.Millisecond))
	}
}

func TestPollingWithoutIdle(t *testing.T) {
	e := newEnv(t)
	srv := startMemServer(t, memOptions{})
	cfg := e.config(srv.addr)
	cfg.NoIdle = true
	cfg.PollInterval = 100 * time.Millisecond
	r := start(t, cfg)
	r.waitHealthy(t)
	srv.appendMail(t, "INBOX", simple("polled"))
	got := e.waitReceived(1, 5*time.Second)
	if got[0].Filename != "polled.pdf" {
		t.Errorf("filename %q", got[0].Filename)
	}
}

func TestConfigErrors(t *testing.T) {
	e := newEnv(t)
	base := e.config("127.0.0.1:1")
	tests := []struct {
		name   string
		change func(*imapsrc.Config)
		want   string
	}{
		{"bad name", func(c *imapsrc.Config) { c.Name = "Mail Box" }, "name"},
		{"no host", func(c *imapsrc.Config) { c.Host = "" }, "host: is required"},
		{"plaintext to a remote server", func(c *imapsrc.Config) { c.Host = "imap.example.com" }, "clear text"},
		{"unknown tls", func(c *imapsrc.Config) { c.TLS = "ssl" }, "tls: must be"},
		{"no secret", func(c *imapsrc.Config) { c.Password = "" }, "password or oauth2"},
		{"move without folder", func(c *imapsrc.Config) { c.After = imapsrc.After{Action: "move"} }, "needs a folder"},
		{"flag without keyword", func(c *imapsrc.Config) { c.After = imapsrc.After{Action: "flag"} }, "needs a keyword"},
		{"unknown action", func(c *imapsrc.Config) { c.After = imapsrc.After{Action: "archive"} }, "after: must be"},
		{"idle restart too long", func(c *imapsrc.Config) { c.IdleRestart = 30 * time.Minute }, "idle_restart"},
		{"bad glob", func(c *imapsrc.Config) { c.Filters.Filenames = []string{"[x"} }, "not a valid glob"},
		{"two token sources", func(c *imapsrc.Config) {
			c.OAuth2 = &imapsrc.OAuth2{TokenFile: "/x", TokenURL: "http://x"}
		}, "exactly one"},
		{"refresh flow without client", func(c *imapsrc.Config) {
			c.OAuth2 = &imapsrc.OAuth2{TokenURL: "http://x", RefreshToken: "r"}
		}, "client_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.change(&cfg)
			_, err := imapsrc.New(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// TestIdleIsRestarted: IDLE is re-issued every IdleRestart, which keeps NAT state and proves the
// link; the watcher stays healthy through it.
func TestIdleIsRestarted(t *testing.T) {
	e := newEnv(t)
	srv := startMemServer(t, memOptions{})
	cfg := e.config(srv.addr)
	cfg.IdleRestart = 100 * time.Millisecond
	r := start(t, cfg)
	eventstest.WaitFor(t, 5*time.Second, "four IDLE commands", func() bool { return srv.idles.Load() >= 4 })
	if err := r.w.Health(); err != nil {
		t.Errorf("Health = %v", err)
	}
	srv.appendMail(t, "INBOX", simple("after-restarts"))
	e.waitReceived(1, 2*time.Second)
}

// waitHealthError waits until Health reports an error containing want.
func waitHealthError(t *testing.T, r *running, want string) {
	t.Helper()
	eventstest.WaitFor(t, 10*time.Second, "Health to report "+want, func() bool {
		err := r.w.Health()
		return err != nil && strings.Contains(err.Error(), want)
	})
}

// TestBodyEMLAndMailsWithoutDocuments: IncludeBody makes the text body a document, IncludeEML
// the whole message; without them a mail with no attachment is left as it is (unread).
func TestBodyEMLAndMailsWithoutDocuments(t *testing.T) {
	plain := message{subject: "Just text", id: "text@x", text: "Betrag: 24,99 EUR"}.build()
	withPDF := simple("with-pdf")
	tests := []struct {
		name      string
		body, eml bool
		wantFiles []string // of the received documents, sorted
		wantSeen  []bool   // plain, withPDF
	}{
		{"attachments only", false, false, []string{"with-pdf.pdf"}, []bool{false, true}},
		{"with the body", true, false, []string{"document-", "document-", "with-pdf.pdf"}, []bool{true, true}},
		{"with the message", false, true, []string{"Just text.eml", "with-pdf.eml", "with-pdf.pdf"}, []bool{true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			srv := startMemServer(t, memOptions{})
			srv.appendMail(t, "INBOX", plain)
			srv.appendMail(t, "INBOX", withPDF)
			cfg := e.config(srv.addr)
			cfg.IncludeBody, cfg.IncludeEML = tt.body, tt.eml
			r := start(t, cfg)
			got := e.waitReceived(len(tt.wantFiles), 10*time.Second)
			eventstest.WaitFor(t, 10*time.Second, "both mails handled", func() bool {
				return e.counter("ingest_imap_mails_seen_total", nil) == 2
			})
			r.stop()
			var files []string
			for _, d := range got {
				name := d.Filename
				if strings.HasPrefix(name, "document-") {
					name = "document-" // an unnamed body part is named after its id
				}
				files = append(files, name)
				switch {
				case strings.HasSuffix(d.Filename, ".eml"):
					if !strings.HasPrefix(d.ContentType, "text/plain") || d.Metadata["part_kind"] != "eml" {
						t.Errorf("the .eml document: %s", jsonString(d))
					}
					if d.Filename == "Just text.eml" && d.Size != int64(len(plain)) {
						t.Errorf("the .eml is %d bytes, the message %d", d.Size, len(plain))
					}
				case strings.HasPrefix(d.Filename, "document-"):
					if !strings.HasPrefix(d.ContentType, "text/plain") || d.Metadata["part_kind"] != "body" {
						t.Errorf("the body document: %s", jsonString(d))
					}
				}
			}
			slices.Sort(files)
			if !slices.Equal(files, tt.wantFiles) {
				t.Errorf("documents %q, want %q", files, tt.wantFiles)
			}
			ms := mailbox(t, srv.addr, testUser, testPass, "INBOX")
			for i, want := range tt.wantSeen {
				if ms[i].has(goimap.FlagSeen) != want {
					t.Errorf("mail %q: seen %v, want %v", ms[i].subject, !want, want)
				}
			}
		})
	}
}

// TestDamagedMailIsRejected: an attachment whose base64 is garbage cannot be read; with nothing
// else in the mail, the mail is rejected with its raw bytes and flagged, and the next one goes on.
func TestDamagedMailIsRejected(t *testing.T) {
	e := newEnv(t)
	srv := startMemServer(t, memOptions{})
	damaged := []byte("From: a@example.com\r\nSubject: damaged\r\nMessage-ID: <damaged@x>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n!!!! this is not base64 at all ****\r\n--b--\r\n")
	srv.appendMail(t, "INBOX", damaged)
	srv.appendMail(t, "INBOX", simple("fine"))
	r := start(t, e.config(srv.addr))
	e.waitReceived(1, 10*time.Second)
	eventstest.WaitFor(t, 10*time.Second, "the rejection", func() bool { return len(e.events.Rejected()) == 1 })
	eventstest.WaitFor(t, 10*time.Second, "the flag", func() bool {
		return mailbox(t, srv.addr, testUser, testPass, "INBOX")[0].has(imapsrc.RejectedKeyword)
	})
	r.stop()
	rej := e.events.Rejected()[0]
	if rej.Reason != "malformed" || !strings.Contains(rej.Detail, "x.pdf") || rej.Size != int64(len(damaged)) {
		t.Errorf("rejection %s: want malformed, naming x.pdf, with the raw mail kept", jsonString(rej))
	}
}

// TestConnectionFailureIsLoggedOnce: a server that is away gives one warning, not one per retry,
// and Health says what is wrong.
func TestConnectionFailureIsLoggedOnce(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(fmt.Sprintf("127.0.0.1:%d", freePort(t))) // nothing listens there
	logs := &recorder{}
	cfg.Logger = slog.New(logs)
	r := start(t, cfg)
	eventstest.WaitFor(t, 10*time.Second, "three failed attempts", func() bool {
		return e.counter("ingest_imap_poll_errors_total", nil) >= 3
	})
	waitHealthError(t, r, "connection refused")
	r.stop()
	if n := logs.count(slog.LevelWarn, "mailbox connection failed"); n != 1 {
		t.Errorf("%d warnings for the same failure, want 1", n)
	}
}

// recorder is a slog handler that keeps the records.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func (r *recorder) count(level slog.Level, prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level == level && strings.HasPrefix(rec.Message, prefix) {
			n++
		}
	}
	return n
}

// Small document parts are kept from the planning walk and stored from memory; parts over the
// per-part or per-mail budget are read from the mail again. Either way every document has its
// own bytes, and the mail's documents are announced in the mail's order.
func TestPartsKeptAndPartsReadAgain(t *testing.T) {
	e := newEnv(t)
	srv := startMemServer(t, memOptions{})
	sizes := []int{3000, 600 << 10, 400 << 10, 500 << 10, 300 << 10} // kept, again (part), kept, kept, again (mail)
	var parts []attachment
	for i, size := range sizes {
		parts = append(parts, attachment{name: fmt.Sprintf("doc-%d.pdf", i+1), ctype: "application/pdf", body: pdf(strconv.Itoa(i+1), size)})
	}
	srv.appendMail(t, "INBOX", message{from: "a@example.com", subject: "five", id: "five@example.com", parts: parts}.build())
	cfg := e.config(srv.addr)
	r := start(t, cfg)
	got := e.waitReceived(len(sizes), 20*time.Second)
	r.stop()
	if len(got) != len(sizes) {
		t.Fatalf("got %d received events, want %d", len(got), len(sizes))
	}
	for i, d := range got {
		if want := fmt.Sprintf("doc-%d.pdf", i+1); d.Filename != want {
			t.Errorf("event %d is of %s, want %s: the mail's order", i, d.Filename, want)
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(d.Filename, "doc-"), ".pdf"))
		if err != nil {
			t.Fatal(err)
		}
		rd, _, err := e.bus.Blobs().Open(context.Background(), d.ObjectKey)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := io.ReadAll(rd)
		rd.Close()
		if err != nil || !bytes.Equal(stored, parts[n-1].body) {
			t.Errorf("%s: stored %d bytes (err %v), not the attachment's %d", d.Filename, len(stored), err, len(parts[n-1].body))
		}
	}
}
