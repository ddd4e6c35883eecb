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
	errUnsigned    = errors.New("the callback is not signed (X-Cradl-Signature and its companions are missing)")
	errBadSig      = errors.New("the signature does not match")
	errStale       = errors.New("the timestamp is outside the 5 minute window")
	errUnsignedHdr = errors.New("X-Cradl-SignedHeaders must include x-cradl-timestamp and x-cradl-nonce")
)

// MaxSkew is how far a signed callback's timestamp may be from our clock (the callback receiver
// remembers nonces a little longer than twice that).
const MaxSkew = 5 * time.Minute

// WebhookVerifier checks Cradl's signed webhooks with the secret shared with Cradl. It is a
// vendors.CallbackVerifier.
type WebhookVerifier struct{ Secret string }

// VerifyCallback refuses a webhook that is not signed with Secret; see verifyCradl.
func (v WebhookVerifier) VerifyCallback(r *http.Request, publicURL string, body []byte, now time.Time) (string, error) {
	return verifyCradl(v.Secret, r, publicURL, body, now)
}

// PrecheckCallback refuses, before the body is read, a webhook without Cradl's signature headers
// or with a timestamp outside the window. The timestamp is not trusted by this (the signature
// that covers it is checked later); a request that fails here would fail there too.
func (v WebhookVerifier) PrecheckCallback(h http.Header, now time.Time) error {
	if _, err := signatureHeaders(h); err != nil {
		return err
	}
	return inWindow(strings.TrimSpace(h.Get("X-Cradl-Timestamp")), now)
}

// signatureHeaders returns the names Cradl says it signed, after checking that every signature
// header is there and that timestamp and nonce are among the signed ones (else a replay could
// carry new ones).
func signatureHeaders(h http.Header) (list string, err error) {
	list = h.Get("X-Cradl-SignedHeaders")
	for _, name := range []string{"X-Cradl-Signature", "X-Cradl-Timestamp", "X-Cradl-Nonce"} {
		if strings.TrimSpace(h.Get(name)) == "" {
			return "", errUnsigned
		}
	}
	if list == "" {
		return "", errUnsigned
	}
	var signed []string
	for _, n := range strings.Split(list, ",") {
		signed = append(signed, strings.ToLower(strings.TrimSpace(n)))
	}
	if !slices.Contains(signed, "x-cradl-timestamp") || !slices.Contains(signed, "x-cradl-nonce") {
		return "", errUnsignedHdr
	}
	return list, nil
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
// is an error there, and here.
func cradlCanonical(method, publicURL, requestURI string, h http.Header, signedList string, body []byte) (string, error) {
	names := strings.Split(signedList, ",")
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(strings.ToUpper(method))
	b.WriteString(strings.TrimRight(publicURL, "/"))
	b.WriteString(requestURI)
	for _, name := range names {
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

// verifyCradl checks a signed Cradl webhook: the HMAC-SHA256 over the canonical string, the
// timestamp window, and that timestamp and nonce are among the signed headers (else a replay could
// carry new ones). It returns the nonce for the replay check.
func verifyCradl(secret string, r *http.Request, publicURL string, body []byte, now time.Time) (nonce string, err error) {
	list, err := signatureHeaders(r.Header)
	if err != nil {
		return "", err
	}
	sig := strings.TrimSpace(r.Header.Get("X-Cradl-Signature"))
	ts := strings.TrimSpace(r.Header.Get("X-Cradl-Timestamp"))
	nonce = strings.TrimSpace(r.Header.Get("X-Cradl-Nonce"))
	canonical, err := cradlCanonical(r.Method, publicURL, r.URL.RequestURI(), r.Header, list, body)
	if err != nil {
		return "", err
	}
	want := hmac.New(sha256.New, []byte(secret))
	want.Write([]byte(canonical))
	got, err := hex.DecodeString(strings.ToLower(sig))
	if err != nil || !hmac.Equal(got, want.Sum(nil)) {
		return "", errBadSig
	}
	// The timestamp is trusted only once the signature holds.
	if err := inWindow(ts, now); err != nil {
		return "", err
	}
	return nonce, nil
}
