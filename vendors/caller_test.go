package vendors_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ingest-dev/ingest/vendors"
)

// A Caller keeps a connection for each request it may have in flight: calls at its full
// concurrency, again and again, open no more connections than that.
func TestCallerReusesConnections(t *testing.T) {
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	const concurrency = 8
	c := vendors.NewCaller(vendors.CallerConfig{Vendor: "test", Concurrency: concurrency})
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				res, err := c.Do(context.Background(), "get", func(ctx context.Context) (*http.Request, error) {
					return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
				})
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}()
	}
	wg.Wait()
	if n := opened.Load(); n > concurrency {
		t.Fatalf("%d connections opened for %d requests at most %d at a time; want at most %d", n, concurrency*25, concurrency, concurrency)
	}
}
