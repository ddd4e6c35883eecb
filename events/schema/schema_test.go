package schema_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/schema"
)

const docFile = "../../docs/asyncapi.json"

// The committed document is the generated one: it cannot drift from the Go types.
func TestAsyncAPIFileIsCurrent(t *testing.T) {
	got, err := schema.AsyncAPI(events.Names{Namespace: "ingest"})
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if os.Getenv("INGEST_UPDATE_ASYNCAPI") != "" {
		if err := os.WriteFile(docFile, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(docFile)
	if err != nil || !bytes.Equal(got, want) {
		abs, _ := filepath.Abs(docFile)
		t.Fatalf("%s is not the document the Go types give (%v); regenerate it: INGEST_UPDATE_ASYNCAPI=1 go test ./events/schema", abs, err)
	}
	var doc struct {
		AsyncAPI string         `json:"asyncapi"`
		Channels map[string]any `json:"channels"`
	}
	if json.Unmarshal(got, &doc) != nil || doc.AsyncAPI != "3.0.0" || len(doc.Channels) != 8 {
		t.Fatalf("document: %+v", doc)
	}
}

func f(v float64) *float64 { return &v }
func i(v int) *int         { return &v }

// Values of every data type, as full as they get and as empty as they get, pass their schemas.
func TestGoValuesPassTheirSchemas(t *testing.T) {
	now := time.Now()
	full := map[string]any{
		"received": events.ReceivedData{DocumentID: "d", Source: events.SourceRef{Kind: "http", Name: "api"}, Filename: "a.pdf",
			ContentType: "application/pdf", Size: 3, SHA256: "00", ObjectKey: "k", Metadata: map[string]string{"a": "b"},
			Vendors: []string{"gini"}, Route: "r", ReceivedAt: now},
		"submitted": events.SubmittedData{DocumentID: "d", Vendor: "gini", VendorRef: "x", SubmittedAt: now, Attempts: 2, Reconciled: true, Route: "r", Round: 1},
		"completed": events.CompletedData{DocumentID: "d", Vendor: "gini", VendorRef: "x", Text: "t",
			Fields:    []events.Field{{Name: "n", Value: "v", Currency: "EUR", Confidence: f(0.5), Page: i(1), Box: &events.Box{X: 1, Y: 2, Width: 3, Height: 4}}},
			Artifacts: []events.Artifact{{Name: "a", ContentType: "application/zip", ObjectKey: "k", Size: 1}},
			Raw:       json.RawMessage(`{"any":[1,"thing"]}`), ResultObjectKey: "r", CompletedAt: now, Round: 1},
		"failed":          events.FailedData{DocumentID: "d", Vendor: "gini", VendorRef: "x", Error: "e", Permanent: true, Attempts: 3, FailedAt: now, Round: 1},
		"rejected":        events.RejectedData{DocumentID: "d", Source: events.SourceRef{Kind: "imap", Name: "m"}, Reason: "too_large", Detail: "x", RejectedAt: now},
		"retried":         events.RetriedData{DocumentID: "d", Vendor: "gini", Round: 2, RequestedAt: now, RequestedBy: "cli", PreviousError: "e"},
		"delivery_failed": events.DeliveryFailedData{Subscription: "s", EventID: "e", Attempts: 8, LastStatus: 500, FailedAt: now, LastAttemptAt: now, FirstAttemptAt: now},
	}
	for _, et := range schema.EventTypes(events.Names{Namespace: "ingest"}) {
		for which, v := range map[string]any{"full": full[et.Name], "empty": et.Data} {
			ev := events.Event{SpecVersion: "1.0", ID: "x", Source: "/s", Type: et.Type, Subject: "d", Time: now, DataContentType: "application/json"}
			ev.Data, _ = json.Marshal(v)
			if errs := validate(t, schema.Envelope(et), ev); len(errs) > 0 {
				t.Errorf("%s (%s): %v", et.Name, which, errs)
			}
		}
	}
}

func validate(t *testing.T, s *schema.Schema, v any) []string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return s.Validate(doc)
}

// The validator refuses what the schemas do not allow.
func TestValidatorRefuses(t *testing.T) {
	s := schema.For(events.FailedData{})
	cases := map[string]string{
		`{"document_id":"d","vendor":"v","error":"e","permanent":true,"failed_at":"2026-01-01T00:00:00Z","colour":"red"}`: `unknown property "colour"`,
		`{"document_id":"d","vendor":"v","error":"e","failed_at":"2026-01-01T00:00:00Z"}`:                                 `"permanent" is required`,
		`{"document_id":"d","vendor":"v","error":"e","permanent":"yes","failed_at":"2026-01-01T00:00:00Z"}`:               `$.permanent: want a boolean`,
		`{"document_id":"d","vendor":"v","error":"e","permanent":true,"failed_at":"yesterday"}`:                           `not an RFC 3339 date-time`,
		`{"document_id":"d","vendor":"v","error":"e","permanent":true,"failed_at":"2026-01-01T00:00:00Z","attempts":1.5}`: `want an integer`,
		`[]`: `want an object`,
	}
	for in, want := range cases {
		var doc any
		if err := json.Unmarshal([]byte(in), &doc); err != nil {
			t.Fatal(err)
		}
		errs := s.Validate(doc)
		if !strings.Contains(strings.Join(errs, "\n"), want) {
			t.Errorf("%s: got %v, want %q", in, errs, want)
		}
	}
	env := schema.Envelope(schema.EventTypes(events.Names{Namespace: "ingest"})[0])
	var doc any
	_ = json.Unmarshal([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"ingest.document.failed","subject":"d","time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","data":{}}`), &doc)
	if errs := env.Validate(doc); !strings.Contains(strings.Join(errs, "\n"), `want "ingest.document.received"`) {
		t.Errorf("type of another event accepted: %v", errs)
	}
}
