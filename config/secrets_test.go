package config

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
)

func TestWeakToken(t *testing.T) {
	for _, tc := range []struct {
		token string
		weak  bool
	}{
		{"", true},
		{"aaaaaaaaaaaaaaaa", true}, // the example: one character
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true}, // long, still one character
		{"abababababababababababababababababababab", true},    // a repeated unit
		{"abcabcabcabcabcabcabcabcabcabcabcab", true},         // few distinct, not a whole period
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", true},
		{"0123456789abcdef", true},                       // 64 bits of hex
		{"callback-token-1", true},                       // 16 characters was the old rule
		{"3f9a1c77e0b24d5a9e6b8c1d2f4a6b7c", false},      // 32 hex: 128 bits
		{"3F9A1C77E0B24D5A9E6B8C1D2F4A6B7C", false},      // upper-case hex too
		{"pK3x_Vq9-LmZ2rT8wYb4Nc", false},                // 22 base64url: 132 bits
		{"p4ssw0rd-for-the-cluster-test-1", false},       // long enough with mixed classes
		{"01234567890123456789012345678901234567", true}, // digits only, and a repetition
	} {
		if got := WeakToken(tc.token) != ""; got != tc.weak {
			t.Errorf("WeakToken(%q): weak = %v (%.0f bits), want %v", tc.token, got, TokenBits(tc.token), tc.weak)
		}
	}
}

// Generated tokens pass the check every time, and the message suggesting one never repeats the
// weak token it refuses (it goes to logs and terminals).
func TestNewTokenIsStrongAndMessagesDoNotEcho(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		tok := NewToken()
		if len(tok) != 43 || seen[tok] {
			t.Fatalf("token %q: want 43 characters, each new", tok)
		}
		seen[tok] = true
		if weak := WeakToken(tok); weak != "" {
			t.Fatalf("generated token %q refused: %s", tok, weak)
		}
	}
	msg := WeakToken("shortsecret123")
	if msg == "" || strings.Contains(msg, "shortsecret123") || !strings.Contains(msg, "gen-token") {
		t.Fatalf("message %q: want a refusal that suggests gen-token and does not repeat the token", msg)
	}
}

// Random hex tokens of 32 characters are never refused for using few characters: the variety rule
// must not turn away what openssl rand -hex 16 prints.
func TestRandomHexPasses(t *testing.T) {
	for i := range 5000 {
		var b [16]byte
		_, _ = rand.Read(b[:])
		tok := hex.EncodeToString(b[:])
		if weak := WeakToken(tok); weak != "" {
			t.Fatalf("random hex token %d %q refused (%.0f bits)", i, tok, TokenBits(tok))
		}
	}
}

func TestSecretsFindsEveryKindOfSecret(t *testing.T) {
	yaml := `
nats:
  url: nats://svc:natsurlpass@10.0.0.1:4222,nats://svc:natsurlpass2@10.0.0.2:4222
  password: ""
http:
  api_keys: ["apikey-one-0123456789abcdef", "apikey-two-0123456789abcdef"]
sources:
  imap:
    - name: inbox
      host: imap.example.com
      username: bot
      password: imappass-secret
      mailbox: INBOX
vendors:
  allspark:
    api_key: allspark-api-key
    callback_token: allspark-callback-token
  cradl:
    client_secret: cradl-client-secret
    webhook_secret: cradl-webhook-secret
    smtp: {password: cradl-smtp-pass}
  documine:
    token_url: https://auth.example.com/token
    client_id: public-client-id
`
	cfg, err := Parse([]byte(yaml), "test.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	got := cfg.Secrets()
	for _, want := range []string{"natsurlpass", "natsurlpass2", "apikey-one-0123456789abcdef", "apikey-two-0123456789abcdef",
		"imappass-secret", "allspark-api-key", "allspark-callback-token", "cradl-client-secret", "cradl-webhook-secret", "cradl-smtp-pass"} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets() misses %q (got %q)", want, got)
		}
	}
	for _, not := range []string{"https://auth.example.com/token", "public-client-id", "bot", "imap.example.com"} {
		if slices.Contains(got, not) {
			t.Errorf("Secrets() holds %q, which is not a secret", not)
		}
	}
}

// Whatever a configuration holds, the check neither panics nor repeats the secret it refuses.
func FuzzWeakToken(f *testing.F) {
	for _, s := range []string{"", "a", "aaaaaaaaaaaaaaaa", "3f9a1c77e0b24d5a9e6b8c1d2f4a6b7c", "päss wörd ✓✓✓✓", "\x00\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		msg := WeakToken(s)
		// (Beyond what the message says of any token: "least 128" is weak too.)
		if msg != "" && len(s) >= 6 && strings.Count(msg, s) > strings.Count(WeakToken(""), s) {
			t.Fatalf("the refusal repeats the token: %q", msg)
		}
		if bits := TokenBits(s); bits < 0 || bits > float64(len(s))*7 {
			t.Fatalf("TokenBits(%q) = %f", s, bits)
		}
	})
}
