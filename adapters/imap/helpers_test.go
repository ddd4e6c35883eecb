package imap_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	imapsrc "github.com/ingest-dev/ingest/adapters/imap"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/intake"
	"github.com/ingest-dev/ingest/internal/metricstest"
)

const (
	testUser = "user@example.org"
	testPass = "secret"
)

// --- the backbone -------------------------------------------------------------------------------

// env is a test's NATS backbone with one intake shared by every watcher of the test, so that its
// counter tells how often a received event was really published.
type env struct {
	t      testing.TB
	bus    *events.Bus
	intake *intake.Intake
	reg    *prometheus.Registry
	events *collector
}

func newEnv(t testing.TB) *env {
	t.Helper()
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	reg := prometheus.NewRegistry()
	in, err := intake.New(intake.Config{Bus: bus, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, bus: bus, intake: in, reg: reg, events: follow(t, bus)}
}

// config is a watcher configuration against addr with the test's bus.
func (e *env) config(addr string) imapsrc.Config {
	host, port := splitAddr(e.t, addr)
	return imapsrc.Config{
		Name: "mail", Host: host, Port: port, TLS: imapsrc.TLSNone,
		Username: testUser, Password: testPass,
		Bus: e.bus, Intake: e.intake, Registerer: e.reg, Logger: testLogger(e.t),
	}
}

// published is how many received events intake published (repeats JetStream dropped included).
func (e *env) published() int { return int(e.counter("ingest_documents_received_total", nil)) }

// counter sums a counter family of the test's registry, over the series matching labels.
func (e *env) counter(name string, labels map[string]string) float64 {
	return metricstest.Counter(e.t, e.reg, name, labels)
}

// collector follows every document event of the stream.
type collector struct {
	mu       sync.Mutex
	received []events.ReceivedData
	rejected []events.RejectedData
}

func follow(t testing.TB, bus *events.Bus) *collector {
	c := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = bus.Follow(ctx, bus.Names().DocumentSubjects(), true, func(m jetstream.Msg) {
			ev, err := events.Decode(m.Data())
			if err != nil {
				return
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			switch ev.Kind() {
			case events.Received:
				var d events.ReceivedData
				if ev.DecodeData(&d) == nil {
					c.received = append(c.received, d)
				}
			case events.Rejected:
				var d events.RejectedData
				if ev.DecodeData(&d) == nil {
					c.rejected = append(c.rejected, d)
				}
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func (c *collector) Received() []events.ReceivedData {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.received)
}

func (c *collector) Rejected() []events.RejectedData {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.rejected)
}

// waitReceived waits until n received events are in the stream.
func (e *env) waitReceived(n int, within time.Duration) []events.ReceivedData {
	e.t.Helper()
	eventstest.WaitFor(e.t, within, fmt.Sprintf("%d received events", n), func() bool { return len(e.events.Received()) >= n })
	return e.events.Received()
}

// --- running watchers ---------------------------------------------------------------------------

type running struct {
	w    *imapsrc.Watcher
	stop func()
}

// start runs a watcher until stop (or the test's end).
func start(t testing.TB, cfg imapsrc.Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := imapsrc.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return within 10 s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return &running{w: w, stop: stop}
}

func (r *running) waitHealthy(t testing.TB) {
	t.Helper()
	eventstest.WaitFor(t, 10*time.Second, "the watcher to be connected", func() bool { return r.w.Health() == nil })
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("INGEST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// --- the in-memory IMAP server ------------------------------------------------------------------

type memServer struct {
	addr   string
	user   *imapmemserver.User
	idling chan struct{} // a session entered IDLE
	idles  *atomic.Int32 // IDLE commands so far
}

// flushingSession delivers, when IDLE starts, the updates queued since the last command.
// imapmemserver only sends what happens during the IDLE, so a mail appended just before it would
// wait for the next command; Dovecot and the other servers we know report it at once.
type flushingSession struct {
	imapserver.SessionIMAP4rev2
	idling chan struct{}
	idles  *atomic.Int32
}

func (s flushingSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if err := s.Poll(w, true); err != nil {
		return err
	}
	s.idles.Add(1)
	select {
	case s.idling <- struct{}{}:
	default:
	}
	return s.SessionIMAP4rev2.Idle(w, stop)
}

type memOptions struct {
	caps goimap.CapSet // default IMAP4rev1 + IMAP4rev2 (IDLE, MOVE, UIDPLUS)
	// tls offers STARTTLS (and then refuses to log in without it); with implicit, the listener
	// speaks TLS from the first byte instead.
	tls      *tls.Config
	implicit bool
	// wrap replaces each new session, for servers with their own SASL or quirks.
	wrap func(imapserver.SessionIMAP4rev2) imapserver.Session
}

func startMemServer(t testing.TB, opt memOptions) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(testUser, testPass)
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	idling := make(chan struct{}, 1)
	var idles atomic.Int32
	caps := opt.caps
	if caps == nil {
		caps = goimap.CapSet{goimap.CapIMAP4rev1: {}, goimap.CapIMAP4rev2: {}}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			var s imapserver.SessionIMAP4rev2 = flushingSession{mem.NewSession().(imapserver.SessionIMAP4rev2), idling, &idles}
			if opt.wrap != nil {
				return opt.wrap(s), nil, nil
			}
			return s, nil, nil
		},
		Caps:         caps,
		InsecureAuth: opt.tls == nil,
		TLSConfig:    opt.tls,
		Logger:       log.New(io.Discard, "", 0), // cut connections are the point of some tests
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if opt.implicit {
		ln = tls.NewListener(ln, opt.tls)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &memServer{addr: ln.Addr().String(), user: u, idling: idling, idles: &idles}
}

// mailServer is what the filter cases run against: imapmemserver or Dovecot.
type mailServer interface {
	address() string
	deliver(t testing.TB, mailbox string, raw []byte, flags ...goimap.Flag)
}

func (s *memServer) address() string { return s.addr }

func (s *memServer) deliver(t testing.TB, mailbox string, raw []byte, flags ...goimap.Flag) {
	t.Helper()
	s.appendMail(t, mailbox, raw, flags...)
}

// appendMail stores raw in mailbox, with flags and an arrival time.
func (s *memServer) appendMail(t testing.TB, mailbox string, raw []byte, flags ...goimap.Flag) {
	t.Helper()
	if _, err := s.user.Append(mailbox, bytes.NewReader(raw), &goimap.AppendOptions{Flags: flags, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

func splitAddr(t testing.TB, addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var p int
	fmt.Sscan(port, &p)
	return host, p
}

// --- looking at a mailbox through IMAP ----------------------------------------------------------

type msgState struct {
	uid     goimap.UID
	flags   []goimap.Flag
	subject string
}

// has tells whether the mail has flag f; flags are case-insensitive (imapmemserver lower-cases
// keywords).
func (m msgState) has(f goimap.Flag) bool {
	return slices.ContainsFunc(m.flags, func(g goimap.Flag) bool { return strings.EqualFold(string(f), string(g)) })
}

// mailbox lists a mailbox's mails as a separate client sees them.
func mailbox(t testing.TB, addr, user, pass, name string) []msgState {
	t.Helper()
	c := login(t, addr, user, pass)
	defer c.Close()
	if _, err := c.Select(name, &goimap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		var imapErr *goimap.Error
		if errors.As(err, &imapErr) && (imapErr.Code == goimap.ResponseCodeNonExistent || strings.Contains(imapErr.Text, "doesn't exist")) {
			return nil // Dovecot says "NO Mailbox doesn't exist", without the code
		}
		t.Fatalf("examine %s: %v", name, err)
	}
	var all goimap.UIDSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &goimap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
	if err != nil {
		// An empty mailbox answers "1:*" with nothing or a NO, depending on the server.
		return nil
	}
	var out []msgState
	for _, m := range msgs {
		st := msgState{uid: m.UID, flags: m.Flags}
		if m.Envelope != nil {
			st.subject = m.Envelope.Subject
		}
		out = append(out, st)
	}
	return out
}

func login(t testing.TB, addr, user, pass string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		c.Close()
		t.Fatalf("log in: %v", err)
	}
	return c
}

// --- mails ------------------------------------------------------------------------------------

// pdf is a small PDF whose bytes depend on seed, so that every test document is distinct.
func pdf(seed string, size int) []byte {
	head := "%PDF-1.7\n% " + seed + "\n"
	size = max(size, len(head))
	line := []byte("0 0 obj << /Type /Page >> endobj\n")
	b := bytes.Repeat(line, size/len(line)+1)[:size]
	copy(b, head)
	return b
}

// png is the smallest thing intake sniffs as PNG.
func png(seed string) []byte {
	return append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), []byte(seed)...)
}

type attachment struct {
	name, ctype string
	body        []byte
}

type message struct {
	from, to, subject, id string
	text                  string
	parts                 []attachment
	extraHeaders          string
}

// build writes an RFC 5322 message with base64 attachments.
func (m message) build() []byte {
	var b strings.Builder
	from := m.from
	if from == "" {
		from = "Sender <sender@example.com>"
	}
	to := m.to
	if to == "" {
		to = testUser
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Fri, 27 Nov 2026 10:00:00 +0100\r\n", from, to, m.subject)
	if m.id != "" {
		fmt.Fprintf(&b, "Message-ID: <%s>\r\n", m.id)
	}
	b.WriteString(m.extraHeaders)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n")
	text := m.text
	if text == "" {
		text = "Please find the documents attached."
	}
	fmt.Fprintf(&b, "--b0undary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", text)
	for _, p := range m.parts {
		ct := p.ctype
		if ct == "" {
			ct = "application/octet-stream"
		}
		fmt.Fprintf(&b, "--b0undary\r\nContent-Type: %s\r\nContent-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", ct, p.name)
		enc := base64.StdEncoding.EncodeToString(p.body)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	b.WriteString("--b0undary--\r\n")
	return []byte(b.String())
}

// simple is a mail with one PDF named after its subject.
func simple(subject string) []byte {
	return message{subject: subject, id: subject + "@example.com",
		parts: []attachment{{name: subject + ".pdf", ctype: "application/pdf", body: pdf(subject, 2000)}}}.build()
}

// --- a TCP proxy that cuts a connection in the middle of a FETCH literal ----------------------

// cutProxy forwards to target. Armed with cutAt(n), it closes the connection carrying the n-th
// "BODY[] {" (counted over every connection from then on) a few bytes into that literal.
type cutProxy struct {
	addr string
	cuts atomic.Int32 // connections cut
	mu   sync.Mutex
	left int // literals to let through before cutting; < 0: disarmed
}

const literalMarker = "BODY[] {"

func startCutProxy(t testing.TB, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{addr: ln.Addr().String(), left: -1}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(server, client); server.Close() }()
			go func() { defer wg.Done(); p.downstream(client, server); client.Close(); server.Close() }()
		}
	}()
	return p
}

// cutAt arms the proxy: the connection is cut inside the n-th literal from now (1 = the next).
func (p *cutProxy) cutAt(n int) {
	p.mu.Lock()
	p.left = n - 1
	p.mu.Unlock()
}

// downstream copies server → client, watching for literals.
func (p *cutProxy) downstream(client, server net.Conn) {
	buf := make([]byte, 32<<10)
	var tail []byte // the end of the last chunk, for a marker split across reads
	for {
		n, err := server.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if cutAt := p.scan(tail, chunk); cutAt >= 0 {
				_, _ = client.Write(chunk[:min(cutAt, len(chunk))])
				p.cuts.Add(1)
				return
			}
			if _, werr := client.Write(chunk); werr != nil {
				return
			}
			tail = append(tail[:0], chunk[max(0, len(chunk)-len(literalMarker)):]...)
		}
		if err != nil {
			return
		}
	}
}

// scan returns where in chunk to cut (a little past the marker that triggers), or -1.
func (p *cutProxy) scan(tail, chunk []byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left < 0 {
		return -1
	}
	joined := append(slices.Clone(tail), chunk...)
	off := 0
	for {
		i := bytes.Index(joined[off:], []byte(literalMarker))
		if i < 0 {
			return -1
		}
		off += i + len(literalMarker)
		if p.left == 0 {
			p.left = -1
			// Well inside the literal: the header line is through, the body is not.
			return max(off-len(tail), 0) + 200
		}
		p.left--
	}
}

// jsonString is for error messages.
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
