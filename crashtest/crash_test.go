// Package crashtest kills a real ingest process with SIGKILL at random moments while clients
// upload and vendors work, restarts it, and counts: every acknowledged document completes with its
// own vendor job, reaches each vendor once (Laigo, which cannot be asked, excepted and counted),
// every client learns its document id, and nobody waits for a long lease.
package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/vendors/allspark/allsparksim"
	"github.com/ingest-dev/ingest/vendors/gini/ginisim"
	"github.com/ingest-dev/ingest/vendors/laigo/laigosim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

const (
	apiKey       = "crash-test-key-0123456789abcdef"
	heartbeatTTL = 3 * time.Second
	uploadDelay  = 300 * time.Millisecond // vendors answer uploads this late: kills land in between
)

// The numbers of a run; small enough for CI, large enough that kills land in every step.
var (
	documents = 90
	clients   = 6
	kills     = 10
)

func TestKill9UnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test builds and kills a real ingest process; skipped with -short")
	}
	bin := buildIngest(t)
	t.Run("embedded nats-server", func(t *testing.T) { crashRun(t, bin, startNATS(t), "ingest") })
	// The same against Debian's NATS 2.9 (CI has it): heartbeats and claims on its KV.
	t.Run("external NATS 2.9", func(t *testing.T) {
		url := eventstest.ExternalURL(t)
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		crashRun(t, bin, url, eventstest.Namespace(t, nc))
	})
}

