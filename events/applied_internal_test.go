package events

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestAppliedHere(t *testing.T) {
	ctx := context.Background()
	a := newAppliedHere(3)
	for i := range 4 {
		a.begin(fmt.Sprintf("e%d", i))(true) // e0 is evicted by e3
	}
	a.begin("e3")(true)  // a repeat does not evict anything
	a.begin("e2")(false) // the state write of a repeat failed: the projector must apply it
	for id, want := range map[string]bool{"e0": false, "e1": true, "e2": false, "e3": true, "e9": false} {
		if got := a.take(ctx, id); got != want {
			t.Errorf("take(%s) = %v, want %v", id, got, want)
		}
	}
	if a.take(ctx, "e1") {
		t.Error("take reports an event twice: a redelivery must read the state")
	}
}

// The projector may receive an event before Record's state write has ended: take waits for it,
// and gives up (false: apply it yourself) when its context ends first.
func TestAppliedHereWaitsForAWriteUnderWay(t *testing.T) {
	a := newAppliedHere(8)
	finish := a.begin("w")
	got := make(chan bool)
	go func() { got <- a.take(context.Background(), "w") }()
	select {
	case v := <-got:
		t.Fatalf("take answered %v before the write ended", v)
	case <-time.After(50 * time.Millisecond):
	}
	finish(true)
	if !<-got {
		t.Fatal("take = false for a write that succeeded")
	}

	a.begin("slow") // never finishes
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if a.take(ctx, "slow") {
		t.Fatal("take = true for a write that never ended")
	}
}

// wait (Bus.AwaitRecord) waits for a write under way and leaves it for the projector; for an
// event not being written here it returns at once.
func TestAppliedHereWaitLeavesTheWrite(t *testing.T) {
	a := newAppliedHere(8)
	a.wait(context.Background(), "unknown") // returns at once, or the test times out
	finish := a.begin("w")
	waited := make(chan struct{})
	go func() { a.wait(context.Background(), "w"); close(waited) }()
	select {
	case <-waited:
		t.Fatal("wait returned before the write ended")
	case <-time.After(50 * time.Millisecond):
	}
	finish(true)
	<-waited
	if !a.take(context.Background(), "w") {
		t.Fatal("wait took the write from the projector")
	}
}
