package dispatch

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/ingest-dev/ingest/events"
)

// Rule sends matching documents to vendors. Empty match fields match anything.
type Rule struct {
	Name        string
	SourceKind  string // http, imap, webdav
	SourceName  string
	Filename    string // a glob: *.pdf, invoice-*
	ContentType string // a glob: application/pdf, image/*
	Vendors     []string
}

// Router decides which vendors a document goes to.
type Router struct {
	rules   []Rule
	enabled map[string]bool
}

// NewRouter checks rules against the enabled vendors.
func NewRouter(rules []Rule, enabled []string) (*Router, error) {
	r := &Router{rules: rules, enabled: map[string]bool{}}
	for _, v := range enabled {
		r.enabled[v] = true
	}
	seen := map[string]bool{}
	for i, rule := range rules {
		if rule.Name == "" {
			return nil, fmt.Errorf("route %d has no name", i+1)
		}
		if seen[rule.Name] {
			return nil, fmt.Errorf("route %q is defined twice", rule.Name)
		}
		seen[rule.Name] = true
		for _, g := range []string{rule.Filename, rule.ContentType} {
			if _, err := path.Match(g, ""); err != nil {
				return nil, fmt.Errorf("route %q: bad pattern %q: %w", rule.Name, g, err)
			}
		}
		if len(rule.Vendors) == 0 {
			return nil, fmt.Errorf("route %q names no vendor", rule.Name)
		}
		for _, v := range rule.Vendors {
			if !r.enabled[v] {
				return nil, fmt.Errorf("route %q names vendor %q, which is not enabled", rule.Name, v)
			}
		}
	}
	return r, nil
}

// Check says whether an upload's explicit choice can be honoured, so that the HTTP drop can refuse
// it at once rather than accept a document that will fail.
func (r *Router) Check(vendors []string, route string) error {
	for _, v := range vendors {
		if !r.enabled[v] {
			return fmt.Errorf("vendor %q is not enabled (enabled: %s)", v, r.enabledList())
		}
	}
	if route != "" && r.rule(route) == nil {
		return fmt.Errorf("there is no route %q", route)
	}
	return nil
}

// Route returns the vendors for a received document and the route that chose them: the vendors
// the sender named, else the route the sender named, else the first rule that matches. No match
// gives no vendors.
func (r *Router) Route(d events.ReceivedData) (vendors []string, route string, err error) {
	if len(d.Vendors) > 0 {
		if err := r.Check(d.Vendors, ""); err != nil {
			return nil, "", err
		}
		return d.Vendors, "", nil
	}
	if d.Route != "" {
		rule := r.rule(d.Route)
		if rule == nil {
			return nil, "", fmt.Errorf("there is no route %q", d.Route)
		}
		return rule.Vendors, rule.Name, nil
	}
	for _, rule := range r.rules {
		if matches(rule, d) {
			return rule.Vendors, rule.Name, nil
		}
	}
	return nil, "", nil
}

func (r *Router) rule(name string) *Rule {
	for i := range r.rules {
		if r.rules[i].Name == name {
			return &r.rules[i]
		}
	}
	return nil
}

func (r *Router) enabledList() string {
	var names []string
	for v := range r.enabled {
		names = append(names, v)
	}
	if len(names) == 0 {
		return "none"
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func matches(rule Rule, d events.ReceivedData) bool {
	glob := func(pattern, s string) bool {
		if pattern == "" {
			return true
		}
		ok, _ := path.Match(strings.ToLower(pattern), strings.ToLower(s))
		return ok
	}
	// The content type is matched without parameters: "text/plain; charset=utf-8" is text/plain.
	ct, _, _ := strings.Cut(d.ContentType, ";")
	return (rule.SourceKind == "" || rule.SourceKind == d.Source.Kind) &&
		(rule.SourceName == "" || rule.SourceName == d.Source.Name) &&
		glob(rule.Filename, d.Filename) && glob(rule.ContentType, strings.TrimSpace(ct))
}