func crashRun(t *testing.T, bin, natsURL, namespace string) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	v := startVendors(t)
	dir := t.TempDir()
	httpAddr := freeAddr(t)
	names := events.Names{Namespace: namespace}
	proc := startIngest(t, bin, dir, httpAddr, configYAML(dir, natsURL, namespace, httpAddr, v), "ingest.log")

	docs := makeDocuments(documents)
	results := make([]clientResult, len(docs))
	var wg sync.WaitGroup
	work := make(chan int)
	for range clients {
		wg.Go(func() {
			for i := range work {
				results[i] = upload(t, httpAddr, docs[i])
				// Spread the uploads over the kills.
				time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
			}
		})
	}
	uploadsDone := make(chan struct{})
	go func() {
		for i := range docs {
			work <- i
		}
		close(work)
		wg.Wait()
		close(uploadsDone)
	}()

	// Kill at random moments: while uploads run, and on into dispatch and polling.
	var killTimes []time.Time
	for k := range kills {
		time.Sleep(time.Duration(800+rng.IntN(2200)) * time.Millisecond) // the moments are the point here
		proc.kill()
		killTimes = append(killTimes, time.Now())
		t.Logf("kill %d at %s", k+1, time.Now().Format("15:04:05.000"))
		proc.start()
	}
	select {
	case <-uploadsDone:
	case <-time.After(3 * time.Minute):
		t.Fatal("uploads did not all succeed within 3 minutes of retrying")
	}
	lastRestart := time.Now()

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	waitFor(t, 3*time.Minute, "every document to complete at every vendor", func() bool {
		return completedEvents(t, js, names) >= len(docs)*3
	})
	settled := time.Since(lastRestart)
	evs := readEvents(t, js, names)

	// Count.
	byID := map[string]int{} // document id → index
	for i, r := range results {
		if len(r.ids) != 1 {
			t.Fatalf("document %d: client got %v", i, r.ids)
		}
		if j, dup := byID[r.ids[0]]; dup {
			t.Fatalf("documents %d and %d were given the same id %s", j, i, r.ids[0])
		}
		byID[r.ids[0]] = i
	}
	received := map[string]bool{}
	refs := map[string]map[string]string{} // vendor → ref → document id
	wrong, failed := 0, 0
	var longestStall time.Duration
	submittedAt := map[string]time.Time{}
	receivedAt := map[string]time.Time{}
	for _, ev := range evs {
		i, ours := byID[ev.Subject]
		switch ev.Kind() {
		case events.Received:
			if !ours {
				t.Errorf("a received event for %s, an id no client was given", ev.Subject)
			}
			received[ev.Subject] = true
			receivedAt[ev.Subject] = ev.Time
		case events.Submitted:
			var sd events.SubmittedData
			_ = ev.DecodeData(&sd)
			submittedAt[ev.Subject+"/"+sd.Vendor] = ev.Time
		case events.Failed:
			failed++
			t.Errorf("failed event: %s", ev.Data)
		case events.Completed:
			var cd events.CompletedData
			if err := ev.DecodeData(&cd); err != nil {
				t.Fatal(err)
			}
			if refs[cd.Vendor] == nil {
				refs[cd.Vendor] = map[string]string{}
			}
			if other, dup := refs[cd.Vendor][cd.VendorRef]; dup && other != ev.Subject {
				t.Errorf("%s job %s is attributed to documents %s and %s", cd.Vendor, cd.VendorRef, other, ev.Subject)
				wrong++
			}
			refs[cd.Vendor][cd.VendorRef] = ev.Subject
			// The simulators derive the invoice number from the uploaded bytes: a result that
			// belongs to this document carries this document's number, and no other's.
			body := string(ev.Data)
			if !strings.Contains(body, docs[i].invoice) {
				t.Errorf("%s result for document %d lacks its invoice number %s", cd.Vendor, i, docs[i].invoice)
				wrong++
			}
			for j, d := range docs {
				if j != i && strings.Contains(body, d.invoice) {
					t.Errorf("%s result for document %d carries document %d's invoice number", cd.Vendor, i, j)
					wrong++
				}
			}
		}
	}
	for key, at := range submittedAt {
		id := key[:strings.IndexByte(key, '/')]
		longestStall = max(longestStall, at.Sub(receivedAt[id]))
	}
	if len(received) != len(docs) {
		t.Errorf("%d documents received, want %d", len(received), len(docs))
	}
	laigoExtra := 0
	for i, d := range docs {
		if n := v.gini.Ledger.Count(d.sha); n != 1 {
			t.Errorf("document %d reached Gini %d times", i, n)
		}
		if n := v.allspark.Ledger.Count(d.sha); n != 1 {
			t.Errorf("document %d reached Allspark %d times", i, n)
		}
		if n := v.laigo.Ledger.Count(d.sha); n < 1 {
			t.Errorf("document %d never reached Laigo", i)
		} else {
			laigoExtra += n - 1
		}
	}
	var longest409 time.Duration
	retries := 0
	for _, r := range results {
		longest409 = max(longest409, r.longest409)
		retries += r.attempts - 1
	}
	// A claim of a killed instance is taken over once its heartbeat is gone: the TTL, the time
	// the process needs to come back, and a little slack for a loaded machine.
	if limit := heartbeatTTL + 10*time.Second; longest409 > limit {
		t.Errorf("an Idempotency-Key answered 409 for %s in a row (limit %s)", longest409.Round(time.Millisecond), limit)
	}
	indexed := checkIndex(t, httpAddr, byID)
	delivered, redelivered := checkDeliveries(t, v.hooks, evs)
	seen := proc.checkLog()
	t.Logf("CRASH TEST: %d documents listed once each by the index after the kills (%s); webhook: %d events delivered, %d of them more than once (at-least-once, same webhook-id); %d uploads (%d client retries), %d kills, %d received, lost %d, duplicated at Gini/Allspark %d, "+
		"wrong results %d, failed %d, Laigo re-uploads (at-least-once, counted) %d, longest 409 run %s, longest received→submitted %s, "+
		"all complete %s after the last restart; reconciled by tag %d, found absent and resubmitted %d, claims continued %d",
		indexed, "GET /v1/documents", delivered, redelivered, len(docs), retries, len(killTimes), len(received), len(docs)-countCompleted(evs)/3, len(v.gini.Ledger.All())+len(v.allspark.Ledger.All())-2*len(docs),
		wrong, failed, laigoExtra, longest409.Round(time.Millisecond), longestStall.Round(time.Millisecond), settled.Round(time.Millisecond),
		seen["found at the vendor by its tag"], seen["did not reach the vendor"], seen["continuing an Idempotency-Key request"])
}

