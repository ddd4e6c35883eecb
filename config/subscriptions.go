package config

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Subscription is one outbound webhook: the events it wants and where they go, signed as
// Standard Webhooks describes.
type Subscription struct {
	// Name identifies the subscription: its durable consumer, its dead letters
	// (<namespace>.delivery.failed.<name>), its metrics and the replay command.
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Events are short event types (received, submitted, completed, failed, rejected); Subjects
	// are full subjects, NATS wildcards allowed (ingest.document.completed.gini). An event that
	// matches either is delivered; with neither set, every document event is.
	Events   []string `yaml:"events"`
	Subjects []string `yaml:"subjects"`
	// Filters narrow further by the document's source and route (empty: anything).
	Filters SubscriptionFilters `yaml:"filters"`
	// Secret is one whsec_… secret or several: every one signs each delivery, so a receiver can
	// switch to a new secret before the old one is removed.
	Secret StringList `yaml:"secret"`
	// Headers are sent with every delivery (an Authorization a receiver's gateway wants, say).
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one attempt: connecting, sending, and reading the answer.
	Timeout Duration `yaml:"timeout"`
	// MaxAttempts and MaxAge (from the event's time) bound the retries; then the delivery becomes
	// a dead letter.
	MaxAttempts int      `yaml:"max_attempts"`
	MaxAge      Duration `yaml:"max_age"`
	// Format: json (the CloudEvent as an application/json body) or cloudevents (CloudEvents HTTP
	// structured mode: the same body as application/cloudevents+json).
	Format string `yaml:"format"`
	// Ordered delivers one event at a time, in stream order (and so in order per document).
	Ordered bool `yaml:"ordered"`
	// MaxInFlight is how many deliveries run at once when not ordered.
	MaxInFlight int `yaml:"max_in_flight"`
	// AllowPrivateTargets lets the URL resolve to loopback, private or link-local addresses
	// (refused otherwise, at connect time, so DNS cannot be turned against the network inside).
	AllowPrivateTargets bool `yaml:"allow_private_targets"`
}

// SubscriptionFilters select events by the document they are about.
type SubscriptionFilters struct {
	SourceKind string `yaml:"source_kind"` // http, imap, webdav
	SourceName string `yaml:"source_name"`
	Route      string `yaml:"route"`
}

// EventTypes are the short event types a subscription can name (events.Kind; the webhooks
// package's test holds the two lists together).
var EventTypes = []string{"received", "submitted", "completed", "failed", "rejected", "retried"}

// SubscriptionFormats are the body formats of a delivery.
var SubscriptionFormats = []string{"json", "cloudevents"}

// DefaultSubscription is a subscription before its keys are read.
func DefaultSubscription() Subscription {
	return Subscription{Timeout: Duration(10 * time.Second), MaxAttempts: 8, MaxAge: Duration(72 * time.Hour),
		Format: "json", MaxInFlight: 16}
}

// UnmarshalYAML reads a subscription over its defaults.
func (s *Subscription) UnmarshalYAML(n *yaml.Node) error {
	type plain Subscription
	p := plain(DefaultSubscription())
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = Subscription(p)
	return nil
}

// DecodeWebhookSecret returns the key of a Standard Webhooks secret: the base64 after whsec_.
func DecodeWebhookSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, fmt.Errorf("a webhook secret starts with whsec_ (generate one: echo whsec_$(openssl rand -base64 32))")
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("the part after whsec_ is not base64: %w", err)
	}
	// Standard Webhooks asks for 24 to 64 bytes; fewer than 16 is guessable.
	if len(key) < 16 || len(key) > 64 {
		return nil, fmt.Errorf("the secret is %d bytes; use 16 to 64 (echo whsec_$(openssl rand -base64 32))", len(key))
	}
	return key, nil
}

