package events_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/internal/metricstest"
)

// onBoth runs a test against the embedded server and against the external NATS 2.9 server.
func onBoth(t *testing.T, f func(t *testing.T, nc *nats.Conn)) {
	t.Run("embedded", func(t *testing.T) { f(t, eventstest.Embedded(t)) })
	t.Run("external", func(t *testing.T) { f(t, eventstest.External(t)) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenIsIdempotent(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		js, _ := jetstream.New(nc)
		ns := eventstest.Namespace(t, nc)
		cfg := events.Config{Namespace: ns, MaxAge: 48 * time.Hour, DuplicateWindow: 3 * time.Minute}
		if _, err := events.Open(ctxT(t), js, cfg); err != nil {
			t.Fatal(err)
		}
		cfg.MaxAge = 72 * time.Hour // a changed setting is applied on the next start
		b, err := events.Open(ctxT(t), js, cfg)
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		s, err := js.Stream(ctxT(t), b.Names().Stream())
		if err != nil {
			t.Fatal(err)
		}
		got := s.CachedInfo().Config
		if got.MaxAge != 72*time.Hour || got.Duplicates != 3*time.Minute || got.Retention != jetstream.LimitsPolicy || got.Storage != jetstream.FileStorage {
			t.Fatalf("stream config %+v", got)
		}
	})
}

// Buckets are read through the stream's leader (no direct gets), also a bucket an earlier version
// made with nats.go's default; a changed setting is applied and leaves direct gets off.
func TestBucketsReadThroughTheLeader(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		js, _ := jetstream.New(nc)
		ns := eventstest.Namespace(t, nc)
		// As an earlier version left it: made by nats.go with direct gets on.
		if _, err := js.CreateKeyValue(ctxT(t), jetstream.KeyValueConfig{Bucket: ns + "-leases", History: 1}); err != nil {
			t.Fatal(err)
		}
		b, err := events.Open(ctxT(t), js, events.Config{Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		directOff := func(stream string, wantAge time.Duration) {
			t.Helper()
			s, err := js.Stream(ctxT(t), stream)
			if err != nil {
				t.Fatal(err)
			}
			if c := s.CachedInfo().Config; c.AllowDirect || c.MaxAge != wantAge {
				t.Fatalf("%s: allow_direct %v, max age %v (want false, %v)", stream, c.AllowDirect, c.MaxAge, wantAge)
			}
		}
		directOff("KV_"+ns+"-state", 0)
		for _, ttl := range []time.Duration{time.Minute, time.Minute, time.Hour} {
			kv, err := b.KeyValue(ctxT(t), events.BucketSpec{Purpose: "leases", TTL: ttl})
			if err != nil {
				t.Fatal(err)
			}
			directOff("KV_"+ns+"-leases", ttl)
			// The handle works without direct gets: a write is read back at once.
			rev, err := kv.Put(ctxT(t), "k", []byte(ttl.String()))
			if err != nil {
				t.Fatal(err)
			}
			if e, err := kv.Get(ctxT(t), "k"); err != nil || e.Revision() != rev || string(e.Value()) != ttl.String() {
				t.Fatalf("read back: %v %v", e, err)
			}
		}
	})
}

func TestPublishIsIdempotent(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		b := eventstest.Bus(t, nc)
		ev, _ := events.NewEvent(events.Received, "doc-1.received", "/sources/http/api", "doc-1", time.Now(), events.ReceivedData{DocumentID: "doc-1"})
		subj, _ := b.Names().Subject(events.Received, "http")
		a1, err := b.Publish(ctxT(t), subj, ev)
		if err != nil {
			t.Fatal(err)
		}
		a2, err := b.Publish(ctxT(t), subj, ev)
		if err != nil {
			t.Fatal(err)
		}
		if a1.Duplicate || !a2.Duplicate || a1.Sequence != a2.Sequence {
			t.Fatalf("acks %+v %+v: the repeat should be recognised as the same event", a1, a2)
		}
		s, _ := b.JetStream().Stream(ctxT(t), b.Names().Stream())
		info, _ := s.Info(ctxT(t))
		if info.State.Msgs != 1 {
			t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
		}
		m, err := s.GetMsg(ctxT(t), a1.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get("Nats-Msg-Id") != "doc-1.received" || m.Header.Get("Content-Type") != events.ContentType {
			t.Fatalf("headers %v", m.Header)
		}
		if _, err := events.Decode(m.Data); err != nil {
			t.Fatalf("stored event does not decode: %v", err)
		}
	})
}

