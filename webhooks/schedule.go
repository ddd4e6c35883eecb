package webhooks

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultSchedule is the delay before each attempt, in the style of Svix: at once, then 5 s,
// 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 27.6 h in all); attempts beyond it wait as long as
// its last step.
var DefaultSchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// delayAfter is how long to wait after failed attempt n (1-based) before the next one: the
// schedule's next step, with ±20 % jitter so that receivers coming back are not hit by every
// retry at once.
func delayAfter(schedule []time.Duration, n int) time.Duration {
	if len(schedule) == 0 {
		schedule = DefaultSchedule
	}
	d := schedule[min(n, len(schedule)-1)]
	if d <= 0 {
		return 0
	}
	j := time.Duration(rand.Int64N(int64(d)*2/5+1)) - d/5
	return d + j
}

// maxRetryAfter caps a receiver's Retry-After: one asking for a week does not hold a delivery
// that long; max_age and max_attempts still end it.
const maxRetryAfter = 6 * time.Hour

// retryAfter reads a Retry-After header (seconds or an HTTP date); ok is false without one.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return min(time.Duration(n)*time.Second, maxRetryAfter), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}