// checkDeliveries waits until the webhook subscription (received and completed events) has had
// every such event of the stream delivered at least once, and checks that nothing else was: a
// delivery the deliverer's restart repeats carries the same webhook-id, for the receiver to drop.
// It returns how many events were delivered and how many of them more than once.
func checkDeliveries(t *testing.T, hooks *hookSink, evs []events.Event) (delivered, redelivered int) {
	t.Helper()
	want := map[string]bool{}
	for _, ev := range evs {
		if k := ev.Kind(); k == events.Received || k == events.Completed {
			want[ev.ID] = true
		}
	}
	missing := func() []string {
		got := hooks.counts()
		var out []string
		for id := range want {
			if got[id] == 0 {
				out = append(out, id)
			}
		}
		return out
	}
	deadline := time.Now().Add(time.Minute)
	for len(missing()) > 0 {
		if time.Now().After(deadline) {
			m := missing()
			t.Errorf("webhook: %d of %d events never delivered after the kills, e.g. %s", len(m), len(want), m[0])
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for id, n := range hooks.counts() {
		if !want[id] {
			t.Errorf("webhook: delivered %q (%d times), which is no received or completed event of the stream", id, n)
			continue
		}
		delivered++
		if n > 1 {
			redelivered++
		}
	}
	return delivered, redelivered
}

// checkIndex waits until the list index (docindex: SQLite in data_dir fed by the stream, each
// commit recording its stream position; the process was killed mid-batch many times) lists every
// document once, completed, and nothing else; it returns how many it listed.
func checkIndex(t *testing.T, httpAddr string, want map[string]int) int {
	t.Helper()
	var problem string
	var listed int
	check := func() bool {
		seen := map[string]int{}
		completed := int64(0)
		cursor := ""
		for {
			u := "http://" + httpAddr + "/v1/documents?limit=500"
			if cursor != "" {
				u += "&cursor=" + url.QueryEscape(cursor)
			}
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			req.Header.Set("Authorization", "Bearer "+apiKey)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				problem = err.Error()
				return false
			}
			var page struct {
				Documents []struct {
					ID     string `json:"id"`
					Status string `json:"status"`
				} `json:"documents"`
				NextCursor *string `json:"next_cursor"`
				Counts     struct {
					Status map[string]int64 `json:"status"`
				} `json:"counts"`
			}
			err = json.NewDecoder(res.Body).Decode(&page)
			res.Body.Close()
			if err != nil || res.StatusCode != http.StatusOK {
				problem = fmt.Sprintf("list: %s %v", res.Status, err)
				return false
			}
			if cursor == "" {
				completed = page.Counts.Status["completed"]
			}
			for _, d := range page.Documents {
				seen[d.ID]++
				if d.Status != "completed" {
					problem = fmt.Sprintf("document %s listed as %s", d.ID, d.Status)
					return false
				}
			}
			if page.NextCursor == nil {
				break
			}
			cursor = *page.NextCursor
		}
		listed = len(seen)
		for id, n := range seen {
			if _, ours := want[id]; !ours || n != 1 {
				problem = fmt.Sprintf("document %s listed %d times (ours: %v)", id, n, ours)
				return false
			}
		}
		if len(seen) != len(want) || completed != int64(len(want)) {
			problem = fmt.Sprintf("%d documents listed, counts say %d completed, want %d", len(seen), completed, len(want))
			return false
		}
		return true
	}
	// The index follows the stream a little behind: wait for it, then say what was wrong.
	deadline := time.Now().Add(time.Minute)
	for !check() {
		if time.Now().After(deadline) {
			t.Errorf("list index after the kills: %s", problem)
			return listed
		}
		time.Sleep(200 * time.Millisecond)
	}
	return listed
}

// document is one upload: distinct bytes, all named scan.pdf as scanners name them.
type document struct {
	body    []byte
	sha     string
	invoice string
	key     string
}

func makeDocuments(n int) []document {
	seen := map[string]bool{}
	var out []document
	for i := 0; len(out) < n; i++ {
		body := []byte(fmt.Sprintf("%%PDF-1.7\n%% crash test document %d\n%%%%EOF\n", i))
		rec := simkit.RecogniseContent("scan.pdf", body)
		if seen[rec.InvoiceNumber] {
			continue // keep invoice numbers distinct, so that each result names its document
		}
		seen[rec.InvoiceNumber] = true
		sha, _ := simkit.Digest(body)
		out = append(out, document{body: body, sha: sha, invoice: rec.InvoiceNumber, key: fmt.Sprintf("crash-%d", len(out))})
	}
	return out
}

type clientResult struct {
	ids        []string
	attempts   int
	longest409 time.Duration
}

// upload sends one document with its Idempotency-Key until it is accepted, as a well-behaved
// client does: connection errors, 503 and 409 are retried.
func upload(t *testing.T, addr string, d document) clientResult {
	return uploadTo(t, []string{addr}, d)
}

// uploadTo is upload against several instances: each retry goes to the next one, as a load
// balancer would send it.
func uploadTo(t *testing.T, addrs []string, d document) clientResult {
	var r clientResult
	var conflictSince time.Time
	hc := &http.Client{Timeout: 30 * time.Second}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		r.attempts++
		// The body comes in two halves with a pause between: kills land while a request is
		// half read, after its key was claimed.
		half := len(d.body) / 2
		pause := time.Duration(rand.IntN(400)) * time.Millisecond
		src := io.MultiReader(bytes.NewReader(d.body[:half]), &pausedReader{pause: pause, r: bytes.NewReader(d.body[half:])})
		addr := addrs[(r.attempts-1)%len(addrs)]
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/documents?filename=scan.pdf", src)
		req.ContentLength = int64(len(d.body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Idempotency-Key", d.key)
		req.Header.Set("Content-Type", "application/pdf")
		res, err := hc.Do(req)
		status := 0
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(res.Body)
			res.Body.Close()
			status = res.StatusCode
		}
		if status == http.StatusConflict {
			if conflictSince.IsZero() {
				conflictSince = time.Now()
			}
		} else if !conflictSince.IsZero() {
			r.longest409 = max(r.longest409, time.Since(conflictSince))
			conflictSince = time.Time{}
		}
		switch {
		case status == http.StatusAccepted:
			var resp httpdrop.Response
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Errorf("202 with %s: %v", body, err)
				return r
			}
			for _, doc := range resp.Documents {
				r.ids = append(r.ids, doc.ID)
			}
			return r
		case err != nil, status == http.StatusServiceUnavailable, status == http.StatusConflict, status >= 500:
			time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond) // a client's retry pause
		default:
			t.Errorf("upload %s: %d %s", d.key, status, body)
			return r
		}
	}
	t.Errorf("upload %s: not accepted within 3 minutes", d.key)
	return r
}

