// Command ingest-load measures the real ingest binary: HTTP drop throughput and latency against a
// raw JetStream publish of the same bytes (the ceiling), or peak memory while one large document
// uploads. It builds ./cmd/ingest (or takes -bin), runs it on a fresh data_dir and finds it through
// data_dir/runtime.json, as the CLI does.
//
//	go run ./cmd/ingest-load -n 2000 -c 8 -size 100KiB
//	go run ./cmd/ingest-load -n 1000 -c 8 -size 100KiB -route -cpuprofile cpu.pprof -heapprofile heap.pprof
//	go run ./cmd/ingest-load -rss -size 64MiB
//	go run ./cmd/ingest-load -e2e -n 1000 -c 8 -size 20KiB -vendors laigo,gini,allspark,documine
//	go run ./cmd/ingest-load -e2e -outside -n 1000 -c 8 -size 100KiB   # Gini simulated by this process
//	go run ./cmd/ingest-load -callbacks -n 20000 -c 50
//	go run ./cmd/ingest-load -cluster -n 2000 -c 8 -size 100KiB
//	go run ./cmd/ingest-load -webhooks 1 -n 20000 -rate 500
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/config"
)

func main() {
	bin := flag.String("bin", "", "ingest binary (default: go build ./cmd/ingest)")
	n := flag.Int("n", 2000, "documents to upload")
	c := flag.Int("c", 8, "concurrent clients")
	sizeFlag := flag.String("size", "100KiB", "document size")
	rss := flag.Bool("rss", false, "measure peak RSS while one document of -size uploads")
	e2e := flag.Bool("e2e", false, "measure upload → completed through the sandbox vendors")
	vendorList := flag.String("vendors", "gini", "with -e2e: the vendors each document goes to")
	outside := flag.Bool("outside", false, "with -e2e: Gini is simulated by ingest-load's process (sandbox off in ingest), so the service's CPU is its own")
	cb := flag.Bool("callbacks", false, "measure the Allspark callback endpoint (-n callbacks from -c senders)")
	cluster := flag.Bool("cluster", false, "two instances on a three-node cluster (replicas 3): throughput, then a node kill")
	hooks := flag.Int("webhooks", 0, "measure webhook delivery to N subscriptions (instant local receiver): -n events, then -rate events/s for latency")
	rate := flag.Int("rate", 500, "with -webhooks: events per second in the latency phase")
	route := flag.Bool("route", false, "throughput with the shipped route (every document to sandbox Gini) instead of routes: []")
	var prof profiling
	flag.StringVar(&prof.cpuFile, "cpuprofile", "", "write a CPU profile of the service during the measured uploads to `file`")
	flag.StringVar(&prof.heapFile, "heapprofile", "", "write a heap profile of the service at the end of the measured uploads to `file`")
	flag.IntVar(&prof.seconds, "profile-seconds", 10, "length of the CPU profile")
	flag.Parse()
	size, err := config.ParseByteSize(*sizeFlag)
	if err != nil {
		fail(err)
	}
	if *bin == "" {
		*bin = filepath.Join(os.TempDir(), "ingest-load-bin")
		fmt.Fprintln(os.Stderr, "building ./cmd/ingest …")
		if out, err := exec.Command("go", "build", "-o", *bin, "./cmd/ingest").CombinedOutput(); err != nil {
			fail(fmt.Errorf("go build: %v\n%s", err, out))
		}
	}
	if *cluster {
		if err := measureCluster(*bin, *n, *c, size); err != nil {
			fail(err)
		}
		return
	}
	extra := "routes: []\n" // documents stay received: the drop alone is measured
	switch {
	case *route:
		extra = "routes:\n  - {name: default, match: {}, vendors: [gini]}\n" // as the shipped config.yaml
	case *e2e && *outside:
		if *vendorList != "gini" {
			fail(fmt.Errorf("-outside simulates Gini only (-vendors gini)"))
		}
		var stopSim func()
		if extra, stopSim, err = startOutsideGini(); err != nil {
			fail(err)
		}
		defer stopSim()
	case *e2e:
		extra = sandboxAtOnce
	case *cb:
		extra = "vendors: {allspark: {callback_token: " + callbackToken + "}}\n"
	}
	var sink *hookSink
	if *hooks > 0 {
		if sink, err = newHookSink(); err != nil {
			fail(err)
		}
		extra = webhookConfig(sink.url, *hooks)
	}
	svc, err := startService(*bin, extra)
	if err != nil {
		fail(err)
	}
	svc.prof = prof
	defer svc.stop()
	switch {
	case *rss:
		err = measureRSS(svc, size)
	case *e2e:
		err = measureE2E(svc, *n, *c, size, *vendorList)
	case *cb:
		err = measureCallbacks(svc, *n, *c)
	case *hooks > 0:
		err = measureWebhooks(svc, sink, *n, *hooks, *rate)
	default:
		err = measureThroughput(svc, *n, *c, size)
	}
	if err != nil {
		svc.stop() // fail exits without running deferred calls
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ingest-load:", err)
	os.Exit(1)
}

type service struct {
	cmd     *exec.Cmd
	exited  chan error
	dir     string
	httpURL string
	natsURL string
	key     string
	prof    profiling
}

// sandboxAtOnce makes the simulators answer at once and lifts client-side limits, so that what is
// measured is the pipeline.
const sandboxAtOnce = `
vendors:
  laigo: {rate_limit: 0, concurrency: 16, sandbox_pending_polls: 0, poll: {initial: 10ms, max: 1s, deadline: 1h}}
  gini: {concurrency: 16, sandbox_pending_polls: 0, poll: {initial: 10ms, max: 1s, deadline: 1h}}
  allspark: {concurrency: 16, sandbox_pending_polls: 0, poll: {initial: 10ms, max: 1s, deadline: 1h}}
  documine: {concurrency: 16, sandbox_pending_polls: 0, poll: {initial: 10ms, max: 1s, deadline: 1h}}
dispatch: {workers: 16, poll_workers: 32}
`

const callbackToken = "load-callback-token-0123456789"

func startService(bin, extraConfig string) (*service, error) {
	dir, err := os.MkdirTemp("", "ingest-load-")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("data_dir: %s\nlog:\n  level: warn\nhttp:\n  listen: 127.0.0.1:0\n  api_keys: [load-test-key-0123456789]\n", filepath.Join(dir, "data"))
	if !strings.Contains(extraConfig, "nats:") {
		cfg += "nats:\n  embedded:\n    listen: 127.0.0.1:0\n"
	}
	cfg += extraConfig
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &service{cmd: cmd, dir: dir, key: "load-test-key-0123456789"}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.exited = exited
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("ingest exited at start: %v", err)
		default:
		}
		b, err := os.ReadFile(filepath.Join(dir, "data", "runtime.json"))
		if err == nil {
			var rt struct {
				HTTPURL string `json:"http_url"`
				NATSURL string `json:"nats_url"`
			}
			if json.Unmarshal(b, &rt) == nil {
				s.httpURL, s.natsURL = rt.HTTPURL, rt.NATSURL
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("ingest did not start within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *service) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	<-s.exited
	os.RemoveAll(s.dir)
}

// document is a synthetic PDF of the given size, generated as it is read.
type document struct {
	left int64
	head bool
}

func newDocument(size int64) *document { return &document{left: size} }

func (d *document) Read(p []byte) (int, error) {
	if d.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), d.left))
	for i := range p[:n] {
		p[i] = byte('a' + i%26)
	}
	if !d.head {
		copy(p[:n], "%PDF-1.7\n")
		d.head = true
	}
	d.left -= int64(n)
	return n, nil
}

