package service_test

import (
	"bytes"
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/net/webdav"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
)

// A mailbox and a WebDAV folder in the configuration are watched: their documents arrive as
// received events of the right source.
func TestSourcesAreWatched(t *testing.T) {
	// A WebDAV folder holding a PDF saved a minute ago.
	dir := t.TempDir()
	pdfPath := filepath.Join(dir, "scan 1.pdf")
	if err := os.WriteFile(pdfPath, []byte("%PDF-1.7\nscanned"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	_ = os.Chtimes(pdfPath, old, old)
	dav := httptest.NewServer(&webdav.Handler{FileSystem: webdav.Dir(dir), LockSystem: webdav.NewMemLS()})
	defer dav.Close()

	// A mailbox with one mail carrying a PDF.
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("inbox@example.com", "pw")
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)
	mail := "From: a@example.com\r\nTo: inbox@example.com\r\nSubject: invoice\r\nMessage-ID: <m1@example.com>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" +
		"--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n\r\n%PDF-1.7 mailed\r\n--B--\r\n"
	if _, err := user.Append("INBOX", bytes.NewReader([]byte(mail)), &imapv2.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	imapSrv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imapv2.CapSet{imapv2.CapIMAP4rev1: {}, imapv2.CapIMAP4rev2: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go imapSrv.Serve(ln)
	defer imapSrv.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)

	cfg := testConfig(t)
	cfg.Sources.IMAP = []config.IMAPSource{{Name: "invoices", Host: "127.0.0.1", Port: p, TLS: "none", Username: "inbox@example.com", Password: "pw"}}
	cfg.Sources.WebDAV = []config.WebDAVSource{{Name: "scans", URL: dav.URL + "/", PollInterval: config.Duration(time.Second), MinAge: config.Duration(time.Millisecond)}}
	s := start(t, cfg)

	var mu sync.Mutex
	got := map[string]events.ReceivedData{}
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	go s.Bus().Follow(ctx, s.Bus().Names().KindSubjects(events.Received), true, func(m jetstream.Msg) {
		ev, _ := events.Decode(m.Data())
		var rd events.ReceivedData
		if ev.DecodeData(&rd) == nil {
			mu.Lock()
			got[rd.Source.Kind] = rd
			mu.Unlock()
		}
	})
	eventstest.WaitFor(t, 20*time.Second, "a document from each source", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	if m := got["imap"]; m.Filename != "invoice.pdf" || m.Source.Name != "invoices" || m.Metadata["subject"] != "invoice" {
		t.Errorf("imap document %+v", m)
	}
	if w := got["webdav"]; w.Filename != "scan 1.pdf" || w.Source.Name != "scans" {
		t.Errorf("webdav document %+v", w)
	}
	// The folder is tidied the default way: moved into processed/.
	eventstest.WaitFor(t, 10*time.Second, "the file to move", func() bool {
		_, err := os.Stat(filepath.Join(dir, "processed", "scan 1.pdf"))
		return err == nil
	})
}
