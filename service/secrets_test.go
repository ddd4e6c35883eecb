package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ingest-dev/ingest"
	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/service"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A full run with every kind of secret configured — API key, callback tokens, a webhook secret,
// vendor credentials, mailbox and WebDAV passwords (their servers unreachable, so their errors are
// logged too) — and requests that carry them (an upload, a callback by its secret URL, requests
// with wrong keys): the log, at debug level, holds none of them.
func TestSecretsStayOutOfLogs(t *testing.T) {
	secrets := map[string]string{
		"API_KEY":       key,
		"AS_TOKEN":      "as-Cb-" + config.NewToken(),
		"AS_API_KEY":    "as-api-key-9f8e7d6c5b4a",
		"CRADL_TOKEN":   "cr-Cb-" + config.NewToken(),
		"CRADL_SECRET":  "cradl-webhook-secret-0a1b2c",
		"CRADL_CLIENT":  "cradl-client-secret-3d4e5f",
		"IMAP_PASSWORD": "imap-Pa55word-77aa",
		"DAV_PASSWORD":  "dav-Pa55word-88bb",
	}
	env := func(name string) (string, bool) { v, ok := secrets[name]; return v, ok }
	cfg, err := config.Parse(ingest.DefaultConfigYAML(), "config.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := config.Parse([]byte(`
http:
  api_keys: ["${API_KEY}"]
sources:
  imap:
    - {name: box, host: 127.0.0.1, port: 1, tls: none, username: bot, password: "${IMAP_PASSWORD}", vendor: allspark}
  webdav:
    - {name: dav, url: "http://127.0.0.1:1/in/", username: scanner, password: "${DAV_PASSWORD}", vendor: allspark}
vendors:
  allspark: {api_key: "${AS_API_KEY}", callback_token: "${AS_TOKEN}", callback_poll_after: 1h}
  cradl: {client_secret: "${CRADL_CLIENT}", callback_token: "${CRADL_TOKEN}", webhook_secret: "${CRADL_SECRET}"}
`), "extra.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	test := testConfig(t)
	cfg.DataDir, cfg.HTTP.Listen, cfg.NATS.Embedded.Listen = test.DataDir, test.HTTP.Listen, test.NATS.Embedded.Listen
	cfg.HTTP.APIKeys, cfg.Sources.IMAP, cfg.Sources.WebDAV, cfg.Vendors = extra.HTTP.APIKeys, extra.Sources.IMAP, extra.Sources.WebDAV, extra.Vendors

	var logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := service.Start(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, s) })
	base := "http://" + s.HTTPAddr()

	// An upload by the key, completed by an Allspark callback at its secret URL.
	path, _ := writePDF(t, 1000)
	c := &httpdrop.Client{BaseURL: base, APIKey: secrets["API_KEY"]}
	resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{Vendors: []string{"allspark"}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Documents[0].ID
	var ref string
	eventstest.WaitFor(t, 20*time.Second, "the submission", func() bool {
		req, _ := http.NewRequest("GET", base+"/v1/documents/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+secrets["API_KEY"])
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var doc events.Document
		if json.NewDecoder(res.Body).Decode(&doc) == nil && doc.Vendors["allspark"] != nil {
			ref = doc.Vendors["allspark"].Ref
		}
		return ref != ""
	})
	post := func(url, auth, body string) int {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := post(base+"/v1/callbacks/allspark/"+secrets["AS_TOKEN"], "", `{"case_id": `+ref+`}`); code != http.StatusAccepted {
		t.Fatalf("callback: %d", code)
	}
	// Wrong and misplaced credentials: the Cradl token on an unsigned callback, the API key
	// sent as the wrong scheme, the Allspark token on another vendor's path.
	for _, r := range []struct{ url, auth string }{
		{base + "/v1/callbacks/cradl/" + secrets["CRADL_TOKEN"], ""},
		{base + "/v1/callbacks/gini/" + secrets["AS_TOKEN"], ""},
		{base + "/v1/documents", "Basic " + secrets["API_KEY"]},
		{base + "/v1/documents/" + secrets["CRADL_SECRET"], "Bearer " + secrets["API_KEY"]},
	} {
		if code := post(r.url, r.auth, `{}`); code < 400 {
			t.Fatalf("%s: %d, want a refusal", r.url, code)
		}
	}
	waitCompleted(t, s, id)
	// The unreachable mailbox and folder have said so.
	eventstest.WaitFor(t, 20*time.Second, "the sources' connection errors", func() bool {
		l := logs.String()
		return strings.Contains(l, `imap/box`) && strings.Contains(l, `webdav/dav`)
	})

	l := logs.String()
	if testing.Verbose() {
		t.Log(l)
	}
	for name, secret := range secrets {
		if strings.Contains(l, secret) {
			i := strings.Index(l, secret)
			t.Errorf("the log holds %s: …%s…", name, l[max(0, i-200):min(len(l), i+100)])
		}
	}
	if !strings.Contains(l, "/v1/callbacks/allspark/[REDACTED]") {
		t.Errorf("the callback's request line is not in the log with its token redacted")
	}
	if !strings.Contains(l, "/v1/callbacks/allspark/<callback_token>") {
		t.Errorf("the start-up line does not show the callback URL with a placeholder")
	}
}