func upload(client *http.Client, s *service, body io.Reader, size int64) error {
	_, err := uploadTo(client, s, body, size, "")
	return err
}

// uploadTo uploads a document (to the named vendors, if any) and returns its id.
func uploadTo(client *http.Client, s *service, body io.Reader, size int64, vendors string) (string, error) {
	u := s.httpURL + "/v1/documents?filename=load.pdf"
	if vendors != "" {
		u += "&vendor=" + vendors
	}
	req, err := http.NewRequest(http.MethodPost, u, body)
	if err != nil {
		return "", err
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("Content-Type", "application/pdf")
	res, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("upload: %s %s", res.Status, b)
	}
	var out struct {
		Documents []struct{ ID string } `json:"documents"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Documents) != 1 {
		return "", fmt.Errorf("upload: unexpected answer %s", b)
	}
	return out.Documents[0].ID, nil
}

// parallel calls op(i) for every i in [0, n) on c workers; the first error stops them all and is
// returned.
func parallel(n, c int, op func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := op(i); err != nil {
					once.Do(func() { firstErr = err; failed.Store(true) })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// run performs n operations on c workers and reports rate and latency percentiles.
func run(name string, n, c int, op func() error) error {
	lat := make([]time.Duration, n)
	start := time.Now()
	err := parallel(n, c, func(i int) error {
		t0 := time.Now()
		if err := op(); err != nil {
			return err
		}
		lat[i] = time.Since(t0)
		return nil
	})
	total := time.Since(start)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	fmt.Printf("%-28s %6d ops  %8.1f ops/s  p50 %8s  p99 %8s  max %8s\n", name, n, float64(n)/total.Seconds(),
		pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
	return nil
}

func measureThroughput(s *service, n, c int, size int64) error {
	fmt.Printf("documents of %d bytes, %d concurrent clients, binary pid %d\n", size, c, s.cmd.Process.Pid)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	// Warm up connections and the server's pools.
	for range c {
		if err := upload(client, s, newDocument(size), size); err != nil {
			return err
		}
	}
	cost, err := s.begin()
	if err != nil {
		return err
	}
	if err := run("HTTP drop (202 after PubAck)", n, c, func() error { return upload(client, s, newDocument(size), size) }); err != nil {
		return err
	}
	if err := cost.end(n); err != nil {
		return err
	}

	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The ceiling is what the drop must do at the least, straight from a NATS client in the same
	// machine: the bytes into an Object Store (chunked as ingest chunks them) and one event
	// published with its PubAck — no HTTP, no checks, no state.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LOADBASE", Subjects: []string{"loadbase.>"}, Storage: jetstream.FileStorage}); err != nil {
		return err
	}
	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "loadbase", Storage: jetstream.FileStorage})
	if err != nil {
		return err
	}
	event := []byte(`{"specversion":"1.0","type":"loadbase.received","source":"/load","id":"x","data":{"size":` + strconv.FormatInt(size, 10) + `}}`)
	var seq atomic.Int64
	return run("raw Object Store put + event (ceiling)", n, c, func() error {
		id := strconv.FormatInt(seq.Add(1), 10)
		chunk := uint32(min(size, 256<<10))
		if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: id, Opts: &jetstream.ObjectMetaOptions{ChunkSize: max(chunk, 1)}}, newDocument(size)); err != nil {
			return err
		}
		_, err := js.Publish(ctx, "loadbase.doc", event, jetstream.WithMsgID(id))
		return err
	})
}

func measureRSS(s *service, size int64) error {
	pid := s.cmd.Process.Pid
	// Let start-up settle, then take the idle figure and reset the peak to it.
	time.Sleep(2 * time.Second)
	idle, _, err := memory(pid)
	if err != nil {
		return err
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS: %w", err)
	}
	t0 := time.Now()
	if err := upload(http.DefaultClient, s, newDocument(size), size); err != nil {
		return err
	}
	took := time.Since(t0)
	_, peak, err := memory(pid)
	if err != nil {
		return err
	}
	fmt.Printf("one document of %d bytes uploaded in %s (%.1f MiB/s)\n", size, took.Round(time.Millisecond), float64(size)/(1<<20)/took.Seconds())
	fmt.Printf("RSS idle %.1f MiB, peak during upload %.1f MiB, peak above idle %.1f MiB\n",
		float64(idle)/1024, float64(peak)/1024, float64(peak-idle)/1024)
	return nil
}

// memory returns VmRSS and VmHWM of pid, in KiB.
func memory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm, sc.Err()
}
