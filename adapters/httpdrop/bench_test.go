package httpdrop_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/ingest-dev/ingest/events/eventstest"
)

// BenchmarkUpload100KiB is one raw-body upload through the handler over loopback HTTP, up to
// its 202 (the bytes in the Object Store, the received event's PubAck), on an embedded NATS.
// Allocations per upload show in review when the path starts buffering:
//
//	go test -run XXX -bench Upload -benchmem ./adapters/httpdrop
func BenchmarkUpload100KiB(b *testing.B) {
	h := newHarness(b, eventstest.Embedded(b), 1<<20)
	body := pdf(100 << 10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := h.do("POST", "/v1/documents?filename=bench.pdf", "application/pdf", bytes.NewReader(body), nil)
		if r.status != http.StatusAccepted {
			b.Fatalf("%d %s", r.status, r.body)
		}
	}
}