// pausedReader waits once before its first byte.
type pausedReader struct {
	pause  time.Duration
	paused bool
	r      io.Reader
}

func (p *pausedReader) Read(b []byte) (int, error) {
	if !p.paused {
		p.paused = true
		time.Sleep(p.pause) // a slow client's pause, not synchronisation
	}
	return p.r.Read(b)
}

// process is the ingest under test.
// startIngest writes cfg as dir/config.yaml and starts ingest on it (its HTTP on addr), logging
// to dir/logName; it is killed when the test ends.
func startIngest(t *testing.T, bin, dir, addr, cfg, logName string) *process {
	t.Helper()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &process{t: t, bin: bin, cfg: path, addr: addr, log: filepath.Join(dir, logName)}
	p.start()
	t.Cleanup(p.kill)
	return p
}

type process struct {
	t    *testing.T
	bin  string
	cfg  string
	addr string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	once sync.Once
}

func (p *process) start() {
	p.t.Helper()
	p.once.Do(func() {
		p.t.Cleanup(func() {
			if p.t.Failed() {
				b, _ := os.ReadFile(p.log)
				if len(b) > 20000 {
					b = b[len(b)-20000:]
				}
				p.t.Logf("the end of ingest's log:\n%s", b)
			}
		})
	})
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, "serve", "--config", p.cfg)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	f.Close()
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	waitFor(p.t, 60*time.Second, "ingest to be ready", func() bool {
		res, err := http.Get("http://" + p.addr + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// checkLog fails on what must never appear in ingest's own output, and counts the recoveries
// it reports.
func (p *process) checkLog() map[string]int {
	f, err := os.Open(p.log)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, bad := range []string{"DATA RACE", "panic:", "the vendor has the document twice", "more than once"} {
			if strings.Contains(line, bad) {
				p.t.Errorf("ingest log: %s", line)
			}
		}
		for _, what := range []string{"found at the vendor by its tag", "did not reach the vendor", "continuing an Idempotency-Key request",
			"document state not written yet", "state projector could not apply"} {
			if strings.Contains(line, what) {
				counts[what]++
			}
		}
	}
	return counts
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// TestMain removes the binary the tests share.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildIngest builds cmd/ingest once for every test of the package.
func buildIngest(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() { builtBin, buildErr = build() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func build() (string, error) {
	dir, err := os.MkdirTemp("", "ingest-crashtest-")
	if err != nil {
		return "", err
	}
	buildDir = dir
	bin := filepath.Join(dir, "ingest")
	// With the race detector when the test has it: it shares the test's compiled packages, and
	// races in the process under test show up in its log.
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../cmd/ingest")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build ingest: %v\n%s", err, out)
	}
	return bin, nil
}

// startNATS runs the NATS server ingest connects to; it outlives every ingest process.
func startNATS(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		JetStreamMaxStore: 2 << 30, JetStreamMaxMemory: 128 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv.ClientURL()
}

type vendorSims struct {
	gini                 *ginisim.Server
	allspark             *allsparksim.Server
	laigo                *laigosim.Server
	giniURL, allsparkURL string
	laigoURL             string
	// hooks receives the webhook subscription's deliveries: how often each webhook-id came.
	hooks    *hookSink
	hooksURL string
}

// hookSink counts webhook deliveries by webhook-id (the event id).
type hookSink struct {
	mu   sync.Mutex
	byID map[string]int
}

func (h *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	h.mu.Lock()
	h.byID[r.Header.Get("webhook-id")]++
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookSink) counts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.byID)
}

func startVendors(t *testing.T) *vendorSims {
	v := &vendorSims{
		gini:     ginisim.New(ginisim.Config{ClientID: "gini-id", ClientSecret: "gini-secret", PendingPolls: 1}),
		allspark: allsparksim.New(allsparksim.Config{APIKey: "allspark-key", PendingPolls: 1}),
		laigo:    laigosim.New(laigosim.Config{ClientID: "laigo-id", ClientSecret: "laigo-secret", PendingPolls: 1}),
	}
	serve := func(h http.Handler, uploadPath string) string {
		srv := httptest.NewServer(slowUploads(h, uploadPath))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	v.giniURL = serve(v.gini, "/documents")
	v.allsparkURL = serve(v.allspark, allsparksim.Prefix+"/cases/direct-upload/")
	v.laigoURL = serve(v.laigo, laigosim.UploadPath)
	v.hooks = &hookSink{byID: map[string]int{}}
	hooks := httptest.NewServer(v.hooks)
	t.Cleanup(hooks.Close)
	v.hooksURL = hooks.URL + "/hook"
	return v
}

// slowUploads answers uploads uploadDelay after the vendor took them: the window in which a kill
// leaves a submission the vendor has and we do not know of.
func slowUploads(h http.Handler, path string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != path {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		select {
		case <-time.After(uploadDelay):
		case <-r.Context().Done():
			return // the caller is gone (killed): it never hears the answer
		}
		for k, vs := range rec.Header() {
			w.Header()[k] = vs
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

func configYAML(dir, natsURL, namespace, httpAddr string, v *vendorSims) string {
	return fmt.Sprintf(`data_dir: %s
log: {level: info, format: json}
heartbeat_ttl: %s
nats:
  url: %s
  namespace: %s
http:
  listen: %s
  api_keys: [%s]
vendors:
  laigo:
    sandbox: false
    base_url: %s
    token_url: %s%s
    client_id: laigo-id
    client_secret: laigo-secret
    rate_limit: 0
    poll: {initial: 200ms, max: 1s}
  gini:
    sandbox: false
    base_url: %s
    client_id: gini-id
    client_secret: gini-secret
    user_identifier: crash-test
    poll: {initial: 200ms, max: 1s}
  allspark:
    sandbox: false
    base_url: %s%s
    api_key: allspark-key
    poll: {initial: 200ms, max: 1s}
  documine: {enabled: false}
  cradl: {enabled: false}
routes:
  - name: all
    vendors: [gini, allspark, laigo]
dispatch:
  retry_initial: 200ms
  retry_max: 2s
subscriptions:
  - name: crash
    url: %s
    events: [received, completed]
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    allow_private_targets: true
`, dir, heartbeatTTL, natsURL, namespace, httpAddr, apiKey,
		v.laigoURL, v.laigoURL, laigosim.TokenPath,
		v.giniURL,
		v.allsparkURL, allsparksim.Prefix, v.hooksURL)
}

func readEvents(t *testing.T, js jetstream.JetStream, names events.Names) []events.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, names.Stream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Event
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		ev, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("malformed event at %d: %v", seq, err)
		}
		if ev.Kind() != "" {
			out = append(out, ev)
		}
	}
	return out
}

// completedEvents counts the messages on the completed subjects, cheaply (a repeat would count
// twice; readEvents tells them apart).
func completedEvents(t *testing.T, js jetstream.JetStream, names events.Names) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, names.Stream())
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(names.KindSubjects(events.Completed)))
	if err != nil {
		return 0
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// countCompleted counts distinct (document, vendor) completions.
func countCompleted(evs []events.Event) int {
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev.Kind() == events.Completed {
			seen[ev.ID] = true
		}
	}
	return len(seen)
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// SIGTERM while 50 callbacks and every poll wait on a vendor that does not answer: the process
// is gone within shutdown_timeout plus a second, exit code 0.
func TestSIGTERMWithWorkInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a real ingest process; skipped with -short")
	}
	const shutdownTimeout = 3 * time.Second
	const callbackToken = "sigterm-test-callback-token-0123456789"
	bin := buildIngest(t)
	natsURL := startNATS(t)
	sim := allsparksim.New(allsparksim.Config{APIKey: "allspark-key", PendingPolls: 1 << 30})
	var mu sync.Mutex
	hanging := 0
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, allsparksim.Prefix+"/cases/") && r.URL.Path != allsparksim.Prefix+"/cases/" {
			// A case lookup (a poll, or a callback being settled): never answered.
			mu.Lock()
			hanging++
			mu.Unlock()
			<-r.Context().Done()
			mu.Lock()
			hanging--
			mu.Unlock()
			return
		}
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(vendor.Close)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`data_dir: %s
log: {level: info, format: json}
shutdown_timeout: %s
nats: {url: %s}
http: {listen: %s, api_keys: [%s]}
vendors:
  allspark:
    sandbox: false
    base_url: %s%s
    api_key: allspark-key
    callback_token: %s
    callback_poll_after: 0s
    concurrency: 0              # hung status calls must not hold the submissions back
    poll: {initial: 100ms, max: 200ms}
  laigo: {enabled: false}
  gini: {enabled: false}
  documine: {enabled: false}
  cradl: {enabled: false}
routes: [{name: all, vendors: [allspark]}]
`, dir, shutdownTimeout, natsURL, addr, apiKey, vendor.URL, allsparksim.Prefix, callbackToken)
	proc := startIngest(t, bin, dir, addr, cfg, "ingest.log")

	docs := makeDocuments(10)
	for _, d := range docs {
		if r := upload(t, addr, d); len(r.ids) != 1 {
			t.Fatalf("upload: %+v", r)
		}
	}
	waitFor(t, 30*time.Second, "every document to be submitted", func() bool { return len(sim.Ledger.All()) == len(docs) })
	for i := range 50 {
		ref := sim.Ledger.All()[i%len(docs)].Ref
		res, err := http.Post("http://"+addr+"/v1/callbacks/allspark/"+callbackToken, "application/json",
			strings.NewReader(fmt.Sprintf(`{"case_id": %s, "status": "completed", "n": %d}`, ref, i)))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("callback %d: %d", i, res.StatusCode)
		}
	}
	waitFor(t, 30*time.Second, "polls and callbacks to be waiting on the vendor", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return hanging >= 16 // the poll workers' and the callback workers' worth
	})

	proc.mu.Lock()
	cmd := proc.cmd
	proc.cmd = nil
	proc.mu.Unlock()
	begun := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		took := time.Since(begun)
		t.Logf("SIGTERM with work in flight: exited after %s (shutdown_timeout %s), err %v", took.Round(time.Millisecond), shutdownTimeout, err)
		if took > shutdownTimeout+time.Second {
			t.Errorf("exit took %s, more than shutdown_timeout + 1 s", took.Round(time.Millisecond))
		}
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("ingest did not exit within 30 s of SIGTERM")
	}
	proc.checkLog()
}
