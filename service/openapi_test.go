package service_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/service"
)

// docs/openapi.json is what service.OpenAPI gives; INGEST_UPDATE_OPENAPI=1 rewrites it.
func TestOpenAPIFileIsCurrent(t *testing.T) {
	want, err := service.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	path := filepath.Join("..", "docs", "openapi.json")
	if os.Getenv("INGEST_UPDATE_OPENAPI") != "" {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s is not the document service.OpenAPI gives (%v); regenerate it: INGEST_UPDATE_OPENAPI=1 go test ./service -run TestOpenAPI", path, err)
	}
}

// Every route the service registers (with every optional part on: the list index, the HTTP drop,
// callbacks, webhook subscriptions) is in the OpenAPI document, and every operation the document
// describes is a registered route; /openapi.json answers without an API key.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	cfg := testConfig(t)
	vendorsYAML(t, &cfg, "  allspark: {callback_token: callback-token-0123456789, callback_poll_after: 1h}\n")
	sub := config.DefaultSubscription()
	sub.Name, sub.URL, sub.Secret, sub.AllowPrivateTargets = "x", "http://127.0.0.1:9/", config.StringList{hookSecret}, true
	cfg.Subscriptions = []config.Subscription{sub}
	s := start(t, cfg)

	res, body := get(t, s.HTTPAddr(), "/openapi.json")
	if res.StatusCode != 200 {
		t.Fatalf("/openapi.json: %d %.200s", res.StatusCode, body)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("/openapi.json is no OpenAPI 3.1 document: %v %.200s", err, body)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	param := regexp.MustCompile(`:([A-Za-z0-9_]+)`)
	routed := map[string]bool{}
	for _, r := range s.Routes() {
		switch {
		case !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}, r.Method):
			continue // echo's own (route-not-found handlers of groups)
		case r.Path == "/ui" || strings.HasPrefix(r.Path, "/ui/"), strings.HasPrefix(r.Path, "/debug/pprof"):
			continue // the web console (its own test), the profiler
		}
		routed[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	if len(routed) < 20 {
		t.Fatalf("only %d routes registered: %v", len(routed), routed)
	}
	for r := range routed {
		if !documented[r] {
			t.Errorf("%s is registered but not in docs/openapi.json", r)
		}
	}
	for d := range documented {
		if !routed[d] {
			t.Errorf("%s is in docs/openapi.json but no route", d)
		}
	}
}