func TestPublishOutsideTheStreamFails(t *testing.T) {
	b := eventstest.Bus(t, eventstest.Embedded(t))
	ev, _ := events.NewEvent(events.Received, "x", "/s", "d", time.Now(), struct{}{})
	// No stream answers there: retried as if a leader election were under way, until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := b.Publish(ctx, "elsewhere.subject", ev); err == nil {
		t.Fatal("publish to a subject no stream holds succeeded")
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Sizes around the chunk (256 KiB): a document that fits in one is stored as one chunk of its
// own size; larger ones in full chunks, however small the source's reads.
func TestBlobRoundTrip(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		b := eventstest.Bus(t, nc)
		for _, c := range []struct {
			size, chunks int
		}{{0, 0}, {1, 1}, {100 << 10, 1}, {256<<10 - 1, 1}, {256 << 10, 1}, {256<<10 + 1, 2}, {3<<20 + 17, 13}} {
			data := randomBytes(t, c.size)
			want := sha256.Sum256(data)
			key := fmt.Sprintf("documents/%d", c.size)
			// One byte per Read, the worst a source can do: the store must still make full chunks.
			info, err := b.Blobs().Put(ctxT(t), key, iotest.OneByteReader(bytes.NewReader(data)), map[string]string{"k": "v"})
			if err != nil {
				t.Fatal(err)
			}
			if info.Size != int64(len(data)) || info.SHA256 != hex.EncodeToString(want[:]) {
				t.Fatalf("%d bytes: info %+v", c.size, info)
			}
			obs, _ := b.JetStream().ObjectStore(ctxT(t), b.Names().DocumentsBucket())
			oi, _ := obs.GetInfo(ctxT(t), key)
			if int(oi.Chunks) != c.chunks || oi.Metadata["k"] != "v" {
				t.Fatalf("%d bytes: %d chunks (metadata %v), want %d", c.size, oi.Chunks, oi.Metadata, c.chunks)
			}
			r, rinfo, err := b.Blobs().Open(ctxT(t), key)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) || rinfo.SHA256 != info.SHA256 {
				t.Fatalf("%d bytes: bytes differ after the round trip", c.size)
			}
		}
	})
}

// A document of one chunk is read with a get of that chunk: the bytes must still be checked
// against the object's description, as the Object Store's own reader does at EOF.
func TestBlobOpenChecksTheChunk(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		b := eventstest.Bus(t, nc)
		key := "documents/tampered"
		if _, err := b.Blobs().Put(ctxT(t), key, bytes.NewReader(randomBytes(t, 10<<10)), nil); err != nil {
			t.Fatal(err)
		}
		obs, _ := b.JetStream().ObjectStore(ctxT(t), b.Names().DocumentsBucket())
		oi, err := obs.GetInfo(ctxT(t), key)
		if err != nil {
			t.Fatal(err)
		}
		// Other bytes of the same length on the chunk's subject.
		chunk := "$O." + b.Names().DocumentsBucket() + ".C." + oi.NUID
		if _, err := b.JetStream().Publish(ctxT(t), chunk, randomBytes(t, 10<<10)); err != nil {
			t.Fatal(err)
		}
		if r, _, err := b.Blobs().Open(ctxT(t), key); !errors.Is(err, jetstream.ErrDigestMismatch) {
			if r != nil {
				r.Close()
			}
			t.Fatalf("Open of altered bytes: err = %v, want a digest mismatch", err)
		}
		if _, _, err := b.Blobs().Open(ctxT(t), "documents/none"); !errors.Is(err, events.ErrBlobNotFound) {
			t.Fatalf("Open of a missing key: err = %v, want ErrBlobNotFound", err)
		}
	})
}

