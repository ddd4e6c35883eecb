// Package intake turns a byte stream from any source (an HTTP upload, a mail attachment, a file in
// a WebDAV folder) into a stored document and its received event. Adapters call Stage for each
// document, then Commit once they know all of them are good, or Discard.
package intake

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/events"
)

// ErrEmpty is returned for a document of zero bytes.
var ErrEmpty = errors.New("the document is empty")

// Config configures an Intake.
type Config struct {
	Bus        *events.Bus
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time // for tests; time.Now by default
	// Route chooses the vendors of a document as it is received, so that its received event
	// names them (and its state knows when all of them are done). Nil leaves the choice to the
	// dispatcher.
	Route func(events.ReceivedData) (vendors []string, route string, err error)
	// Priority, when set, is told of every document being stored or announced (Foreground),
	// so that background work (dispatch) yields to it.
	Priority *events.Priority
}

// Intake stores documents and announces them.
type Intake struct {
	bus      *events.Bus
	log      *slog.Logger
	now      func() time.Time
	route    func(events.ReceivedData) ([]string, string, error)
	prio     *events.Priority
	received *prometheus.CounterVec
	bytes    *prometheus.CounterVec
}

// New returns an Intake over cfg.Bus.
func New(cfg Config) (*Intake, error) {
	if cfg.Bus == nil {
		return nil, errors.New("intake: a Bus is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	in := &Intake{
		bus:   cfg.Bus,
		log:   cfg.Logger,
		now:   cfg.Now,
		route: cfg.Route,
		prio:  cfg.Priority,
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_documents_received_total", Help: "Documents stored and announced, by source.",
		}, []string{"source_kind", "source"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_document_bytes_total", Help: "Bytes of documents stored, by source.",
		}, []string{"source_kind", "source"}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{in.received, in.bytes} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return in, nil
}

// NewDocumentID returns a fresh document id: a UUIDv7, so ids sort by arrival.
func NewDocumentID() string { return uuid.Must(uuid.NewV7()).String() }

// DerivedDocumentID is a document id for a source item that can come around again (a mail
// fetched again after a crash, a file listed again): the same item always gets the same id, so
// its received event is recognised as a repeat. It keeps the UUIDv7 layout, with at (the item's
// own time: a mail's arrival, a file's modification) as its timestamp and the rest from a hash of
// key (account/UIDVALIDITY/UID/part, folder/path/etag).
func DerivedDocumentID(at time.Time, key string) string {
	sum := sha256.Sum256([]byte(key))
	var u uuid.UUID
	ms := uint64(max(at.UnixMilli(), 0))
	for i := 0; i < 6; i++ {
		u[i] = byte(ms >> (40 - 8*i))
	}
	copy(u[6:], sum[:10])
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	return u.String()
}

// ObjectKey is where a document's bytes are stored. It is built from the id alone, never from
// anything a sender chose.
func ObjectKey(docID string) string { return "documents/" + docID }

// Staged is a document whose bytes are stored but which is not announced yet.
type Staged struct {
	DocumentID  string
	ObjectKey   string
	Filename    string
	ContentType string
	Size        int64
	SHA256      string
}

// Stage streams r into the store as document docID. It sniffs the type from the first bytes and
// stops at once on a type it does not take (*UnsupportedTypeError), and stops as soon as the
// document exceeds maxBytes (*TooLargeError). On any error nothing stays stored.
// Memory use is a chunk (256 KiB) plus a small read buffer, whatever the document's size.
func (in *Intake) Stage(ctx context.Context, docID, filename string, r io.Reader, maxBytes int64) (Staged, error) {
	defer in.prio.Foreground()()
	st, src, err := prepare(docID, filename, r, maxBytes)
	if err != nil {
		return Staged{}, err
	}
	info, err := in.bus.Blobs().Put(ctx, st.ObjectKey, src, map[string]string{"content-type": st.ContentType})
	if err != nil {
		return Staged{}, unwrapRefusal(err)
	}
	st.Size, st.SHA256 = info.Size, info.SHA256
	return st, nil
}

// Check runs the same checks as Stage and computes size and digest, storing nothing. It lets a
// repeated request be compared with the one it repeats.
func Check(docID, filename string, r io.Reader, maxBytes int64) (Staged, error) {
	st, src, err := prepare(docID, filename, r, maxBytes)
	if err != nil {
		return Staged{}, err
	}
	h := sha256.New()
	n, err := io.Copy(h, src)
	if err != nil {
		return Staged{}, unwrapRefusal(err)
	}
	st.Size, st.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	return st, nil
}

// prepare sniffs the type and returns the reader that enforces the size limit (and, for text, that
// the text stays UTF-8 to the end).
func prepare(docID, filename string, r io.Reader, maxBytes int64) (Staged, io.Reader, error) {
	br := bufio.NewReaderSize(r, SniffLen)
	head, err := br.Peek(SniffLen)
	if err != nil && !errors.Is(err, io.EOF) {
		return Staged{}, nil, fmt.Errorf("read the document: %w", err)
	}
	if len(head) == 0 {
		return Staged{}, nil, ErrEmpty
	}
	kind, detected, ok := Sniff(head, len(head) < SniffLen)
	if !ok {
		return Staged{}, nil, &UnsupportedTypeError{Detected: detected}
	}
	var src io.Reader = &limitReader{r: br, limit: maxBytes}
	if kind == Text {
		src = &textReader{r: src}
	}
	return Staged{
		DocumentID:  docID,
		ObjectKey:   ObjectKey(docID),
		Filename:    SanitizeFilename(filename, docID, kind.Ext),
		ContentType: kind.ContentType,
	}, src, nil
}

// unwrapRefusal returns our own refusal from a wrapped error chain, so that callers can tell it
// from a storage failure by type.
func unwrapRefusal(err error) error {
	var tooLarge *TooLargeError
	var unsupported *UnsupportedTypeError
	switch {
	case errors.As(err, &tooLarge):
		return tooLarge
	case errors.As(err, &unsupported):
		return unsupported
	}
	return err
}

// Discard removes a staged document's bytes.
func (in *Intake) Discard(ctx context.Context, st Staged) {
	if err := in.bus.Blobs().Delete(context.WithoutCancel(ctx), st.ObjectKey); err != nil {
		in.log.Warn("could not remove the bytes of a document that was not accepted", "doc_id", st.DocumentID, "err", err)
	}
}

// Origin is what the source knows about a document beyond its bytes.
type Origin struct {
	Source   events.SourceRef
	Metadata map[string]string
	Vendors  []string // asked for by the sender
	Route    string
	// NewID says the document id was made by NewDocumentID for this document alone: nothing can
	// have been committed under it, so Commit does not look for an earlier commit (a round
	// trip saved per upload). Never set it for a derived id: those are committed again after
	// a crash.
	NewID bool
}

// Commit announces a staged document: it returns once JetStream has acknowledged the received
// event, so a source may consider the document safe (and, say, mark a mail as read) only after
// Commit returned nil. Committing the same document again publishes nothing new.
func (in *Intake) Commit(ctx context.Context, st Staged, o Origin) (events.Document, error) {
	defer in.prio.Foreground()()
	eventID := st.DocumentID + ".received"
	subject, err := in.bus.Names().Subject(events.Received, o.Source.Kind)
	if err != nil {
		return events.Document{}, err
	}
	data := events.ReceivedData{
		DocumentID:  st.DocumentID,
		Source:      o.Source,
		Filename:    st.Filename,
		ContentType: st.ContentType,
		Size:        st.Size,
		SHA256:      st.SHA256,
		ObjectKey:   st.ObjectKey,
		Metadata:    o.Metadata,
		Vendors:     o.Vendors,
		Route:       o.Route,
		ReceivedAt:  in.now().UTC(),
	}
	if in.route != nil {
		// A choice that cannot be honoured (an unknown vendor) stays as the sender made it: the
		// dispatcher reports it as a failure on the bus.
		if vendors, route, err := in.route(data); err == nil {
			data.Vendors, data.Route = vendors, route
		}
	}
	ev, err := events.NewEvent(events.Received, eventID, events.SourceURI(o.Source.Kind, o.Source.Name), st.DocumentID, data.ReceivedAt, data)
	if err != nil {
		return events.Document{}, err
	}
	// Committing the same document again (a retried request after a crash) publishes nothing.
	record := in.bus.Record
	if o.NewID {
		record = func(ctx context.Context, subject string, ev events.Event) (events.Document, bool, error) {
			doc, err := in.bus.RecordNew(ctx, subject, ev)
			return doc, true, err
		}
	}
	doc, fresh, err := record(ctx, subject, ev)
	if err != nil {
		return events.Document{}, err
	}
	if !fresh {
		return doc, nil
	}
	in.received.WithLabelValues(o.Source.Kind, o.Source.Name).Inc()
	in.bytes.WithLabelValues(o.Source.Kind, o.Source.Name).Add(float64(st.Size))
	in.log.InfoContext(ctx, "document received", "doc_id", st.DocumentID, "source", o.Source.Kind+"/"+o.Source.Name,
		"filename", st.Filename, "content_type", st.ContentType, "size", st.Size)
	if doc.Status == "" { // the state is not written yet; the projector will
		return documentFrom(ev, data), nil
	}
	return doc, nil
}

func hasEvent(doc events.Document, id string) bool {
	for _, h := range doc.History {
		if h.EventID == id {
			return true
		}
	}
	return false
}

func documentFrom(ev events.Event, d events.ReceivedData) events.Document {
	return events.Document{
		ID: d.DocumentID, Status: events.StatusReceived, Source: d.Source, Filename: d.Filename,
		ContentType: d.ContentType, Size: d.Size, SHA256: d.SHA256, ObjectKey: d.ObjectKey,
		Metadata: d.Metadata, Route: d.Route, Chosen: d.Vendors, ReceivedAt: d.ReceivedAt,
		UpdatedAt: d.ReceivedAt, Vendors: map[string]*events.VendorState{},
		History: []events.HistoryEntry{{EventID: ev.ID, Type: ev.Type, Time: ev.Time}},
	}
}

// maxFilenameBytes keeps names within what every filesystem and vendor accepts.
const maxFilenameBytes = 200

// SanitizeFilename makes a sender's file name safe to show, store and pass on: the last path
// element only, no control or invisible formatting characters (a right-to-left override can make
// "invoice‮fdp.exe" look like a PDF), valid UTF-8, at most 200 bytes with the extension kept. An
// empty or dot-only result becomes "document-<id>" with the sniffed type's extension.
func SanitizeFilename(name, docID, ext string) string {
	name = strings.ToValidUTF8(name, "")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, name)
	name = strings.Trim(name, " .")
	if name == "" {
		short := docID
		if len(short) > 36 {
			short = short[:36]
		}
		return "document-" + short + ext
	}
	if len(name) > maxFilenameBytes {
		stem, fext := name, ""
		if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
			stem, fext = name[:i], name[i:]
		}
		cut := maxFilenameBytes - len(fext)
		for cut > 0 && !utf8.RuneStart(stem[cut]) {
			cut--
		}
		name = stem[:cut] + fext
	}
	return name
}

