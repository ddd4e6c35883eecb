package config

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MinTokenBits is the least strength a shared secret of ours (API key, callback token) may have:
// what a guesser must search, judged by the alphabet its characters come from.
const MinTokenBits = 128

// NewToken returns a random token of 256 bits: 43 characters of the URL-safe base64 alphabet, so
// that it fits in a URL path, a header and a YAML file unquoted.
func NewToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (it panics if the OS cannot serve it)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// TokenBits estimates the strength of a secret in bits: its length times log2 of the alphabet it
// seems to be drawn from (hex, digits, letters, base64, printable). Low-variety strings score by
// the characters they actually use: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" is not 150 bits because
// a is a letter.
func TokenBits(s string) float64 {
	if s == "" {
		return 0
	}
	var lower, upper, digit, urlsafe, other bool
	hexLower, hexUpper := true, true
	distinct := map[rune]bool{}
	n := 0
	for _, r := range s {
		n++
		distinct[r] = true
		switch {
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= '0' && r <= '9':
			digit = true
		case r == '-' || r == '_':
			urlsafe = true
		default:
			other = true
		}
		isDigit := r >= '0' && r <= '9'
		hexLower = hexLower && (isDigit || r >= 'a' && r <= 'f')
		hexUpper = hexUpper && (isDigit || r >= 'A' && r <= 'F')
	}
	alphabet := 0
	switch {
	case other:
		alphabet = 95 // printable ASCII
	case urlsafe:
		alphabet = 64
	case digit && !lower && !upper:
		alphabet = 10
	case hexLower || hexUpper:
		alphabet = 16
	default:
		for _, c := range []struct {
			used bool
			size int
		}{{lower, 26}, {upper, 26}, {digit, 10}} {
			if c.used {
				alphabet += c.size
			}
		}
	}
	// A random string of these lengths uses a good part of its alphabet (22 base64 characters:
	// about 19 distinct); one that uses few is not random, whatever its classes say.
	alphabet = min(alphabet, 4*len(distinct))
	if alphabet < 2 {
		return 0
	}
	bits := float64(n) * math.Log2(float64(alphabet))
	// A repeated unit ("abcdabcdab…") is worth its unit.
	if p := period(s); p < len(s) {
		bits = bits * float64(p) / float64(len(s))
	}
	return bits
}

// period is the length of the shortest unit s repeats ("abcabcab": 3), len(s) when none does
// within its first half.
func period(s string) int {
	for p := 1; p <= len(s)/2; p++ {
		if s[p:] == s[:len(s)-p] {
			return p
		}
	}
	return len(s)
}

// WeakToken says why s is too weak to be a shared secret, with a strong one to use instead; "" when
// it is strong enough. The message never repeats s: it goes to logs and terminals.
func WeakToken(s string) string {
	bits := TokenBits(s)
	if bits >= MinTokenBits {
		return ""
	}
	return fmt.Sprintf("is too easy to guess (about %d bits; at least %d needed): use a random value such as %s (ingest config gen-token prints a new one; use ${ENV_VAR} to keep it out of the file)",
		int(bits), MinTokenBits, NewToken())
}

// Secrets returns every secret value in the configuration — API keys, passwords, tokens, client
// secrets, in the service's own keys and in the vendors' sections — and the passwords of URLs
// with credentials in them, so that logs can be scrubbed of them. A key holds a secret when its
// name says so (password, token, secret, api_key … and their *_ forms).
func (c Config) Secrets() []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		s = strings.TrimSpace(s)
		// Shorter values are not secrets worth the name (and would scrub ordinary words).
		if len(s) >= 6 && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	collectSecrets(reflect.ValueOf(c), false, add)
	return out
}

// secretKey says whether a YAML key names a secret value.
func secretKey(name string) bool {
	switch name {
	case "password", "token", "secret", "secrets", "api_key", "api_keys":
		return true
	case "headers": // extra headers sent with a webhook: Authorization and its kind
		return true
	}
	for _, suffix := range []string{"_password", "_token", "_tokens", "_secret", "_secrets", "_api_key", "_api_keys"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

func collectSecrets(v reflect.Value, secret bool, add func(string)) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			collectSecrets(v.Elem(), secret, add)
		}
	case reflect.String:
		if secret {
			add(v.String())
		} else {
			addURLPasswords(v.String(), add)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			collectSecrets(v.Index(i), secret, add)
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			collectSecrets(iter.Value(), secret, add)
		}
	case reflect.Struct:
		if v.Type() == sectionType {
			if n := v.Interface().(Section).node; n != nil {
				collectNodeSecrets(n, false, add)
			}
			return
		}
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			collectSecrets(v.Field(i), secret || secretKey(name), add)
		}
	}
}

func collectNodeSecrets(n *yaml.Node, secret bool, add func(string)) {
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias != nil {
			collectNodeSecrets(n.Alias, secret, add)
		}
	case yaml.ScalarNode:
		if secret {
			add(n.Value)
		} else {
			addURLPasswords(n.Value, add)
		}
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			collectNodeSecrets(c, secret, add)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			collectNodeSecrets(n.Content[i+1], secret || secretKey(n.Content[i].Value), add)
		}
	}
}

// addURLPasswords adds the passwords of URLs with credentials (nats://user:pass@host, a
// comma-separated list of them).
func addURLPasswords(s string, add func(string)) {
	if !strings.Contains(s, "@") {
		return
	}
	for _, part := range strings.Split(s, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || u.User == nil {
			continue
		}
		if p, ok := u.User.Password(); ok {
			add(p)
		} else if u.User.Username() != "" && u.Scheme == "nats" {
			add(u.User.Username()) // nats://token@host: the user part is a token
		}
	}
}