// validateSubscriptions reports every problem of the subscriptions.
func (c *Config) validateSubscriptions(bad Report) {
	names := map[string]bool{}
	prefix := c.NATS.Namespace + ".document."
	for i, s := range c.Subscriptions {
		key := fmt.Sprintf("subscriptions[%d]", i)
		// The name is a subject token (dead letters) and part of a durable's name.
		if !validNamespace(s.Name) {
			bad(key+".name", "%q must be 1-32 characters of a-z, 0-9, _ or -, starting with a letter", s.Name)
		} else if names[s.Name] {
			bad(key+".name", "subscription %q is defined twice", s.Name)
		}
		names[s.Name] = true
		if u, err := url.Parse(s.URL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			bad(key+".url", "%q is not an http(s) URL like https://erp.example.com/hooks/ingest", s.URL)
		} else if u.User != nil {
			bad(key+".url", "must not carry a user or password (put credentials in headers, from the environment)")
		}
		for _, e := range s.Events {
			if !slices.Contains(EventTypes, e) {
				bad(key+".events", "%q is not an event type (known: %s)", e, strings.Join(EventTypes, ", "))
			}
		}
		for _, subj := range s.Subjects {
			if !strings.HasPrefix(subj, prefix) || !validSubject(subj) {
				bad(key+".subjects", "%q is not a document event subject under %s (example: %scompleted.gini, or %scompleted.>)", subj, prefix, prefix, prefix)
			}
		}
		if len(s.Secret) == 0 {
			bad(key+".secret", "is required: at least one whsec_… secret (e.g. ${ERP_WEBHOOK_SECRET})")
		}
		for j, sec := range s.Secret {
			if _, err := DecodeWebhookSecret(sec); err != nil {
				bad(fmt.Sprintf("%s.secret[%d]", key, j), "%v", err)
			}
		}
		for h := range s.Headers {
			canon := http.CanonicalHeaderKey(h)
			if !validHeaderName(h) {
				bad(key+".headers", "%q is not a header name", h)
			} else if strings.HasPrefix(strings.ToLower(h), "webhook-") || canon == "Content-Type" || canon == "Content-Length" || canon == "Host" {
				bad(key+".headers", "%s is set by the delivery itself", h)
			}
			if strings.ContainsAny(s.Headers[h], "\r\n") {
				bad(key+".headers", "the value of %s must be one line", h)
			}
		}
		if s.Timeout.Std() < 100*time.Millisecond || s.Timeout.Std() > 5*time.Minute {
			bad(key+".timeout", "must be between 100ms and 5m")
		}
		if s.MaxAttempts < 1 || s.MaxAttempts > 100 {
			bad(key+".max_attempts", "must be between 1 and 100, not %d", s.MaxAttempts)
		}
		if s.MaxAge <= 0 {
			bad(key+".max_age", "must be positive")
		} else if s.MaxAge > c.NATS.Stream.MaxAge {
			bad(key+".max_age", "must be at most nats.stream.max_age (%s): older events are no longer in the stream", c.NATS.Stream.MaxAge)
		}
		if !slices.Contains(SubscriptionFormats, s.Format) {
			bad(key+".format", "%q is not one of %s", s.Format, strings.Join(SubscriptionFormats, ", "))
		}
		if s.MaxInFlight < 1 || s.MaxInFlight > 256 {
			bad(key+".max_in_flight", "must be between 1 and 256, not %d", s.MaxInFlight)
		}
		f := s.Filters
		switch f.SourceKind {
		case "", "http", "imap", "webdav":
		default:
			bad(key+".filters.source_kind", "%q is not one of http, imap, webdav", f.SourceKind)
		}
		if f.Route != "" {
			found := false
			for _, r := range c.Routes {
				found = found || r.Name == f.Route
			}
			if !found {
				bad(key+".filters.route", "there is no route %q", f.Route)
			}
		}
	}
}

// validSubject: dot-separated non-empty tokens without spaces; * a whole token; > only last.
func validSubject(s string) bool {
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "" || strings.ContainsAny(t, " \t\r\n") {
			return false
		}
		if (strings.Contains(t, "*") && t != "*") || (strings.Contains(t, ">") && (t != ">" || i != len(toks)-1)) {
			return false
		}
	}
	return true
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}
