package events

import (
	"fmt"
	"testing"
)

func TestAppliedHere(t *testing.T) {
	a := newAppliedHere(3)
	for i := range 4 {
		a.add(fmt.Sprintf("e%d", i)) // e0 is evicted by e3
	}
	a.add("e3") // a repeat does not evict anything
	for id, want := range map[string]bool{"e0": false, "e1": true, "e2": true, "e3": true, "e9": false} {
		if got := a.take(id); got != want {
			t.Errorf("take(%s) = %v, want %v", id, got, want)
		}
	}
	if a.take("e1") {
		t.Error("take reports an event twice: a redelivery must read the state")
	}
}