func TestBlobPutFailureLeavesNothing(t *testing.T) {
	b := eventstest.Bus(t, eventstest.Embedded(t))
	boom := errors.New("client went away")
	// The source fails in its first chunk (nothing sent yet) or after several were stored.
	for _, size := range []int{10 << 10, 1 << 20} {
		key := fmt.Sprintf("documents/broken-%d", size)
		r := io.MultiReader(bytes.NewReader(randomBytes(t, size)), iotest.ErrReader(boom))
		if _, err := b.Blobs().Put(ctxT(t), key, r, nil); !errors.Is(err, boom) {
			t.Fatalf("%d bytes: err = %v, want the reader's error", size, err)
		}
		if _, _, err := b.Blobs().Open(ctxT(t), key); !errors.Is(err, events.ErrBlobNotFound) {
			t.Fatalf("%d bytes: partial object is readable: %v", size, err)
		}
	}
	if err := b.Blobs().Delete(ctxT(t), "documents/never"); err != nil {
		t.Fatalf("deleting a missing blob: %v", err)
	}
}

// Two instances record on one document, each from a state it read before the other wrote:
// the store's compare-and-set refuses the older one, which reads again, so nothing either
// wrote is lost; a repeat of an event recorded since the read is neither a second event nor a
// second history entry; a state of another document is refused.
func TestRecordOnASnapshot(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		a := eventstest.Bus(t, nc)
		js, _ := jetstream.New(nc)
		b, err := events.Open(ctxT(t), js, events.Config{Namespace: a.Names().Namespace})
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		submitted := func(id, vendor string, at int) events.Event {
			ev, _ := events.NewEvent(events.Submitted, id, "/s", "doc", t0.Add(time.Duration(at)*time.Millisecond),
				events.SubmittedData{Vendor: vendor, VendorRef: vendor + "-1"})
			return ev
		}
		subj, _ := a.Names().Subject(events.Submitted, "gini")
		recv, _ := events.NewEvent(events.Received, "d.r", "/s", "doc", t0, events.ReceivedData{Filename: "f.pdf"})
		if _, err := a.RecordNew(ctxT(t), subj, recv); err != nil {
			t.Fatal(err)
		}
		snapA, err := a.States().Read(ctxT(t), "doc")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := b.Record(ctxT(t), subj, submitted("d.s1", "gini", 1)); err != nil {
			t.Fatal(err)
		}
		// a's snapshot is behind b's write.
		if _, changed, err := a.RecordOn(ctxT(t), subj, submitted("d.s2", "laigo", 2), snapA); err != nil || !changed {
			t.Fatalf("record on an older state: changed %v, err %v", changed, err)
		}
		// The event b recorded since a's read, recorded again on that read.
		if _, _, err := a.RecordOn(ctxT(t), subj, submitted("d.s1", "gini", 1), snapA); err != nil {
			t.Fatal(err)
		}
		doc, err := b.States().Get(ctxT(t), "doc")
		if err != nil {
			t.Fatal(err)
		}
		if len(doc.History) != 3 || len(doc.Vendors) != 2 {
			t.Fatalf("state after both: %d events, vendors %v; want 3 and gini, laigo", len(doc.History), doc.Vendors)
		}
		s, _ := a.JetStream().Stream(ctxT(t), a.Names().Stream())
		if info, _ := s.Info(ctxT(t)); info.State.Msgs != 3 {
			t.Fatalf("stream holds %d events, want 3", info.State.Msgs)
		}
		// A snapshot that is current and holds the event: nothing is published.
		snapB, _ := b.States().Read(ctxT(t), "doc")
		if _, changed, err := b.RecordOn(ctxT(t), subj, submitted("d.s2", "laigo", 2), snapB); err != nil || changed {
			t.Fatalf("record of an event the snapshot holds: changed %v, err %v", changed, err)
		}
		other, _ := events.NewEvent(events.Submitted, "o.s", "/s", "other", t0, events.SubmittedData{Vendor: "gini"})
		if _, _, err := b.RecordOn(ctxT(t), subj, other, snapB); err == nil {
			t.Fatal("an event of one document was recorded on the state of another")
		}
		if _, err := a.States().Read(ctxT(t), "unknown"); !errors.Is(err, events.ErrUnknownDocument) {
			t.Fatalf("Read of an unknown document: %v", err)
		}
	})
}

