// Package simkit is what the vendor simulators share: injected faults for tests, bearer tokens that
// expire, a ledger of uploads (to prove a document reached a vendor once), deterministic
// "recognised" content, and the one-pass inspection of an upload (Inspect) that spares a
// simulator holding the document. Each vendor's simulator lives next to its client and follows that vendor's
// documented behaviour; simkit only carries the mechanics.
package simkit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Fault is an injected answer, served instead of the normal one.
type Fault struct {
	Status int
	Body   string // sent verbatim: the vendor's error JSON, or malformed JSON on purpose
	// ContentType defaults to application/json.
	ContentType string
	RetryAfter  string // Retry-After header value, if any
	// Times is how many requests get this fault; 0 means once.
	Times int
}

// Faults is a queue of faults per operation name ("upload", "status", "result", "token", …).
type Faults struct {
	mu sync.Mutex
	m  map[string][]Fault
}

// Add queues a fault for op.
func (f *Faults) Add(op string, ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string][]Fault{}
	}
	if ft.Times <= 0 {
		ft.Times = 1
	}
	f.m[op] = append(f.m[op], ft)
}

// Serve answers with the next fault queued for op and reports whether there was one.
func (f *Faults) Serve(op string, w http.ResponseWriter) bool {
	f.mu.Lock()
	q := f.m[op]
	if len(q) == 0 {
		f.mu.Unlock()
		return false
	}
	ft := q[0]
	q[0].Times--
	if q[0].Times <= 0 {
		f.m[op] = q[1:]
	}
	f.mu.Unlock()
	ct := ft.ContentType
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	if ft.RetryAfter != "" {
		w.Header().Set("Retry-After", ft.RetryAfter)
	}
	w.WriteHeader(ft.Status)
	_, _ = w.Write([]byte(ft.Body))
	return true
}

// Tokens issues opaque bearer tokens that expire after TTL.
type Tokens struct {
	TTL time.Duration
	Now func() time.Time // time.Now when nil

	mu     sync.Mutex
	issued map[string]time.Time // token → expiry
	count  int
}

func (t *Tokens) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Issue returns a new token and its lifetime in seconds.
func (t *Tokens) Issue() (string, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.issued == nil {
		t.issued = map[string]time.Time{}
	}
	ttl := t.TTL
	if ttl == 0 {
		ttl = 5 * time.Minute
	}
	tok := "sim-" + RandomHex(16)
	t.issued[tok] = t.now().Add(ttl)
	t.count++
	return tok, int(ttl / time.Second)
}

// Issued counts the tokens handed out.
func (t *Tokens) Issued() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count
}

// Valid reports whether tok was issued and has not expired.
func (t *Tokens) Valid(tok string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	exp, ok := t.issued[tok]
	return ok && t.now().Before(exp)
}

// ExpireAll makes every token issued so far invalid, as if their time ran out mid-flow.
func (t *Tokens) ExpireAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.issued {
		t.issued[k] = time.Time{}
	}
}

// Bearer returns the token of an "Authorization: Bearer …" header (any case of the scheme).
func Bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// Upload is one document a simulator received.
type Upload struct {
	Ref      string
	Filename string
	SHA256   string
	Size     int64
	At       time.Time
}

// Ledger records uploads, to prove in tests that each document reached the vendor once.
type Ledger struct {
	mu      sync.Mutex
	uploads []Upload
}

// Record adds an upload.
func (l *Ledger) Record(u Upload) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if u.At.IsZero() {
		u.At = time.Now()
	}
	l.uploads = append(l.uploads, u)
}

// All returns every upload so far.
func (l *Ledger) All() []Upload {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Upload(nil), l.uploads...)
}

// Count returns how many uploads had this content digest (hex sha256).
func (l *Ledger) Count(sha string) int {
	n := 0
	for _, u := range l.All() {
		if u.SHA256 == sha {
			n++
		}
	}
	return n
}

// Digest returns the hex sha256 and size of b.
func Digest(b []byte) (string, int64) {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), int64(len(b))
}

// RandomHex returns n random bytes as hex.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Recognised is the simulated outcome of reading a document: the same bytes always give the same
// text and fields, so tests can check that results travel unchanged.
type Recognised struct {
	Text          string
	InvoiceNumber string
	Total         string // e.g. "24.99"
	Currency      string
	Date          string // YYYY-MM-DD
}

// Recognise derives the simulated content of a document from its name, size and SHA-256: what a
// simulator keeps of an upload it streamed (Inspection), never the bytes themselves.
func Recognise(filename string, size int64, sum [sha256.Size]byte) Recognised {
	n := int(sum[0])<<8 | int(sum[1])
	return Recognised{
		Text:          fmt.Sprintf("Simulated text of %s (%d bytes)\nInvoice INV-%05d\nTotal %d.%02d EUR", filename, size, n, n%500, n%100),
		InvoiceNumber: fmt.Sprintf("INV-%05d", n),
		Total:         fmt.Sprintf("%d.%02d", n%500, n%100),
		Currency:      "EUR",
		Date:          "2026-11-27",
	}
}

// RecogniseContent is Recognise of bytes in hand: for tests and small inline content.
func RecogniseContent(filename string, content []byte) Recognised {
	return Recognise(filename, int64(len(content)), sha256.Sum256(content))
}
