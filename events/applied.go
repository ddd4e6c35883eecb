package events

import "sync"

// appliedHere remembers the ids of the latest events this process wrote into the state store
// itself (Record, right after their PubAck), so that the projector, when the same process
// receives them, can pass them over without reading the state back: one Key-Value read and a
// JSON decode saved per event. Only a write that succeeded is remembered, so what is passed over
// is in the state for sure; an event projected by another instance, or lost from the set (it is
// bounded), is simply read and checked as before.
type appliedHere struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string // insertion order, for eviction
	next int
}

func newAppliedHere(size int) *appliedHere {
	return &appliedHere{ids: make(map[string]struct{}, size), ring: make([]string, size)}
}

func (a *appliedHere) add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.ids[id]; ok {
		return
	}
	if old := a.ring[a.next]; old != "" {
		delete(a.ids, old)
	}
	a.ring[a.next] = id
	a.next = (a.next + 1) % len(a.ring)
	a.ids[id] = struct{}{}
}

// take reports whether id was applied here, and forgets it: the projector sees each event once
// (a redelivery reads the state, as any event not in the set).
func (a *appliedHere) take(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.ids[id]; !ok {
		return false
	}
	delete(a.ids, id)
	return true
}
