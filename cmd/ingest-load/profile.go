package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// profiling says which profiles of the service to take during a measured phase.
type profiling struct {
	cpuFile, heapFile string
	seconds           int // length of the CPU profile, from the start of the phase
}

// phase is the cost of one measured phase to the service process: CPU time (user + system, the
// embedded NATS server included: it runs in the same process) and peak RSS.
type phase struct {
	s      *service
	cpu0   time.Duration
	cpuErr chan error
}

// begin resets the process's peak RSS to its current RSS, notes its CPU time and starts the CPU
// profile if one was asked for.
func (s *service) begin() (*phase, error) {
	pid := s.cmd.Process.Pid
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return nil, fmt.Errorf("reset peak RSS: %w", err)
	}
	cpu, err := cpuTime(pid)
	if err != nil {
		return nil, err
	}
	p := &phase{s: s, cpu0: cpu}
	if s.prof.cpuFile != "" {
		p.cpuErr = make(chan error, 1)
		go func() {
			p.cpuErr <- s.fetchProfile(fmt.Sprintf("/debug/pprof/profile?seconds=%d", s.prof.seconds), s.prof.cpuFile)
		}()
	}
	return p, nil
}

// end prints the phase's CPU per document and peak RSS, and writes the profiles.
func (p *phase) end(docs int) error {
	pid := p.s.cmd.Process.Pid
	cpu, err := cpuTime(pid)
	if err != nil {
		return err
	}
	rss, peak, err := memory(pid)
	if err != nil {
		return err
	}
	used := cpu - p.cpu0
	fmt.Printf("ingest process: CPU %s (%.2f ms per document), RSS now %.1f MiB, peak %.1f MiB\n",
		used.Round(time.Millisecond), float64(used)/1e6/float64(max(docs, 1)), float64(rss)/1024, float64(peak)/1024)
	if p.s.prof.heapFile != "" {
		if err := p.s.fetchProfile("/debug/pprof/heap", p.s.prof.heapFile); err != nil {
			return err
		}
		fmt.Printf("heap profile (in use now, allocated since start): %s\n", p.s.prof.heapFile)
	}
	if p.cpuErr != nil {
		if err := <-p.cpuErr; err != nil {
			return err
		}
		fmt.Printf("CPU profile of the phase's first %d s: %s\n", p.s.prof.seconds, p.s.prof.cpuFile)
	}
	return nil
}

// fetchProfile saves one of the service's /debug/pprof profiles (http.profiling, behind the key).
func (s *service) fetchProfile(path, file string) error {
	req, err := http.NewRequest(http.MethodGet, s.httpURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("profile %s: %s %s", path, res.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: %w", path, err)
	}
	return f.Close()
}

// cpuTime is the user + system CPU time pid has used (/proc/pid/stat fields 14 and 15, in clock
// ticks of 1/100 s: USER_HZ is 100 on Linux whatever the kernel's HZ).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	f := strings.Fields(rest) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
