package webhooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
)

// Format is how a delivery's body is labelled.
type Format string

const (
	// FormatJSON sends the CloudEvent as application/json.
	FormatJSON Format = "json"
	// FormatCloudEvents is CloudEvents HTTP structured mode: application/cloudevents+json.
	FormatCloudEvents Format = "cloudevents"
)

// Subscription is one webhook receiver and what it wants.
type Subscription struct {
	Name string
	URL  string
	// Kinds and Subjects select events (either matching is enough); neither: every document
	// event.
	Kinds    []events.Kind
	Subjects []string
	// SourceKind, SourceName and Route narrow by the document (empty: anything).
	SourceKind, SourceName, Route string
	// Secrets are the whsec_… secrets; each signs every delivery.
	Secrets     []string
	Headers     map[string]string
	Timeout     time.Duration // one attempt; default 10 s
	MaxAttempts int           // default 8
	MaxAge      time.Duration // from the event's time; default 72 h
	Format      Format
	// Ordered: one delivery at a time, in stream order.
	Ordered bool
	// MaxInFlight: deliveries at once when not ordered (default 16).
	MaxInFlight         int
	AllowPrivateTargets bool
}

// FromConfig turns a configured subscription into a Subscription.
func FromConfig(c config.Subscription) Subscription {
	s := Subscription{
		Name: c.Name, URL: c.URL, Subjects: c.Subjects,
		SourceKind: c.Filters.SourceKind, SourceName: c.Filters.SourceName, Route: c.Filters.Route,
		Secrets: c.Secret, Headers: c.Headers, Timeout: c.Timeout.Std(), MaxAttempts: c.MaxAttempts,
		MaxAge: c.MaxAge.Std(), Format: Format(c.Format), Ordered: c.Ordered, MaxInFlight: c.MaxInFlight,
		AllowPrivateTargets: c.AllowPrivateTargets,
	}
	for _, e := range c.Events {
		s.Kinds = append(s.Kinds, events.Kind(e))
	}
	return s
}

func (s *Subscription) defaults() {
	if s.Timeout <= 0 {
		s.Timeout = 10 * time.Second
	}
	if s.MaxAttempts <= 0 {
		s.MaxAttempts = len(DefaultSchedule)
	}
	if s.MaxAge <= 0 {
		s.MaxAge = 72 * time.Hour
	}
	if s.Format == "" {
		s.Format = FormatJSON
	}
	if s.MaxInFlight <= 0 {
		s.MaxInFlight = 16
	}
}

// fingerprint identifies what a receiver was told about: a subscription disabled by a 410 stays
// disabled until its URL or settings change (then it is a different receiver, or one fixed).
func (s Subscription) fingerprint() string {
	b, _ := json.Marshal(struct {
		URL      string
		Kinds    []events.Kind
		Subjects []string
		Secrets  []string
		Headers  map[string]string
	}{s.URL, s.Kinds, s.Subjects, s.Secrets, s.Headers})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// wants reports whether the subscription takes an event on subject (before the document
// filters).
func (s Subscription) wants(names events.Names, subject string, kind events.Kind) bool {
	if len(s.Kinds) == 0 && len(s.Subjects) == 0 {
		return true
	}
	if slices.Contains(s.Kinds, kind) {
		return true
	}
	for _, p := range s.Subjects {
		if subjectMatches(p, subject) {
			return true
		}
	}
	return false
}

// filtered reports whether the document filters are set.
func (s Subscription) filtered() bool {
	return s.SourceKind != "" || s.SourceName != "" || s.Route != ""
}

// docFacts are what the filters look at.
type docFacts struct {
	sourceKind, sourceName, route string
}

// facts reads source and route from the event where it carries them, else from the
// document's state (a completed event does not repeat where the document came from).
func facts(ctx context.Context, bus *events.Bus, ev events.Event) (docFacts, error) {
	switch ev.Kind() {
	case events.Received:
		var d events.ReceivedData
		if err := ev.DecodeData(&d); err != nil {
			return docFacts{}, err
		}
		return docFacts{d.Source.Kind, d.Source.Name, d.Route}, nil
	case events.Rejected:
		var d events.RejectedData
		if err := ev.DecodeData(&d); err != nil {
			return docFacts{}, err
		}
		return docFacts{sourceKind: d.Source.Kind, sourceName: d.Source.Name}, nil
	}
	doc, err := bus.States().Get(ctx, ev.Subject)
	if err != nil {
		return docFacts{}, fmt.Errorf("read the state of document %s for the subscription's filters: %w", ev.Subject, err)
	}
	return docFacts{doc.Source.Kind, doc.Source.Name, doc.Route}, nil
}

func (s Subscription) matches(f docFacts) bool {
	return (s.SourceKind == "" || s.SourceKind == f.sourceKind) &&
		(s.SourceName == "" || s.SourceName == f.sourceName) &&
		(s.Route == "" || s.Route == f.route)
}

// subjectMatches matches a NATS subject against a pattern with * and > wildcards.
func subjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}
