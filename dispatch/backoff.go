package dispatch

import (
	"math/rand/v2"
	"time"
)

// backoff is initial·2^(attempt-1), capped, with jitter (between half and the whole of it), so
// that documents waiting on a recovering vendor do not all come back in the same second. A
// vendor's Retry-After is honoured, with up to a tenth added for the same reason.
func backoff(attempt int, initial, ceiling, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		retryAfter = min(retryAfter, time.Hour)
		return retryAfter + jitter(retryAfter/10)
	}
	d := initial
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + jitter(d/2)
}

// jitter is a random duration in [0, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}