func TestStatesApplyConcurrently(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		b := eventstest.Bus(t, nc)
		t0 := time.Now()
		recv, _ := events.NewEvent(events.Received, "d.r", "/s", "doc", t0, events.ReceivedData{Filename: "f.pdf"})
		if _, changed, err := b.States().Apply(ctxT(t), recv, 0); err != nil || !changed {
			t.Fatalf("apply: %v %v", changed, err)
		}
		// Several writers on one key: compare-and-set must keep every event.
		vendors := []string{"gini", "laigo", "allspark", "documine", "cradl"}
		var wg sync.WaitGroup
		errs := make(chan error, len(vendors))
		for i, v := range vendors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ev, _ := events.NewEvent(events.Submitted, "d.s."+v, "/s", "doc", t0.Add(time.Duration(i+1)*time.Millisecond), events.SubmittedData{Vendor: v, VendorRef: v + "-1"})
				_, _, err := b.States().Apply(ctxT(t), ev, 0)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		doc, err := b.States().Get(ctxT(t), "doc")
		if err != nil {
			t.Fatal(err)
		}
		if len(doc.Vendors) != len(vendors) || len(doc.History) != len(vendors)+1 || doc.Status != events.StatusSubmitted {
			t.Fatalf("lost an update: %d vendors, %d history entries, status %s", len(doc.Vendors), len(doc.History), doc.Status)
		}
		if _, changed, _ := b.States().Apply(ctxT(t), recv, 0); changed {
			t.Fatal("re-applying an event changed the state")
		}
		for _, id := range []string{"nope", "../etc", "a.b", "", "*"} {
			if _, err := b.States().Get(ctxT(t), id); !errors.Is(err, events.ErrUnknownDocument) {
				t.Fatalf("Get(%q) = %v, want ErrUnknownDocument", id, err)
			}
		}
	})
}

// runProjector runs b's state projector until the test ends.
func runProjector(t *testing.T, b *events.Bus) {
	t.Helper()
	p, err := b.NewProjector(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, p.Run)
}

func TestProjectorAppliesWhatProducersMissed(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		b := eventstest.Bus(t, nc)
		runProjector(t, b)
		// Garbage on our subjects must not stop the projector.
		if err := nc.Publish(b.Names().Root()+".document.received.http", []byte("not an event")); err != nil {
			t.Fatal(err)
		}
		// A producer that "crashed" after the PubAck, before writing the state.
		ev, _ := events.NewEvent(events.Received, "lost.received", "/sources/http/api", "lost", time.Now(), events.ReceivedData{DocumentID: "lost", Filename: "orphan.pdf"})
		subj, _ := b.Names().Subject(events.Received, "http")
		if _, err := b.Publish(ctxT(t), subj, ev); err != nil {
			t.Fatal(err)
		}
		var doc events.Document
		eventstest.WaitFor(t, 10*time.Second, "the projector to write the state", func() bool {
			var err error
			doc, err = b.States().Get(ctxT(t), "lost")
			return err == nil
		})
		if doc.Filename != "orphan.pdf" || doc.Status != events.StatusReceived {
			t.Fatalf("projected state %+v", doc)
		}
	})
}

