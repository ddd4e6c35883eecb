package cradlsim

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

// Webhook signature headers (Cradl's newer webhooks; the legacy export sends none).
const (
	HeaderTimestamp     = "X-Cradl-Timestamp"
	HeaderNonce         = "X-Cradl-Nonce"
	HeaderSignedHeaders = "X-Cradl-SignedHeaders"
	HeaderSignature     = "X-Cradl-Signature"
)

// Canonical is the string a Cradl webhook signature covers, read as Cradl's own receiver
// (n8n-nodes-cradlai verifySignature) reads it. The parts are joined with no separator:
//
//	UPPER-CASE METHOD
//	the URL as the sender called it: scheme://host[:port] + path + ?query
//	for each name in X-Cradl-SignedHeaders, split at commas and sorted: lower-case-name:value
//	the raw body
//
// Names are taken as written (no trimming), as that receiver does; an empty name is skipped,
// and a named header that is missing contributes its name and an empty value.
func Canonical(method, url string, header http.Header, body []byte) string {
	var b strings.Builder
	b.WriteString(strings.ToUpper(method))
	b.WriteString(url)
	if signed := header.Get(HeaderSignedHeaders); signed != "" {
		names := strings.Split(signed, ",")
		sort.Strings(names)
		for _, n := range names {
			if n == "" {
				continue
			}
			b.WriteString(strings.ToLower(n))
			b.WriteByte(':')
			b.WriteString(header.Get(n))
		}
	}
	b.Write(body)
	return b.String()
}

// Sign is the X-Cradl-Signature of a request: lower-case hex HMAC-SHA256 of Canonical with the
// webhook secret.
func Sign(secret, method, url string, header http.Header, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(Canonical(method, url, header, body)))
	return hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a request's X-Cradl-Signature in constant time. Freshness (timestamp age,
// nonce reuse) is the receiver's to check.
func Verify(secret, method, url string, header http.Header, body []byte) bool {
	got, err := hex.DecodeString(header.Get(HeaderSignature))
	if err != nil {
		return false
	}
	want, _ := hex.DecodeString(Sign(secret, method, url, header, body))
	return hmac.Equal(got, want)
}

// deliver POSTs an export to the webhook and notes the outcome. nil export: no webhook.
func (s *Server) deliver(executionID string, export []byte) error {
	if export == nil || s.cfg.Webhook.URL == "" {
		return nil
	}
	err := s.post(export)
	d := Delivery{ExecutionID: executionID}
	var status int
	if se, ok := err.(statusError); ok {
		status = int(se)
	} else if err == nil {
		status = http.StatusOK
	}
	d.Status = status
	if err != nil {
		d.Err = err.Error()
	}
	s.mu.Lock()
	s.deliveries = append(s.deliveries, d)
	s.mu.Unlock()
	return err
}

type statusError int

func (e statusError) Error() string { return fmt.Sprintf("the webhook answered HTTP %d", int(e)) }

func (s *Server) post(body []byte) error {
	u, err := url.Parse(s.cfg.Webhook.URL)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range s.cfg.Webhook.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.cfg.Webhook.Secret != "" {
		signed := s.cfg.Webhook.SignedHeaders
		if signed == nil {
			signed = []string{"x-cradl-nonce", "x-cradl-timestamp"}
		}
		for _, h := range signed {
			switch strings.ToLower(h) {
			case "x-cradl-timestamp":
				req.Header.Set(HeaderTimestamp, strconv.FormatInt(time.Now().Unix(), 10))
			case "x-cradl-nonce":
				req.Header.Set(HeaderNonce, simkit.RandomHex(16))
			}
		}
		if len(signed) > 0 {
			req.Header.Set(HeaderSignedHeaders, strings.Join(signed, ","))
		}
		// The URL as it is called: what the receiver sees is scheme://host + the request URI.
		called := u.Scheme + "://" + u.Host + u.RequestURI()
		req.Header.Set(HeaderSignature, Sign(s.cfg.Webhook.Secret, http.MethodPost, called, req.Header, body))
	}
	res, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return statusError(res.StatusCode)
	}
	return nil
}
