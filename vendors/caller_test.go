package vendors_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/testservers"
	"github.com/ingest-dev/ingest/vendors"
)

// A Caller keeps a connection for each request it may have in flight: rounds of calls at its
// full concurrency open no more connections than that (give or take the race below).
func TestCallerReusesConnections(t *testing.T) {
	srv, opened := testservers.CountingHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // a vendor takes a moment: the requests overlap
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	const concurrency = 8
	c := vendors.NewCaller(vendors.CallerConfig{Vendor: "test", Concurrency: concurrency})
	// Rounds of requests at full concurrency: between rounds every connection is idle at once.
	for range 10 {
		var wg sync.WaitGroup
		for range concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := c.Do(context.Background(), "get", func(ctx context.Context) (*http.Request, error) {
					return http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
				})
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}()
		}
		wg.Wait()
	}
	if n := opened.Load(); n > 2*concurrency {
		t.Fatalf("%d connections opened for %d requests at most %d at a time; want at most %d", n, concurrency*10, concurrency, 2*concurrency)
	}
}