// Events their producer wrote into the state itself (Record) are passed over by the projector of
// the same process without reading the state; the others it reads and applies as always.
func TestProjectorSkipsWhatThisProcessApplied(t *testing.T) {
	b := eventstest.Bus(t, eventstest.Embedded(t))
	subj, _ := b.Names().Subject(events.Received, "http")
	const recorded = 20
	for i := range recorded {
		id := fmt.Sprintf("rec-%d", i)
		ev, _ := events.NewEvent(events.Received, id+".received", "/sources/http/api", id, time.Now(), events.ReceivedData{DocumentID: id, Filename: id + ".pdf"})
		if _, err := b.RecordNew(ctxT(t), subj, ev); err != nil {
			t.Fatal(err)
		}
	}
	orphan, _ := events.NewEvent(events.Received, "orphan.received", "/sources/http/api", "orphan", time.Now(), events.ReceivedData{DocumentID: "orphan", Filename: "orphan.pdf"})
	if _, err := b.Publish(ctxT(t), subj, orphan); err != nil { // published, state not written
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p, err := b.NewProjector(ctxT(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.Run(t, p.Run)
	counter := func(name string) float64 { return metricstest.Counter(t, reg, name, nil) }
	eventstest.WaitFor(t, 10*time.Second, "the orphan projected", func() bool {
		_, err := b.States().Get(ctxT(t), "orphan")
		return err == nil
	})
	eventstest.WaitFor(t, 10*time.Second, "every recorded event passed over", func() bool {
		return counter("ingest_state_projector_skipped_total") == recorded
	})
	if n := counter("ingest_state_projected_total"); n != 1 {
		t.Errorf("projected %v events, want 1 (the orphan)", n)
	}
}

// Rebuild puts into the state bucket what the stream has and the bucket lost, and nothing twice.
func TestRebuildRestoresLostState(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		b := eventstest.Bus(t, nc)
		js, _ := jetstream.New(nc)
		empty, err := events.Rebuild(ctxT(t), js, b.Names())
		if err != nil || empty != (events.Rebuilt{}) {
			t.Fatalf("rebuild of an empty stream: %+v, %v", empty, err)
		}
		subj, _ := b.Names().Subject(events.Received, "http")
		// Two documents recorded normally, then one whose state write "was lost", plus garbage.
		for _, id := range []string{"kept-1", "kept-2"} {
			ev, _ := events.NewEvent(events.Received, id+".received", "/sources/http/api", id, time.Now(), events.ReceivedData{DocumentID: id, Filename: id + ".pdf"})
			if _, _, err := b.Record(ctxT(t), subj, ev); err != nil {
				t.Fatal(err)
			}
		}
		lost, _ := events.NewEvent(events.Received, "lost.received", "/sources/http/api", "lost", time.Now(), events.ReceivedData{DocumentID: "lost", Filename: "lost.pdf"})
		if _, err := b.Publish(ctxT(t), subj, lost); err != nil {
			t.Fatal(err)
		}
		done, _ := events.NewEvent(events.Completed, "kept-1.completed.gini", "/vendors/gini", "kept-1", time.Now(), map[string]string{"vendor": "gini"})
		cs, _ := b.Names().Subject(events.Completed, "gini")
		if _, err := b.Publish(ctxT(t), cs, done); err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(subj, []byte("not an event")); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		eventstest.WaitFor(t, 10*time.Second, "the stream to hold 5 messages", func() bool {
			s, err := js.Stream(ctxT(t), b.Names().Stream())
			return err == nil && s.CachedInfo().State.Msgs == 5
		})
		r, err := events.Rebuild(ctxT(t), js, b.Names())
		if err != nil {
			t.Fatal(err)
		}
		if r != (events.Rebuilt{Events: 4, Applied: 2, Malformed: 1}) {
			t.Fatalf("rebuild: %+v, want 4 events, 2 applied, 1 malformed", r)
		}
		if doc, err := b.States().Get(ctxT(t), "lost"); err != nil || doc.Filename != "lost.pdf" {
			t.Fatalf("lost document after rebuild: %+v, %v", doc, err)
		}
		if doc, err := b.States().Get(ctxT(t), "kept-1"); err != nil || doc.Status != events.StatusCompleted || len(doc.History) != 2 {
			t.Fatalf("kept-1 after rebuild: %+v, %v", doc, err)
		}
		again, err := events.Rebuild(ctxT(t), js, b.Names())
		if err != nil || again != (events.Rebuilt{Events: 4, Malformed: 1}) {
			t.Fatalf("second rebuild: %+v, %v (want nothing applied)", again, err)
		}
		if _, err := events.Rebuild(ctxT(t), js, events.Names{Namespace: "nowhere-" + b.Names().Namespace}); err == nil {
			t.Fatal("rebuild of a namespace that does not exist succeeded")
		}
	})
}

// RecordNew skips the look-ups for a document id made just now; handed an id that has a state
// after all (a caller's mistake, or a projector that got there first), the state keeps every event.
func TestRecordNew(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		b := eventstest.Bus(t, nc)
		subj, _ := b.Names().Subject(events.Received, "http")
		received := func(id string) events.Event {
			ev, _ := events.NewEvent(events.Received, id+".received", "/sources/http/api", id, time.Now(), events.ReceivedData{DocumentID: id, Filename: id + ".pdf"})
			return ev
		}
		doc, err := b.RecordNew(ctxT(t), subj, received("fresh-1"))
		if err != nil || doc.Filename != "fresh-1.pdf" || len(doc.History) != 1 {
			t.Fatalf("RecordNew: %+v, %v", doc, err)
		}
		if got, err := b.States().Get(ctxT(t), "fresh-1"); err != nil || got.Filename != "fresh-1.pdf" {
			t.Fatalf("state after RecordNew: %+v, %v", got, err)
		}
		// A state exists already (here: the document's completion got there first).
		done, _ := events.NewEvent(events.Completed, "early.completed.gini", "/vendors/gini", "early", time.Now(), map[string]string{"vendor": "gini"})
		if _, _, err := b.States().Apply(ctxT(t), done, 0); err != nil {
			t.Fatal(err)
		}
		doc, err = b.RecordNew(ctxT(t), subj, received("early"))
		if err != nil || len(doc.History) != 2 || doc.Filename != "early.pdf" {
			t.Fatalf("RecordNew over an existing state: %+v, %v", doc, err)
		}
		// And again: the event is in the state once.
		if doc, err = b.RecordNew(ctxT(t), subj, received("early")); err != nil || len(doc.History) != 2 {
			t.Fatalf("RecordNew repeated: %+v, %v", doc, err)
		}
	})
}