// Rejection is an input that cannot become a document: a mail over the limits, a file of a type
// no vendor reads. It is announced as a rejected event so that someone can look, with the original
// bytes kept in the Object Store when there are any.
type Rejection struct {
	DocumentID string // NewDocumentID(), or one derived from the source item
	Origin     Origin
	Filename   string
	Reason     string // short code: too_large, unsupported_type, malformed, limits
	Detail     string // a sentence for people
	// Raw, when not nil, is stored under "rejected/<id>" (streamed, up to MaxRawBytes).
	Raw         io.Reader
	MaxRawBytes int64
	ContentType string
}

// Reject stores the raw bytes (if any) and announces the rejection; like Commit it returns once
// the event is durable, and rejecting the same id again publishes nothing new.
func (in *Intake) Reject(ctx context.Context, r Rejection) (events.Document, error) {
	defer in.prio.Foreground()()
	eventID := r.DocumentID + ".rejected"
	if doc, err := in.bus.States().Get(ctx, r.DocumentID); err == nil && hasEvent(doc, eventID) {
		return doc, nil // before the raw bytes are stored again
	}
	data := events.RejectedData{
		DocumentID: r.DocumentID, Source: r.Origin.Source, Filename: SanitizeFilename(r.Filename, r.DocumentID, ""),
		Reason: r.Reason, Detail: r.Detail, Metadata: r.Origin.Metadata, RejectedAt: in.now().UTC(), ContentType: r.ContentType,
	}
	if r.Raw != nil {
		limit := r.MaxRawBytes
		if limit <= 0 {
			limit = 256 << 20
		}
		key := "rejected/" + r.DocumentID
		info, err := in.bus.Blobs().Put(ctx, key, io.LimitReader(r.Raw, limit), map[string]string{"reason": r.Reason})
		if err != nil {
			return events.Document{}, fmt.Errorf("keep the rejected bytes: %w", err)
		}
		data.ObjectKey, data.Size = key, info.Size
	}
	subject, err := in.bus.Names().Subject(events.Rejected, r.Origin.Source.Kind)
	if err != nil {
		return events.Document{}, err
	}
	ev, err := events.NewEvent(events.Rejected, eventID, events.SourceURI(r.Origin.Source.Kind, r.Origin.Source.Name), r.DocumentID, data.RejectedAt, data)
	if err != nil {
		return events.Document{}, err
	}
	doc, fresh, err := in.bus.Record(ctx, subject, ev)
	if err != nil {
		return events.Document{}, err
	}
	if fresh {
		in.log.WarnContext(ctx, "input rejected", "doc_id", r.DocumentID, "source", r.Origin.Source.Kind+"/"+r.Origin.Source.Name,
			"reason", r.Reason, "detail", r.Detail)
	}
	return doc, nil
}
