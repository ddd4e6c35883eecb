package events

import (
	"runtime"
	"testing"
	"time"
)

func TestPriorityActive(t *testing.T) {
	now := time.Unix(1000, 0)
	p := &Priority{now: func() time.Time { return now }, saturated: func() bool { return true }}
	if p.active() {
		t.Fatal("active before any foreground work")
	}
	a, b := p.Foreground(), p.Foreground()
	a()
	a() // a second call changes nothing
	now = now.Add(time.Hour)
	if !p.active() {
		t.Fatal("not active while foreground work is under way")
	}
	b()
	if !p.active() {
		t.Fatal("not active right after foreground work ended")
	}
	now = now.Add(prioritySettle)
	if p.active() {
		t.Fatal("still active once intake has been quiet for the settle time")
	}
	var none *Priority
	none.Foreground()()
	if none.active() {
		t.Fatal("a nil Priority is active")
	}
}

// Foreground work alone does not hold background work back: only when the cores are busy too.
func TestPriorityNeedsBusyCores(t *testing.T) {
	p := &Priority{now: time.Now, saturated: func() bool { return false }}
	defer p.Foreground()()
	if p.active() {
		t.Fatal("active while the cores have room")
	}
}

// The machine's CPU time says whether its cores are busy, window by window.
func TestCPUProbeReadsProcStat(t *testing.T) {
	now := time.Unix(0, 0)
	lines := []string{
		"cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n",
		"cpu  200 0 190 805 5 0 0 0 0 0\n", // 190 of 200 busy
		"cpu  210 0 200 985 5 0 0 0 0 0\n", // 20 of 200
	}
	i := 0
	p := newCPUProbe(func() time.Time { return now }, func() ([]byte, error) { return []byte(lines[i]), nil }, nil)
	if p.saturated() {
		t.Fatal("saturated with nothing to compare with")
	}
	prev := false
	for _, c := range []struct {
		line int
		want bool
	}{{1, true}, {2, false}} {
		i = c.line
		if got := p.saturated(); got != prev {
			t.Fatal("the verdict changed within its window")
		}
		now = now.Add(cpuWindow)
		got := p.saturated()
		if got != c.want {
			t.Fatalf("after %q: saturated = %v, want %v", lines[c.line], got, c.want)
		}
		prev = got
	}
}

func TestParseProcStat(t *testing.T) {
	for _, c := range []struct {
		in        string
		busy, all uint64
		ok        bool
	}{
		{"cpu  1 2 3 4 5 6 7 8 9 10\n", 46, 55, true},
		{"cpu 1 2 3 4", 6, 10, true},
		{"", 0, 0, false},
		{"cpu0 1 2 3 4 5", 0, 0, false},
		{"cpu 1 2 x 4 5", 0, 0, false},
		{"cpu 1 2", 0, 0, false},
		{"cpu 1 2 3 -4 5", 0, 0, false},
	} {
		busy, all, ok := parseProcStat([]byte(c.in))
		if busy != c.busy || all != c.all || ok != c.ok {
			t.Errorf("parseProcStat(%q) = %d, %d, %v; want %d, %d, %v", c.in, busy, all, ok, c.busy, c.all, c.ok)
		}
	}
}

// Without /proc/stat, goroutines that keep every core busy make the scheduler say so.
func TestCPUProbeSeesSaturationInTheScheduler(t *testing.T) {
	probe := newCPUProbe(time.Now, nil, nil)
	probe.saturated() // the baseline
	stop := make(chan struct{})
	defer close(stop)
	for range 4 * runtime.GOMAXPROCS(0) {
		go func() {
			x := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range 4000000 {
					x += i
				}
				runtime.Gosched()
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !probe.saturated() {
		if time.Now().After(deadline) {
			t.Fatal("the probe never saw the cores saturated")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