// Every way an event gets into a document's state records where the stream holds it: RecordNew,
// Record of an event published before (the duplicate's acknowledgement names the first's
// sequence), and the projector for an event only published. FindEvent reads it back with one get
// from there.
func TestHistoryKnowsEachEventsSequence(t *testing.T) {
	onBoth(t, func(t *testing.T, nc *nats.Conn) {
		b := eventstest.Bus(t, nc)
		rs, _ := b.Names().Subject(events.Received, "http")
		ss, _ := b.Names().Subject(events.Submitted, "gini")
		cs, _ := b.Names().Subject(events.Completed, "gini")
		recv, _ := events.NewEvent(events.Received, "d.received", "/sources/http/api", "d", time.Now(), events.ReceivedData{DocumentID: "d", Filename: "d.pdf"})
		if _, err := b.RecordNew(ctxT(t), rs, recv); err != nil {
			t.Fatal(err)
		}
		sub, _ := events.NewEvent(events.Submitted, "d.submitted.gini", "/vendors/gini", "d", time.Now(), events.SubmittedData{DocumentID: "d", Vendor: "gini", VendorRef: "r"})
		if _, err := b.Publish(ctxT(t), ss, sub); err != nil { // a producer that crashed before its state write
			t.Fatal(err)
		}
		filler, _ := events.NewEvent(events.Submitted, "e.submitted.gini", "/vendors/gini", "e", time.Now(), events.SubmittedData{DocumentID: "e", Vendor: "gini", VendorRef: "r"})
		if _, err := b.Publish(ctxT(t), ss, filler); err != nil { // so that the last sequence is not the one
			t.Fatal(err)
		}
		if _, _, err := b.Record(ctxT(t), ss, sub); err != nil { // done again after a restart
			t.Fatal(err)
		}
		runProjector(t, b)
		done, _ := events.NewEvent(events.Completed, "d.completed.gini", "/vendors/gini", "d", time.Now(), events.CompletedData{DocumentID: "d", Vendor: "gini", VendorRef: "r"})
		if _, err := b.Publish(ctxT(t), cs, done); err != nil { // the projector writes this one
			t.Fatal(err)
		}
		var doc events.Document
		eventstest.WaitFor(t, 10*time.Second, "the projector to apply the completed event", func() bool {
			var err error
			doc, err = b.States().Get(ctxT(t), "d")
			return err == nil && doc.Status == events.StatusCompleted
		})
		if len(doc.History) != 3 {
			t.Fatalf("history %+v", doc.History)
		}
		if doc.History[0].Seq != 1 || doc.History[1].Seq != 2 || doc.History[2].Seq != 4 {
			t.Errorf("history %+v, want sequences 1, 2, 4", doc.History)
		}
		subjects := map[string]string{recv.ID: rs, sub.ID: ss, done.ID: cs}
		for _, h := range doc.History {
			if h.Seq == 0 {
				t.Errorf("%s: no sequence in the history", h.EventID)
				continue
			}
			ev, err := b.FindEvent(ctxT(t), subjects[h.EventID], events.HistoryEntry{EventID: h.EventID, Time: time.Now().Add(-time.Hour), Seq: h.Seq})
			if err != nil || ev.Sequence != h.Seq {
				t.Errorf("%s at %d: found at %d, %v", h.EventID, h.Seq, ev.Sequence, err)
			}
		}
	})
}
