package events

import (
	"bytes"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Priority lets the work a client waits for go ahead of the work nobody waits for, when the
// cores are busy. While documents are being received (Foreground) and the cores are busy, a
// consumer that runs in the Background (ConsumerSpec.Background) starts no second handler; once
// intake is quiet, or the cores have room again, it uses all its workers. Dispatch then does
// not halve intake on a small machine: what it has not done yet waits in the stream, durable,
// and is done after the burst. Background work never stops (one handler at a time keeps
// going), and it stops yielding once its messages have waited MaxDelay: a steady intake beside
// a slow vendor must not leave dispatch one document at a time.
type Priority struct {
	busy      atomic.Int64
	quietAt   atomic.Int64 // when the last foreground work ended (Unix nanoseconds)
	now       func() time.Time
	saturated func() bool
	maxDelay  time.Duration
}

// PriorityConfig configures a Priority.
type PriorityConfig struct {
	// Saturated reports whether the cores are busy. Nil: measured over the last 100 ms, as at
	// least 70 % of the CPU time this process may use being used: its cgroup's quota where one
	// is set (a container), else the machine's cores where /proc/stat tells it, else from the Go
	// scheduler's latencies.
	Saturated func() bool
	// MaxDelay bounds what yielding may cost a document: background work whose messages have
	// waited this long in the stream does not yield (default 10 s). Dispatch that waits on a
	// vendor needs its workers to keep up, whatever the cores do.
	MaxDelay time.Duration
}

// prioritySettle is how long after the last foreground work background work stays held back:
// the gap between one upload's answer and the client's next request.
const prioritySettle = 100 * time.Millisecond

// NewPriority returns a Priority with no foreground work under way.
func NewPriority(cfg PriorityConfig) *Priority {
	if cfg.Saturated == nil {
		cfg.Saturated = newCPUProbe(time.Now, func() ([]byte, error) { return os.ReadFile("/proc/stat") },
			findCgroupCPU(os.ReadFile)).saturated
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 10 * time.Second
	}
	return &Priority{now: time.Now, saturated: cfg.Saturated, maxDelay: cfg.MaxDelay}
}

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

// Yield reports whether background work whose latest message has waited age in the stream
// should hold back now: foreground work is under way (or ended less than a moment ago), the
// cores are busy, and the wait is below MaxDelay.
func (p *Priority) Yield(age time.Duration) bool {
	return p != nil && age < p.maxDelay && p.active()
}

// active reports whether foreground work is under way (or ended less than a moment ago) while
// the cores are busy.
func (p *Priority) active() bool {
	if p == nil {
		return false
	}
	if p.busy.Load() == 0 && p.now().UnixNano()-p.quietAt.Load() >= int64(prioritySettle) {
		return false
	}
	return p.saturated()
}

// cpuProbe tells whether the cores are busy: from the CPU time of the process's cgroup against
// its quota where one is set, else from the machine's CPU time (/proc/stat) where there is one,
// else from the Go scheduler's latencies (the share of runnable goroutines that waited a
// millisecond or more for a core). Each verdict holds for a window of 100 ms.
type cpuProbe struct {
	mu      sync.Mutex
	now     func() time.Time
	at      time.Time
	verdict bool

	cg     *cgroupCPU // nil: no quota
	cgUsed uint64     // its CPU time (µs) at cgAt
	cgAt   time.Time

	stat       func() ([]byte, error) // /proc/stat
	busy, all  uint64                 // its CPU time counters at the last look
	sample     []metrics.Sample
	lastCounts []uint64
}

const (
	cpuWindow = 100 * time.Millisecond
	// cpuBusyShare of the machine's CPU time spent working means the cores are taken: intake
	// alone keeps a small machine at 75-90 %, and background work beside it slows it down.
	cpuBusyShare = 0.7
	// schedSlowShare of goroutines waiting schedSlow or longer for a core means the same.
	schedSlow      = time.Millisecond
	schedSlowShare = 0.05
)

func newCPUProbe(now func() time.Time, stat func() ([]byte, error), cg *cgroupCPU) *cpuProbe {
	return &cpuProbe{now: now, stat: stat, cg: cg, sample: []metrics.Sample{{Name: "/sched/latencies:seconds"}}}
}

func (c *cpuProbe) saturated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Sub(c.at) < cpuWindow {
		return c.verdict
	}
	c.at = now
	if c.cg != nil {
		if used, ok := c.cg.usage(); ok {
			if !c.cgAt.IsZero() && used >= c.cgUsed {
				allowed := c.cg.cpus * float64(now.Sub(c.cgAt).Microseconds())
				c.verdict = float64(used-c.cgUsed) >= cpuBusyShare*allowed
			}
			c.cgUsed, c.cgAt = used, now
			return c.verdict
		}
	}
	if c.stat != nil {
		if raw, err := c.stat(); err == nil {
			if busy, all, ok := parseProcStat(raw); ok {
				if all > c.all {
					c.verdict = c.all > 0 && float64(busy-c.busy) >= cpuBusyShare*float64(all-c.all)
				}
				c.busy, c.all = busy, all
				return c.verdict
			}
		}
	}
	c.verdict = c.schedSaturated()
	return c.verdict
}

// parseProcStat reads the machine's CPU time counters from /proc/stat's first line: busy is
// everything but idle and iowait.
func parseProcStat(raw []byte) (busy, all uint64, ok bool) {
	line, _, _ := bytes.Cut(raw, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, 0, false
	}
	var idle uint64
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0, false
		}
		all += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return all - idle, all, true
}

func (c *cpuProbe) schedSaturated() bool {
	metrics.Read(c.sample)
	if c.sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return true // nothing to tell by: yield whenever intake is busy
	}
	h := c.sample[0].Value.Float64Histogram()
	var total, slow uint64
	for i, n := range h.Counts {
		if i < len(c.lastCounts) {
			n -= c.lastCounts[i]
		}
		total += n
		if h.Buckets[i] >= schedSlow.Seconds() { // Buckets[i] is bucket i's lower bound
			slow += n
		}
	}
	c.lastCounts = append(c.lastCounts[:0], h.Counts...)
	return total > 0 && float64(slow) >= schedSlowShare*float64(total)
}
