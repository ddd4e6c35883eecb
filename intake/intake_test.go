package intake_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/intake"
)

func newIntake(t *testing.T) (*intake.Intake, *events.Bus) {
	t.Helper()
	bus := eventstest.Bus(t, eventstest.Embedded(t))
	in, err := intake.New(intake.Config{Bus: bus})
	if err != nil {
		t.Fatal(err)
	}
	return in, bus
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func pdf(size int) []byte {
	b := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	copy(b, "%PDF-1.7\n")
	return b
}

func streamMsgs(t *testing.T, bus *events.Bus) uint64 {
	s, err := bus.JetStream().Stream(ctxT(t), bus.Names().Stream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestStageAndCommit(t *testing.T) {
	in, bus := newIntake(t)
	data := pdf(700 << 10)
	id := intake.NewDocumentID()
	st, err := in.Stage(ctxT(t), id, "../../Rechnung März.pdf", bytes.NewReader(data), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if st.Size != int64(len(data)) || st.SHA256 != hex.EncodeToString(sum[:]) || st.ContentType != "application/pdf" || st.Filename != "Rechnung März.pdf" {
		t.Fatalf("staged %+v", st)
	}
	if n := streamMsgs(t, bus); n != 0 {
		t.Fatalf("a staged document is announced: %d events", n)
	}
	origin := intake.Origin{Source: events.SourceRef{Kind: "http", Name: "api"}, Metadata: map[string]string{"customer": "42"}, Vendors: []string{"gini"}}
	doc, err := in.Commit(ctxT(t), st, origin)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Status != events.StatusReceived || doc.Metadata["customer"] != "42" || doc.SHA256 != st.SHA256 {
		t.Fatalf("state %+v", doc)
	}
	// Committing again (a retry after a crash) announces nothing new.
	if _, err := in.Commit(ctxT(t), st, origin); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, bus); n != 1 {
		t.Fatalf("%d events after two commits, want 1", n)
	}
}

func TestStageRefusals(t *testing.T) {
	in, bus := newIntake(t)
	binaryTail := append([]byte(strings.Repeat("looks like text\n", 100)), 0, 1, 2, 3)
	cases := []struct {
		name  string
		body  []byte
		limit int64
		check func(error) bool
	}{
		{"empty", nil, 100, func(err error) bool { return errors.Is(err, intake.ErrEmpty) }},
		{"too large", pdf(300 << 10), 256 << 10, func(err error) bool {
			var e *intake.TooLargeError
			return errors.As(err, &e) && e.Limit == 256<<10 && strings.Contains(err.Error(), "256 KiB")
		}},
		{"zip", append([]byte("PK\x03\x04"), make([]byte, 100)...), 1 << 20, func(err error) bool {
			var e *intake.UnsupportedTypeError
			return errors.As(err, &e) && strings.Contains(err.Error(), "application/zip")
		}},
		{"text that turns binary", binaryTail, 1 << 20, func(err error) bool {
			var e *intake.UnsupportedTypeError
			return errors.As(err, &e)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := intake.NewDocumentID()
			_, err := in.Stage(ctxT(t), id, "x", bytes.NewReader(c.body), c.limit)
			if err == nil || !c.check(err) {
				t.Fatalf("err = %v", err)
			}
			if _, _, err := bus.Blobs().Open(ctxT(t), intake.ObjectKey(id)); !errors.Is(err, events.ErrBlobNotFound) {
				t.Fatalf("refused document left bytes behind: %v", err)
			}
		})
	}
}

func TestDiscard(t *testing.T) {
	in, bus := newIntake(t)
	st, err := in.Stage(ctxT(t), intake.NewDocumentID(), "a.pdf", bytes.NewReader(pdf(1000)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	in.Discard(ctxT(t), st)
	if _, _, err := bus.Blobs().Open(ctxT(t), st.ObjectKey); !errors.Is(err, events.ErrBlobNotFound) {
		t.Fatalf("discarded bytes still there: %v", err)
	}
}

// Stage must never hold a document in memory: a reader that fails after 10 MiB has been stored
// shows the store took it chunk by chunk (and cleaned up).
func TestStageStreams(t *testing.T) {
	in, bus := newIntake(t)
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(pdf(10<<20)), errReader{boom})
	id := intake.NewDocumentID()
	if _, err := in.Stage(ctxT(t), id, "big.pdf", r, 64<<20); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	obs, _ := bus.JetStream().ObjectStore(ctxT(t), bus.Names().DocumentsBucket())
	if _, err := obs.GetInfo(ctxT(t), intake.ObjectKey(id)); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("partial object: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestReject(t *testing.T) {
	in, bus := newIntake(t)
	id := intake.NewDocumentID()
	origin := intake.Origin{Source: events.SourceRef{Kind: "imap", Name: "invoices"}, Metadata: map[string]string{"message_id": "<x@y>"}}
	raw := strings.Repeat("From: a\r\n\r\nbody", 100)
	doc, err := in.Reject(ctxT(t), intake.Rejection{DocumentID: id, Origin: origin, Filename: "mail.eml",
		Reason: "limits", Detail: "the mail nests 101 levels deep; the limit is 20", Raw: strings.NewReader(raw)})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Status != events.StatusRejected || !strings.Contains(doc.Error, "101 levels") {
		t.Fatalf("state %+v", doc)
	}
	r, info, err := bus.Blobs().Open(ctxT(t), "rejected/"+id)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != raw || info.Size != int64(len(raw)) {
		t.Fatal("raw bytes not kept")
	}
	if _, err := in.Reject(ctxT(t), intake.Rejection{DocumentID: id, Origin: origin, Reason: "limits"}); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, bus); n != 1 {
		t.Fatalf("%d events for one rejection", n)
	}
}

func TestDerivedDocumentID(t *testing.T) {
	at := time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)
	a := intake.DerivedDocumentID(at, "invoices/1234/17/2")
	if a != intake.DerivedDocumentID(at, "invoices/1234/17/2") {
		t.Fatal("not deterministic")
	}
	if a == intake.DerivedDocumentID(at, "invoices/1234/17/3") {
		t.Fatal("different parts share an id")
	}
	u, err := uuid.Parse(a)
	if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 {
		t.Fatalf("%s: version %d variant %v err %v", a, u.Version(), u.Variant(), err)
	}
	sec, nsec := u.Time().UnixTime()
	if got := time.Unix(sec, nsec).UTC(); !got.Equal(at) {
		t.Fatalf("timestamp %s, want %s", got, at)
	}
}
