package cradl

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Signature errors; each is answered 401 except a replayed nonce (409).
var (
	errUnsigned = errors.New("the callback is not signed (no X-Cradl-Signature), and require_signed_webhooks is on: " +
		"Cradl's classic workflow exports are unsigned — set require_signed_webhooks: false to take them on the secret URL alone")
	errBadSig = errors.New("the signature does not match")
	errStale  = errors.New("the timestamp is outside the 5 minute window")
)

// MaxSkew is how far a signed callback's timestamp may be from our clock (the callback receiver
// remembers nonces a little longer than twice that).
const MaxSkew = 5 * time.Minute

// WebhookVerifier checks Cradl's webhooks with the secret shared with Cradl. It is a
// vendors.CallbackVerifier.
//
// Cradl signs method + URL + the headers its X-Cradl-SignedHeaders lists + body (its own
// receiver, n8n-nodes-cradlai verifySignature, reads it so); nothing requires the timestamp or the
// nonce to be among them, or to be sent at all. So a timestamp, when sent, must be within
// MaxSkew, and a nonce, when sent, must be new; a signature, when sent, must hold. An unsigned
// request — what Cradl's classic workflow export sends — is taken only when RequireSigned is off
// (the secret URL is then its only proof).
type WebhookVerifier struct {
	Secret        string
	RequireSigned bool
}

// VerifyCallback checks a webhook; see WebhookVerifier. It returns the nonce to remember.
func (v WebhookVerifier) VerifyCallback(r *http.Request, publicURL string, body []byte, now time.Time) (string, error) {
	if err := v.PrecheckCallback(r.Header, now); err != nil {
		return "", err
	}
	sig := strings.TrimSpace(r.Header.Get("X-Cradl-Signature"))
	if sig == "" {
		return "", nil // unsigned, and allowed (PrecheckCallback said so)
	}
	canonical, err := cradlCanonical(r.Method, publicURL, r.URL.RequestURI(), r.Header, r.Header.Get("X-Cradl-SignedHeaders"), body)
	if err != nil {
		return "", err
	}
	want := hmac.New(sha256.New, []byte(v.Secret))
	want.Write([]byte(canonical))
	got, err := hex.DecodeString(strings.ToLower(sig))
	if err != nil || !hmac.Equal(got, want.Sum(nil)) {
		return "", errBadSig
	}
	return strings.TrimSpace(r.Header.Get("X-Cradl-Nonce")), nil
}

// PrecheckCallback refuses, before the body is read, an unsigned webhook when signatures are
// required, and one whose timestamp is outside the window. The timestamp is not trusted by this
// (the signature that may cover it is checked later); a request that fails here would fail there
// too.
func (v WebhookVerifier) PrecheckCallback(h http.Header, now time.Time) error {
	if strings.TrimSpace(h.Get("X-Cradl-Signature")) == "" && v.RequireSigned {
		return errUnsigned
	}
	if ts := strings.TrimSpace(h.Get("X-Cradl-Timestamp")); ts != "" {
		return inWindow(ts, now)
	}
	return nil
}

// inWindow checks a timestamp (unix seconds) against MaxSkew.
func inWindow(ts string, now time.Time) error {
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w (%q is not unix seconds)", errStale, ts)
	}
	if d := now.Sub(time.Unix(secs, 0)); d > MaxSkew || d < -MaxSkew {
		return errStale
	}
	return nil
}

// cradlCanonical is the string Cradl signs, as its own receiver (n8n-nodes-cradlai
// verifySignature) reads it: upper-case method, the full URL as the sender called it, then for
// each name of X-Cradl-SignedHeaders — split at commas and sorted as written — "name:value" with
// the name in lower case, then the raw body; no separators. publicURL replaces scheme and host:
// behind a proxy the request we see is not the one Cradl made. A signed header that is missing
// is an error there, and here. No X-Cradl-SignedHeaders: no header is signed.
func cradlCanonical(method, publicURL, requestURI string, h http.Header, signedList string, body []byte) (string, error) {
	var names []string
	if strings.TrimSpace(signedList) != "" {
		names = strings.Split(signedList, ",")
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(strings.ToUpper(method))
	b.WriteString(strings.TrimRight(publicURL, "/"))
	b.WriteString(requestURI)
	for _, name := range names {
		if name == "" {
			continue
		}
		v, ok := h[http.CanonicalHeaderKey(name)]
		if !ok || len(v) == 0 {
			return "", fmt.Errorf("%w: signed header %q is missing", errBadSig, name)
		}
		b.WriteString(strings.ToLower(name))
		b.WriteByte(':')
		b.WriteString(v[0])
	}
	b.Write(body)
	return b.String(), nil
}
