package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	ev, err := events.NewEvent(events.Received, "doc1.received", events.SourceURI("http", "api"), "doc1", at,
		events.ReceivedData{DocumentID: "doc1", Filename: "a.pdf", Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(ev)
	// The wire form has exactly the CloudEvents attribute names.
	var attrs map[string]any
	if err := json.Unmarshal(raw, &attrs); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"specversion": "1.0", "id": "doc1.received", "source": "/sources/http/api",
		"type": "ingest.document.received", "subject": "doc1", "time": "2026-11-27T09:00:00Z",
		"datacontenttype": "application/json",
	} {
		if attrs[k] != want {
			t.Errorf("%s = %v, want %v", k, attrs[k], want)
		}
	}
	back, err := events.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if back.Kind() != events.Received {
		t.Fatalf("kind %q", back.Kind())
	}
	var d events.ReceivedData
	if err := back.DecodeData(&d); err != nil || d.Filename != "a.pdf" || d.Size != 3 {
		t.Fatalf("data %+v, %v", d, err)
	}
}

func TestNewEventRejectsUnknownKind(t *testing.T) {
	if _, err := events.NewEvent("exploded", "x", "/s", "d", time.Now(), struct{}{}); err == nil {
		t.Fatal("accepted an unknown kind")
	}
}

func TestDecodeRejects(t *testing.T) {
	good := `{"specversion":"1.0","id":"i","source":"/s","type":"ingest.document.failed","subject":"d","data":{}}`
	if _, err := events.Decode([]byte(good)); err != nil {
		t.Fatalf("good event rejected: %v", err)
	}
	cases := map[string]string{
		"not json":        `{"specversion":`,
		"old spec":        strings.Replace(good, `"1.0"`, `"0.3"`, 1),
		"no id":           strings.Replace(good, `"id":"i"`, `"id":""`, 1),
		"no subject":      strings.Replace(good, `"subject":"d"`, `"subject":""`, 1),
		"foreign type":    strings.Replace(good, "ingest.document.failed", "com.example.thing", 1),
		"unknown kind":    strings.Replace(good, "ingest.document.failed", "ingest.document.exploded", 1),
		"data not object": strings.Replace(good, `"data":{}`, `"data":"hello"`, 1),
		"data missing":    strings.Replace(good, `,"data":{}`, ``, 1),
		"array":           `[1,2]`,
		"empty":           ``,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := events.Decode([]byte(in))
			if !errors.Is(err, events.ErrMalformedEvent) {
				t.Fatalf("err = %v, want ErrMalformedEvent", err)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	n := events.Names{Namespace: "ingest"}
	if n.Stream() != "INGEST" || n.AllSubjects() != "ingest.>" || n.DocumentsBucket() != "ingest-documents" || n.StateBucket() != "ingest-state" {
		t.Fatalf("contract names changed: %s %s %s %s", n.Stream(), n.AllSubjects(), n.DocumentsBucket(), n.StateBucket())
	}
	cases := []struct {
		kind events.Kind
		q    string
		want string
	}{
		{events.Received, "http", "ingest.document.received.http"},
		{events.Submitted, "gini", "ingest.document.submitted.gini"},
		{events.Completed, "laigo", "ingest.document.completed.laigo"},
		{events.Failed, "allspark", "ingest.document.failed.allspark"},
		{events.Rejected, "imap", "ingest.document.rejected.imap"},
		{events.Received, "", ""},
		{events.Received, "a.b", ""},
		{events.Received, "*", ""},
		{events.Received, ">", ""},
		{events.Received, "Gini", ""},
		{"weird", "http", ""},
	}
	for _, c := range cases {
		got, err := n.Subject(c.kind, c.q)
		if c.want == "" {
			if err == nil {
				t.Errorf("Subject(%s, %q) = %q, want an error", c.kind, c.q, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Subject(%s, %q) = %q, %v; want %q", c.kind, c.q, got, err, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"i","source":"/s","type":"ingest.document.received","subject":"d","data":{"size":1}}`))
	f.Add([]byte(`{"specversion":"1.0","data":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := events.Decode(b)
		if err != nil {
			return
		}
		if ev.ID == "" || ev.Subject == "" || ev.Kind() == "" {
			t.Fatalf("Decode accepted an incomplete event: %+v", ev)
		}
		var m map[string]any
		_ = ev.DecodeData(&m) // must not panic
	})
}
