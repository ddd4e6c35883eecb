package events

import (
	"sync/atomic"
	"time"
)

// Priority lets the work a client waits for go ahead of the work nobody waits for, when the
// cores are busy. While documents are being received (Foreground), a consumer that runs in the
// Background (ConsumerSpec.Background) starts no second handler; once intake has been quiet for
// a moment, it uses all its workers again. Dispatch then does not halve intake on a small
// machine: what it has not done yet waits in the stream, durable, and is done after the burst.
// Background work never stops: one handler at a time keeps going.
type Priority struct {
	busy    atomic.Int64
	quietAt atomic.Int64 // when the last foreground work ended (Unix nanoseconds)
	now     func() time.Time
}

// prioritySettle is how long after the last foreground work background work stays held back:
// the gap between one upload's answer and the client's next request.
const prioritySettle = 100 * time.Millisecond

// NewPriority returns a Priority with no foreground work under way.
func NewPriority() *Priority { return &Priority{now: time.Now} }

// Foreground marks work under way that a client waits for; call the returned function when it
// ends. A nil Priority marks nothing.
func (p *Priority) Foreground() (done func()) {
	if p == nil {
		return func() {}
	}
	p.busy.Add(1)
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			p.quietAt.Store(p.now().UnixNano())
			p.busy.Add(-1)
		}
	}
}

// Active reports whether foreground work is under way, or ended less than a moment ago.
func (p *Priority) Active() bool {
	if p == nil {
		return false
	}
	return p.busy.Load() > 0 || p.now().UnixNano()-p.quietAt.Load() < int64(prioritySettle)
}
