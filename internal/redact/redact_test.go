package redact_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/internal/redact"
)

type point struct{ Token string }

func TestSecretsNeverReachTheLog(t *testing.T) {
	const tok, key, pass = "cb-Tok3n-8f2e9a7c41d0b6e5", "api-K3y-0c9d8e7f6a5b4c3d", "nats-pa55-word"
	u, _ := url.Parse("nats://svc:" + pass + "@10.0.0.1:4222")
	for name, log := range map[string]func(*slog.Logger){
		"message":         func(l *slog.Logger) { l.Info("callback at /v1/callbacks/allspark/" + tok) },
		"string attr":     func(l *slog.Logger) { l.Info("request", "path", "/v1/callbacks/allspark/"+tok) },
		"error attr":      func(l *slog.Logger) { l.Error("connect", "err", fmt.Errorf("dial %s: refused", u)) },
		"stringer attr":   func(l *slog.Logger) { l.Info("connect", "url", u) },
		"struct attr":     func(l *slog.Logger) { l.Info("config", "section", point{Token: tok}) },
		"bytes attr":      func(l *slog.Logger) { l.Info("body", "body", []byte(`{"key":"`+key+`"}`)) },
		"group":           func(l *slog.Logger) { l.Info("req", slog.Group("auth", "header", "Bearer "+key)) },
		"with attrs":      func(l *slog.Logger) { l.With("token", tok).Info("started") },
		"with group":      func(l *slog.Logger) { l.WithGroup("g").Info("x", "err", errors.New("bad key "+key)) },
		"two in one":      func(l *slog.Logger) { l.Info(key + " and " + tok) },
		"secret in a key": func(l *slog.Logger) { l.Info("x", "value", strings.Repeat(tok, 3)) },
	} {
		for format, mk := range map[string]func(*bytes.Buffer) slog.Handler{
			"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
			"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		} {
			var buf bytes.Buffer
			log(slog.New(redact.New(mk(&buf), []string{tok, key, pass, ""})))
			out := buf.String()
			for _, secret := range []string{tok, key, pass} {
				if strings.Contains(out, secret) {
					t.Errorf("%s (%s): the log holds %q: %s", name, format, secret, out)
				}
			}
			if !strings.Contains(out, redact.Mark) {
				t.Errorf("%s (%s): nothing was marked as redacted: %s", name, format, out)
			}
		}
	}
}

// Lines without secrets are written as they were, types included.
func TestOtherLinesAreUntouched(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(redact.New(slog.NewJSONHandler(&buf, nil), []string{"s3cr3t-value"}))
	l.Info("upload", "bytes", 1234, "ok", true, "path", "/v1/documents")
	if got := buf.String(); !strings.Contains(got, `"bytes":1234`) || !strings.Contains(got, `"ok":true`) || strings.Contains(got, redact.Mark) {
		t.Fatalf("untouched line changed: %s", got)
	}
}

// A secret that contains another is replaced whole, not left with its tail showing.
func TestLongerSecretsFirst(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(redact.New(slog.NewTextHandler(&buf, nil), []string{"abcdef", "abcdef-longer-secret"}))
	l.Info("x", "v", "abcdef-longer-secret")
	if got := buf.String(); strings.Contains(got, "longer-secret") {
		t.Fatalf("the longer secret leaks: %s", got)
	}
}

// The cost of scrubbing one request log line, against writing it unscrubbed.
func BenchmarkHandle(b *testing.B) {
	secrets := []string{"cb-Tok3n-8f2e9a7c41d0b6e5", "api-K3y-0c9d8e7f6a5b4c3d", "nats-pa55-word", "imap-pass-1234", "client-secret-xyz"}
	for name, h := range map[string]slog.Handler{
		"plain":    slog.NewJSONHandler(io.Discard, nil),
		"redacted": redact.New(slog.NewJSONHandler(io.Discard, nil), secrets),
	} {
		b.Run(name, func(b *testing.B) {
			l := slog.New(h)
			b.ReportAllocs()
			for b.Loop() {
				l.Info("http request", "method", "POST", "path", "/v1/documents", "status", 202, "bytes_in", 102400,
					"duration", "1.2ms", "remote", "127.0.0.1", "request_id", "0123456789abcdef01234567", "err", errors.New("none"))
			}
		})
	}
}

// Values that cannot be compared (slices, maps) pass through, scrubbed where needed.
func TestUncomparableValues(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(redact.New(slog.NewJSONHandler(&buf, nil), []string{"s3cr3t-value"}))
	l.Info("x", "list", []string{"a", "b"}, "map", map[string]int{"n": 1})
	l.Info("y", "list", []string{"a", "s3cr3t-value"})
	if got := buf.String(); !strings.Contains(got, `"list":["a","b"]`) || strings.Contains(got, "s3cr3t-value") {
		t.Fatalf("%s", got)
	}
}
