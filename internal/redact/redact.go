// Package redact keeps secrets out of logs: a slog.Handler that replaces every occurrence of a
// known secret value — in messages, string attributes, errors and anything else that prints as
// text — before the line is written.
//
// It is the net under the places that already leave secrets out (request paths with their token
// element replaced, URLs printed without credentials): an error from a library that quotes a URL
// with a password, a vendor's error page that echoes our request, a key pasted into the wrong
// field of the configuration.
package redact

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Mark is what a secret is replaced with.
const Mark = "[REDACTED]"

// Handler scrubs records before passing them to the next handler.
type Handler struct {
	next    slog.Handler
	secrets []string
	r       *strings.Replacer
}

// New wraps next so that none of secrets reaches it. Empty strings are ignored; longer secrets are
// replaced first, so that one containing another is not left half-written.
func New(next slog.Handler, secrets []string) *Handler {
	var list []string
	for _, s := range secrets {
		if s != "" && !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	slices.SortFunc(list, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(list))
	for _, s := range list {
		pairs = append(pairs, s, Mark)
	}
	return &Handler{next: next, secrets: list, r: strings.NewReplacer(pairs...)}
}

// Enabled reports whether the next handler takes records at level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle scrubs the record's message and attributes and hands it on.
func (h *Handler) Handle(ctx context.Context, rec slog.Record) error {
	if len(h.secrets) == 0 {
		return h.next.Handle(ctx, rec)
	}
	// Most lines hold no secret: they are passed on as they are, without a copy.
	clean := !h.holds(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		_, dirty := h.scrub(a)
		clean = !dirty
		return clean
	})
	if clean {
		return h.next.Handle(ctx, rec)
	}
	out := slog.NewRecord(rec.Time, rec.Level, h.String(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

// WithAttrs scrubs attrs once, when they are attached.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		clean[i] = h.attr(a)
	}
	return &Handler{next: h.next.WithAttrs(clean), secrets: h.secrets, r: h.r}
}

// WithGroup opens a group on the next handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), secrets: h.secrets, r: h.r}
}

// String returns s with every secret replaced.
func (h *Handler) String(s string) string {
	if !h.holds(s) {
		return s
	}
	return h.r.Replace(s)
}

func (h *Handler) holds(s string) bool {
	for _, secret := range h.secrets {
		if strings.Contains(s, secret) {
			return true
		}
	}
	return false
}

func (h *Handler) attr(a slog.Attr) slog.Attr {
	out, _ := h.scrub(a)
	return out
}

// scrub returns a with its secrets replaced, and whether there were any.
func (h *Handler) scrub(a slog.Attr) (slog.Attr, bool) {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); h.holds(s) {
			return slog.String(a.Key, h.r.Replace(s)), true
		}
	case slog.KindGroup:
		group := v.Group()
		clean := make([]slog.Attr, len(group))
		dirty := false
		for i, g := range group {
			var d bool
			clean[i], d = h.scrub(g)
			dirty = dirty || d
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(clean...)}, dirty
	case slog.KindAny:
		// Errors, URLs, byte slices, structs: whatever prints a secret is written as its
		// scrubbed text instead.
		var s string
		switch x := v.Any().(type) {
		case error:
			s = x.Error()
		case []byte:
			s = string(x)
		default:
			s = fmt.Sprint(x)
		}
		if h.holds(s) {
			return slog.String(a.Key, h.r.Replace(s)), true
		}
	}
	return slog.Attr{Key: a.Key, Value: v}, false
}
