package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/httpapi"
)

func TestClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k-0123456789" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(401)
			w.Write([]byte(`{"type":"about:blank","title":"Unauthorized","status":401,"detail":"no key"}`))
			return
		}
		switch r.URL.Path {
		case "/ok":
			json.NewEncoder(w).Encode(map[string]string{"query": r.URL.RawQuery})
		case "/garbage":
			w.Write([]byte("{not json"))
		default:
			w.WriteHeader(502)
			w.Write([]byte("<html>bad gateway</html>"))
		}
	}))
	defer srv.Close()
	c := &httpapi.Client{BaseURL: srv.URL + "/", APIKey: "k-0123456789"}
	ctx := context.Background()

	req, _ := c.NewRequest(ctx, "GET", "/ok?vendor=gini", url.Values{"a": {"b c"}}, nil)
	var got map[string]string
	if err := c.JSON(req, 200, &got); err != nil || got["query"] != "vendor=gini&a=b+c" {
		t.Fatalf("query joined: %v %v", got, err)
	}
	req, _ = c.NewRequest(ctx, "GET", "/garbage", nil, nil)
	if err := c.JSON(req, 200, &got); err == nil || !strings.Contains(err.Error(), "not the expected JSON") {
		t.Fatalf("garbage: %v", err)
	}
	req, _ = c.NewRequest(ctx, "GET", "/elsewhere", nil, nil)
	if err := c.JSON(req, 200, &got); err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), "bad gateway") {
		t.Fatalf("non-problem answer: %v", err)
	}
	bad := &httpapi.Client{BaseURL: srv.URL, APIKey: "wrong"}
	req, _ = bad.NewRequest(ctx, "GET", "/ok", nil, nil)
	var p *httpapi.Problem
	if err := bad.JSON(req, 200, &got); !errors.As(err, &p) || p.Status != 401 || p.Detail != "no key" {
		t.Fatalf("problem: %v", err)
	}
	gone := &httpapi.Client{BaseURL: "http://127.0.0.1:1"}
	req, _ = gone.NewRequest(ctx, "GET", "/ok", nil, nil)
	if err := gone.JSON(req, 200, &got); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("no service: %v", err)
	}
}
