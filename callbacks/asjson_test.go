package callbacks

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAsJSON(t *testing.T) {
	for _, tc := range []struct {
		method, target, ctype, body string
		kind, want                  string
	}{
		{"POST", "/", "application/json", `{"case_id":7}`, "json", `{"case_id":7}`},
		{"POST", "/", "application/x-www-form-urlencoded", "case_id=7&status=completed", "form", `{"case_id":"7","status":"completed"}`},
		{"POST", "/", "application/x-www-form-urlencoded; charset=utf-8", "a=1&a=2", "form", `{"a":["1","2"]}`},
		{"GET", "/?case_id=8", "", "", "query", `{"case_id":"8"}`},
		{"POST", "/", "text/plain", "case 7 done", "other", "case 7 done"},
		{"POST", "/", "", `{"case_id":9}`, "json", `{"case_id":9}`}, // no type: JSON if it parses
	} {
		req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		got, kind := asJSON(req, []byte(tc.body))
		if kind != tc.kind || string(got) != tc.want {
			t.Errorf("%s %s %q: %s %q, want %s %q", tc.method, tc.ctype, tc.body, kind, got, tc.kind, tc.want)
		}
	}
}

// Whatever a form post carries, the fields given to a vendor's parser are JSON.
func FuzzAsJSON(f *testing.F) {
	for _, s := range []string{"case_id=7", "a=1&a=2", "%zz=1", "=&=&", "a=%00%ff", ";;;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, _ := http.NewRequest("POST", "/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		got, kind := asJSON(req, []byte(body))
		if kind != "form" {
			t.Fatalf("kind %q", kind)
		}
		if !json.Valid(got) && !bytes.Equal(got, []byte(body)) {
			t.Fatalf("neither JSON nor the body as it came: %q", got)
		}
	})
}
