package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/ingest-dev/ingest/httpapi"
)

func newServer(t *testing.T, ready func(context.Context) error) (*httpapi.Server, *httptest.Server) {
	t.Helper()
	s, err := httpapi.New(httpapi.Config{Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	e := s.Echo()
	g := e.Group("/private", httpapi.RequireAPIKey([]string{"first-key-0123456789", "second-key-0123456789"}))
	g.GET("", func(c echo.Context) error { return c.String(200, c.Get(httpapi.ClientKey).(string)) })
	e.GET("/panic", func(echo.Context) error { panic("boom") })
	e.GET("/fail", func(echo.Context) error { return errors.New("database on fire") })
	e.GET("/problem", func(echo.Context) error {
		return httpapi.NewProblem(http.StatusTooManyRequests, "slow down").WithHeader("Retry-After", "3")
	})
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	return s, ts
}

func call(t *testing.T, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestAPIKeys(t *testing.T) {
	_, ts := newServer(t, nil)
	cases := []struct {
		auth   string
		status int
	}{
		{"", 401}, {"Bearer first-key-0123456789", 200}, {"bearer second-key-0123456789", 200},
		{"Bearer first-key-012345678", 401}, {"Bearer first-key-0123456789 extra", 401}, {"Basic Zmlyc3Q=", 401}, {"Bearer", 401},
	}
	names := map[string]bool{}
	for _, c := range cases {
		res, body := call(t, "GET", ts.URL+"/private", map[string]string{"Authorization": c.auth})
		if res.StatusCode != c.status {
			t.Errorf("%q: %d %s", c.auth, res.StatusCode, body)
		}
		if c.status == 200 {
			names[body] = true
			if strings.Contains(body, "key") {
				t.Errorf("client name %q reveals the key", body)
			}
		}
	}
	if len(names) != 2 {
		t.Errorf("two keys should give two client names: %v", names)
	}
}

func TestProblems(t *testing.T) {
	_, ts := newServer(t, nil)
	cases := []struct {
		path    string
		status  int
		mention string
	}{
		{"/panic", 500, "request_id"},
		{"/fail", 500, "request_id"},
		{"/problem", 429, "slow down"},
		{"/nowhere", 404, "no endpoint GET /nowhere"},
	}
	for _, c := range cases {
		res, body := call(t, "GET", ts.URL+c.path, nil)
		var p httpapi.Problem
		if res.StatusCode != c.status || res.Header.Get("Content-Type") != httpapi.ProblemContentType || json.Unmarshal([]byte(body), &p) != nil {
			t.Fatalf("%s: %d %s %s", c.path, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
		if !strings.Contains(p.Detail, c.mention) || p.RequestID == "" || p.RequestID != res.Header.Get("X-Request-Id") || p.Instance != c.path {
			t.Errorf("%s: problem %+v", c.path, p)
		}
		if strings.Contains(body, "fire") || strings.Contains(body, "boom") {
			t.Errorf("%s: internal error text leaked: %s", c.path, body)
		}
	}
	res, _ := call(t, "GET", ts.URL+"/problem", nil)
	if res.Header.Get("Retry-After") != "3" {
		t.Error("problem header not sent")
	}
}

func TestRequestIDIsSanitized(t *testing.T) {
	_, ts := newServer(t, nil)
	res, _ := call(t, "GET", ts.URL+"/healthz", map[string]string{"X-Request-ID": "abc-123"})
	if res.Header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("a fine request id was replaced: %q", res.Header.Get("X-Request-Id"))
	}
	for _, bad := range []string{strings.Repeat("x", 200), "<script>", "a b"} {
		res, _ := call(t, "GET", ts.URL+"/healthz", map[string]string{"X-Request-ID": bad})
		if got := res.Header.Get("X-Request-Id"); got == bad || got == "" {
			t.Errorf("request id %q echoed as %q", bad, got)
		}
	}
}

func TestReadiness(t *testing.T) {
	var down atomic.Bool
	_, ts := newServer(t, func(context.Context) error {
		if down.Load() {
			return errors.New("NATS connection is RECONNECTING")
		}
		return nil
	})
	if res, _ := call(t, "GET", ts.URL+"/readyz", nil); res.StatusCode != 200 {
		t.Fatalf("ready: %d", res.StatusCode)
	}
	down.Store(true)
	res, body := call(t, "GET", ts.URL+"/readyz", nil)
	if res.StatusCode != 503 || !strings.Contains(body, "RECONNECTING") || res.Header.Get("Retry-After") == "" {
		t.Fatalf("not ready: %d %s", res.StatusCode, body)
	}
	if res, _ := call(t, "GET", ts.URL+"/healthz", nil); res.StatusCode != 200 {
		t.Fatal("liveness follows readiness")
	}
}

func TestMetricsCountRequests(t *testing.T) {
	_, ts := newServer(t, nil)
	call(t, "GET", ts.URL+"/nowhere", nil)
	_, body := call(t, "GET", ts.URL+"/metrics", nil)
	if !strings.Contains(body, `ingest_http_requests_total{code="404",method="GET",route="unmatched"} 1`) {
		t.Fatalf("metrics: %s", body)
	}
}
