package events

import (
	"bytes"
	"path"
	"strconv"
	"strings"
)

// cgroupCPU is the CPU allowance of this process's cgroup, where a quota is set: what a
// container may use, which the machine's /proc/stat does not show (a container allowed two of
// sixteen cores is saturated while the machine looks idle).
type cgroupCPU struct {
	cpus  float64                       // the quota, in cores
	usage func() (usec uint64, ok bool) // the cgroup's CPU time so far
}

// The cgroup file systems where distributions and container runtimes mount them.
const (
	cgroupV2Root   = "/sys/fs/cgroup"
	cgroupV1CPU    = "/sys/fs/cgroup/cpu"
	cgroupV1Acct   = "/sys/fs/cgroup/cpuacct"
	procSelfCgroup = "/proc/self/cgroup"
)

// findCgroupCPU reads this process's cgroup from /proc/self/cgroup and its CPU quota: cgroup
// v2's cpu.max, else v1's cpu.cfs_quota_us over cpu.cfs_period_us; the smallest along the path
// up to the root, since a container's quota may be set on its pod's cgroup. Directories that do
// not exist are passed over: a container sees its own cgroup at the root of the mount, whatever
// /proc/self/cgroup names. Nil when there is no quota or nothing can be read.
func findCgroupCPU(read func(string) ([]byte, error)) *cgroupCPU {
	raw, err := read(procSelfCgroup)
	if err != nil {
		return nil
	}
	var v2, v1cpu, v1acct string
	for _, line := range strings.Split(string(raw), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		if parts[1] == "" {
			v2 = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			switch c {
			case "cpu":
				v1cpu = parts[2]
			case "cpuacct":
				v1acct = parts[2]
			}
		}
	}
	if v2 != "" {
		if cpus, ok := smallestQuota(read, cgroupV2Root, v2, quotaV2); ok {
			return &cgroupCPU{cpus: cpus, usage: func() (uint64, bool) { return usageV2(read, v2) }}
		}
	}
	if v1cpu != "" && v1acct != "" {
		if cpus, ok := smallestQuota(read, cgroupV1CPU, v1cpu, quotaV1); ok {
			return &cgroupCPU{cpus: cpus, usage: func() (uint64, bool) { return usageV1(read, v1acct) }}
		}
	}
	return nil
}

// smallestQuota returns the smallest quota found from root+dir up to root.
func smallestQuota(read func(string) ([]byte, error), root, dir string, quota func(read func(string) ([]byte, error), dir string) (float64, bool)) (float64, bool) {
	best, found := 0.0, false
	for _, d := range upToRoot(dir) {
		if q, ok := quota(read, path.Join(root, d)); ok && (!found || q < best) {
			best, found = q, true
		}
	}
	return best, found
}

// upToRoot lists dir and its parents, dir first, "/" last.
func upToRoot(dir string) []string {
	var out []string
	for d := path.Clean(dir); ; d = path.Dir(d) {
		out = append(out, d)
		if d == "/" {
			return out
		}
	}
}

// quotaV2 reads cpu.max: "<quota> <period>" in microseconds, or "max <period>" for none.
func quotaV2(read func(string) ([]byte, error), dir string) (float64, bool) {
	raw, err := read(path.Join(dir, "cpu.max"))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(raw))
	if len(f) != 2 || f[0] == "max" {
		return 0, false
	}
	return ratio(f[0], f[1])
}

// quotaV1 reads cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us.
func quotaV1(read func(string) ([]byte, error), dir string) (float64, bool) {
	q, err := read(path.Join(dir, "cpu.cfs_quota_us"))
	if err != nil {
		return 0, false
	}
	p, err := read(path.Join(dir, "cpu.cfs_period_us"))
	if err != nil {
		return 0, false
	}
	return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

func ratio(quota, period string) (float64, bool) {
	q, err1 := strconv.ParseInt(quota, 10, 64)
	p, err2 := strconv.ParseInt(period, 10, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false
	}
	return float64(q) / float64(p), true
}

// usageV2 is cpu.stat's usage_usec of the deepest directory of dir that has one.
func usageV2(read func(string) ([]byte, error), dir string) (uint64, bool) {
	return deepest(dir, func(d string) (uint64, bool) {
		raw, err := read(path.Join(cgroupV2Root, d, "cpu.stat"))
		if err != nil {
			return 0, false
		}
		for _, line := range bytes.Split(raw, []byte("\n")) {
			if v, ok := bytes.CutPrefix(line, []byte("usage_usec ")); ok {
				n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
				return n, err == nil
			}
		}
		return 0, false
	})
}

// usageV1 is cpuacct.usage (nanoseconds) of the deepest directory of dir that has one.
func usageV1(read func(string) ([]byte, error), dir string) (uint64, bool) {
	return deepest(dir, func(d string) (uint64, bool) {
		raw, err := read(path.Join(cgroupV1Acct, d, "cpuacct.usage"))
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(raw)), 10, 64)
		return n / 1000, err == nil
	})
}

// deepest returns what get finds first walking from dir up to the root.
func deepest(dir string, get func(string) (uint64, bool)) (uint64, bool) {
	for _, d := range upToRoot(dir) {
		if v, ok := get(d); ok {
			return v, true
		}
	}
	return 0, false
}
