package httpapi_test

import (
	"strings"
	"testing"
)

// The profiles answer only with the API key; an unknown profile is a 404, not the index.
func TestProfilingBehindTheAPIKey(t *testing.T) {
	s, ts := newServer(t, nil)
	s.RegisterProfiling([]string{"first-key-0123456789"})
	auth := map[string]string{"Authorization": "Bearer first-key-0123456789"}
	cases := []struct {
		path   string
		hdr    map[string]string
		status int
		body   string
	}{
		{"/debug/pprof/", nil, 401, ""},
		{"/debug/pprof/heap?debug=1", nil, 401, ""},
		{"/debug/pprof/profile?seconds=1", map[string]string{"Authorization": "Bearer wrong-key-0123456789"}, 401, ""},
		{"/debug/pprof/", auth, 200, "goroutine"},
		{"/debug/pprof/heap?debug=1", auth, 200, "heap profile"},
		{"/debug/pprof/goroutine?debug=1", auth, 200, "goroutine profile"},
		{"/debug/pprof/cmdline", auth, 200, "httpapi.test"},
		{"/debug/pprof/no-such-profile", auth, 404, "Unknown profile"},
	}
	for _, c := range cases {
		res, body := call(t, "GET", ts.URL+c.path, c.hdr)
		if res.StatusCode != c.status || !strings.Contains(body, c.body) {
			t.Errorf("GET %s: %d %.200q, want %d containing %q", c.path, res.StatusCode, body, c.status, c.body)
		}
	}
}
