package dispatch

import (
	"testing"
	"time"
)

// Backoff doubles from initial to the ceiling with jitter in the upper half, so that documents
// that failed together do not come back together; a vendor's Retry-After is a floor.
func TestBackoffJitter(t *testing.T) {
	const initial, ceiling = time.Second, time.Minute
	tests := []struct {
		attempt    int
		retryAfter time.Duration
		lo, hi     time.Duration
	}{
		{1, 0, initial / 2, initial},
		{3, 0, 2 * time.Second, 4 * time.Second},
		{20, 0, ceiling / 2, ceiling},
		{1, 10 * time.Second, 10 * time.Second, 11 * time.Second},
		{1, 3 * time.Hour, time.Hour, time.Hour + 6*time.Minute},
	}
	for _, tc := range tests {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoff(tc.attempt, initial, ceiling, tc.retryAfter)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%d, retry-after %s) = %s, want within [%s, %s]", tc.attempt, tc.retryAfter, d, tc.lo, tc.hi)
			}
			seen[d] = true
		}
		if len(seen) < 50 {
			t.Errorf("backoff(%d, %s): only %d distinct delays in 200: no jitter", tc.attempt, tc.retryAfter, len(seen))
		}
	}
}
