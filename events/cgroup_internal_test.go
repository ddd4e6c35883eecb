package events

import (
	"fmt"
	"io/fs"
	"testing"
	"time"
)

// files is a file system in a map: what a test machine's /proc and /sys/fs/cgroup say.
type files map[string]string

func (f files) read(name string) ([]byte, error) {
	if s, ok := f[name]; ok {
		return []byte(s), nil
	}
	return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
}

func TestFindCgroupCPU(t *testing.T) {
	for _, c := range []struct {
		name  string
		files files
		cpus  float64 // 0: no quota found
		usage uint64
	}{
		{"v2 container (cgroup namespace)", files{
			"/proc/self/cgroup":       "0::/\n",
			"/sys/fs/cgroup/cpu.max":  "150000 100000\n",
			"/sys/fs/cgroup/cpu.stat": "usage_usec 7000\nuser_usec 5000\n",
		}, 1.5, 7000},
		{"v2, the pod's quota is smaller than the container's", files{
			"/proc/self/cgroup":                         "0::/kubepods/pod1/ctr\n",
			"/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max":  "400000 100000",
			"/sys/fs/cgroup/kubepods/pod1/cpu.max":      "200000 100000",
			"/sys/fs/cgroup/kubepods/cpu.max":           "max 100000",
			"/sys/fs/cgroup/kubepods/pod1/ctr/cpu.stat": "usage_usec 42",
		}, 2, 42},
		{"v2 without a quota", files{
			"/proc/self/cgroup":                 "0::/user.slice\n",
			"/sys/fs/cgroup/user.slice/cpu.max": "max 100000",
			"/sys/fs/cgroup/cpu.stat":           "usage_usec 1",
		}, 0, 0},
		{"v1 docker: its own cgroup at the mount's root", files{
			"/proc/self/cgroup":                    "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
			"/sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "50000\n",
			"/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
			"/sys/fs/cgroup/cpuacct/cpuacct.usage": "9000000\n",
		}, 0.5, 9000},
		{"v1 without a quota (this CI machine)", files{
			"/proc/self/cgroup":                    "2:cpuacct:/\n1:cpu:/\n0::/\n",
			"/sys/fs/cgroup/cpu/cpu.cfs_quota_us":  "-1\n",
			"/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
			"/sys/fs/cgroup/cpuacct/cpuacct.usage": "5\n",
		}, 0, 0},
		{"malformed files", files{
			"/proc/self/cgroup":       "garbage\n0::relative\n0::/\n",
			"/sys/fs/cgroup/cpu.max":  "150000",
			"/sys/fs/cgroup/cpu.stat": "usage_usec x",
		}, 0, 0},
		{"a quota of zero or less counts as none", files{
			"/proc/self/cgroup":      "0::/\n",
			"/sys/fs/cgroup/cpu.max": "0 100000",
		}, 0, 0},
		{"no /proc", files{}, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			cg := findCgroupCPU(c.files.read)
			if c.cpus == 0 {
				if cg != nil {
					t.Fatalf("found a quota of %v cores", cg.cpus)
				}
				return
			}
			if cg == nil || cg.cpus != c.cpus {
				t.Fatalf("cgroup %+v, want %v cores", cg, c.cpus)
			}
			if u, ok := cg.usage(); !ok || u != c.usage {
				t.Fatalf("usage %d, %v; want %d", u, ok, c.usage)
			}
		})
	}
}

// In a container with a quota, the quota is what is busy or not, whatever /proc/stat says of the
// machine; when the usage cannot be read the probe goes by /proc/stat.
func TestCPUProbeUsesTheCgroupQuota(t *testing.T) {
	now := time.Unix(0, 0)
	var used, machineBusy, machineIdle uint64
	readable := true
	cg := &cgroupCPU{cpus: 2, usage: func() (uint64, bool) { return used, readable }}
	stat := func() ([]byte, error) {
		return []byte(fmt.Sprintf("cpu  %d 0 0 %d 0\n", machineBusy, machineIdle)), nil
	}
	p := newCPUProbe(func() time.Time { return now }, stat, cg)
	p.saturated() // the baseline
	for _, c := range []struct {
		usedMicros uint64 // in the next window of 100 ms, allowed 200,000 µs
		want       bool
	}{{150000, true}, {100000, false}, {140000, true}} {
		used += c.usedMicros
		machineBusy, machineIdle = machineBusy+1, machineIdle+99 // the machine looks idle throughout
		now = now.Add(cpuWindow)
		if got := p.saturated(); got != c.want {
			t.Fatalf("%d µs used of 200,000: saturated = %v, want %v", c.usedMicros, got, c.want)
		}
	}
	readable = false
	now = now.Add(cpuWindow)
	p.saturated() // /proc/stat's baseline
	machineBusy, machineIdle = machineBusy+1, machineIdle+99
	now = now.Add(cpuWindow)
	if p.saturated() {
		t.Fatal("saturated on an idle machine once the cgroup could not be read")
	}
}
