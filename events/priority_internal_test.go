package events

import (
	"testing"
	"time"
)

func TestPriorityActive(t *testing.T) {
	now := time.Unix(1000, 0)
	p := &Priority{now: func() time.Time { return now }}
	if p.Active() {
		t.Fatal("active before any foreground work")
	}
	a, b := p.Foreground(), p.Foreground()
	a()
	a() // a second call changes nothing
	now = now.Add(time.Hour)
	if !p.Active() {
		t.Fatal("not active while foreground work is under way")
	}
	b()
	if !p.Active() {
		t.Fatal("not active right after foreground work ended")
	}
	now = now.Add(prioritySettle)
	if p.Active() {
		t.Fatal("still active once intake has been quiet for the settle time")
	}
	var none *Priority
	none.Foreground()()
	if none.Active() {
		t.Fatal("a nil Priority is active")
	}
}
