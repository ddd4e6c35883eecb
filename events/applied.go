package events

import (
	"context"
	"sync"
	"time"
)

// appliedHere follows the events this process is writing into the state store itself (Record),
// so that the projector, when the same process receives them, can pass them over without
// reading the state back: one Key-Value read and a JSON decode saved per event.
//
// An event is registered before it is published, since the projector may receive it before
// Record's state write is done; the projector then waits for that write instead of racing it.
// Only a write that succeeded counts, so what is passed over is in the state for sure; an event
// whose write failed, one of another instance, or one lost from the set (it is bounded), is read
// and applied as before.
type appliedHere struct {
	mu   sync.Mutex
	ids  map[string]*applying
	ring []string // insertion order, for eviction
	next int
}

// applying is one Record's state write: done is closed when it has ended; ok, set before,
// says it succeeded.
type applying struct {
	done chan struct{}
	ok   bool
}

func newAppliedHere(size int) *appliedHere {
	return &appliedHere{ids: make(map[string]*applying, size), ring: make([]string, size)}
}

// begin registers the state write of event id; finish reports how it ended.
func (a *appliedHere) begin(id string) (finish func(ok bool)) {
	w := &applying{done: make(chan struct{})}
	a.mu.Lock()
	if _, ok := a.ids[id]; !ok {
		if old := a.ring[a.next]; old != "" {
			delete(a.ids, old)
		}
		a.ring[a.next] = id
		a.next = (a.next + 1) % len(a.ring)
	}
	a.ids[id] = w
	a.mu.Unlock()
	var once sync.Once
	return func(ok bool) {
		once.Do(func() {
			w.ok = ok
			close(w.done)
		})
	}
}

// take reports whether id's state write was made here, waiting for it when it is under way
// (until ctx ends: then false), and forgets it: the projector sees each event once (a
// redelivery reads the state, as any event not in the set).
func (a *appliedHere) take(ctx context.Context, id string) bool {
	a.mu.Lock()
	w := a.ids[id]
	delete(a.ids, id)
	a.mu.Unlock()
	return w != nil && w.ended(ctx) && w.ok // ok is written before done is closed
}

// wait waits for id's state write when it is under way here (until ctx ends or awaitBound has
// passed), leaving it in the set for the projector.
func (a *appliedHere) wait(ctx context.Context, id string) {
	a.mu.Lock()
	w := a.ids[id]
	a.mu.Unlock()
	if w != nil {
		ctx, cancel := context.WithTimeout(ctx, awaitBound)
		defer cancel()
		w.ended(ctx)
	}
}

// ended waits for the write to end (true) or ctx to (false).
func (w *applying) ended(ctx context.Context) bool {
	select {
	case <-w.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// awaitBound is how long a reader waits for a state write under way in this process: a write
// that takes longer is stuck on NATS, and the reader goes on as if it were another process's.
const awaitBound = 10 * time.Second
