package crashtest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/gini/ginisim"
)

// Retries under SIGKILL: documents whose first round failed at Gini (its simulator fails the first
// upload of any content) are retried by clients with Idempotency-Keys while ingest is killed at
// random moments and restarted. Every retried document must complete its round 1 at Gini, reach
// Gini exactly once per round (Gini can be asked, so an interrupted upload is found by its round's
// tag, never uploaded twice), with each job attributed to its own document and round.
func TestKill9DuringRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test builds and kills a real ingest process; skipped with -short")
	}
	bin := buildIngest(t)
	t.Run("embedded nats-server", func(t *testing.T) { retryCrashRun(t, bin, startNATS(t), "retry", 30, 6) })
	// Fewer on Debian's NATS 2.9, to keep the whole test near a minute.
	t.Run("external NATS 2.9", func(t *testing.T) {
		url := eventstest.ExternalURL(t)
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		retryCrashRun(t, bin, url, eventstest.Namespace(t, nc), 16, 4)
	})
}

func retryCrashRun(t *testing.T, bin, natsURL, namespace string, n, retryKills int) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))

	sim := ginisim.New(ginisim.Config{ClientID: "gini-id", ClientSecret: "gini-secret", PendingPolls: 1, FailFirstUploads: true})
	srv := httptest.NewServer(slowUploads(sim, "/documents"))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	httpAddr := freeAddr(t)
	cfg := fmt.Sprintf(`data_dir: %s
log: {level: info, format: json}
heartbeat_ttl: %s
nats: {url: %s, namespace: %s}
http: {listen: %s, api_keys: [%s]}
vendors:
  gini:
    sandbox: false
    base_url: %s
    client_id: gini-id
    client_secret: gini-secret
    user_identifier: crash-test
    poll: {initial: 200ms, max: 1s}
  laigo: {enabled: false}
  allspark: {enabled: false}
  documine: {enabled: false}
  cradl: {enabled: false}
routes: [{name: all, vendors: [gini]}]
dispatch: {retry_initial: 200ms, retry_max: 2s}
`, dir, heartbeatTTL, natsURL, namespace, httpAddr, apiKey, srv.URL)
	names := events.Names{Namespace: namespace}
	proc := startIngest(t, bin, dir, httpAddr, cfg, "ingest.log")

	// Round 0: every document is uploaded and fails at Gini.
	docs := makeDocuments(n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range docs {
		wg.Go(func() {
			if r := upload(t, httpAddr, docs[i]); len(r.ids) == 1 {
				ids[i] = r.ids[0]
			}
		})
	}
	wg.Wait()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	waitFor(t, time.Minute, "every document to fail its first round at Gini", func() bool {
		return kindEvents(js, names, events.Failed) >= n
	})

	// Round 1: clients retry, each with its key, while ingest is killed and restarted.
	retryStart := time.Now()
	answers := make([]retryResult, n)
	work := make(chan int)
	for range 6 {
		wg.Go(func() {
			for i := range work {
				answers[i] = retryDocument(t, httpAddr, ids[i], fmt.Sprintf("retry-%d", i))
				time.Sleep(time.Duration(rand.IntN(1200)) * time.Millisecond) // spread the retries over the kills
			}
		})
	}
	retriesDone := make(chan struct{})
	go func() {
		for i := range ids {
			work <- i
		}
		close(work)
		wg.Wait()
		close(retriesDone)
	}()
	for k := range retryKills {
		time.Sleep(time.Duration(400+rng.IntN(1200)) * time.Millisecond) // the moments are the point here
		proc.kill()
		t.Logf("kill %d at %s", k+1, time.Now().Format("15:04:05.000"))
		proc.start()
	}
	select {
	case <-retriesDone:
	case <-time.After(2 * time.Minute):
		t.Fatal("retries were not all accepted within 2 minutes of retrying")
	}
	waitFor(t, 2*time.Minute, "every retried document to complete at Gini", func() bool {
		return kindEvents(js, names, events.Completed) >= n
	})
	settled := time.Since(retryStart)

	// Count.
	byID := map[string]int{}
	for i, id := range ids {
		if id == "" {
			t.Fatalf("document %d has no id", i)
		}
		byID[id] = i
		if a := answers[i]; a.status != http.StatusAccepted {
			t.Errorf("retry of document %d: last answer %d %s", i, a.status, a.body)
		}
	}
	evs := readEvents(t, js, names)
	counts := map[string]int{} // event id → how often the stream holds it
	completedRef := map[string]string{}
	for _, ev := range evs {
		counts[ev.ID]++
		i, ours := byID[ev.Subject]
		if !ours {
			t.Errorf("event %s about an unknown document", ev.ID)
			continue
		}
		if ev.Kind() == events.Completed {
			var cd events.CompletedData
			if err := ev.DecodeData(&cd); err != nil {
				t.Fatal(err)
			}
			if cd.Round != 1 || !strings.Contains(string(ev.Data), docs[i].invoice) {
				t.Errorf("document %d completed in round %d, or with another document's result: %.300s", i, cd.Round, ev.Data)
			}
			completedRef[ev.Subject] = cd.VendorRef
		}
	}
	for i, id := range ids {
		for _, want := range []string{id + ".received", id + ".submitted.gini", id + ".failed.gini",
			id + ".retried.gini.r1", id + ".submitted.gini.r1", id + ".completed.gini.r1"} {
			if counts[want] != 1 {
				t.Errorf("document %d: event %s %d times, want once", i, want, counts[want])
			}
		}
		for _, never := range []string{id + ".retried.gini.r2", id + ".completed.gini", id + ".failed.gini.r1"} {
			if counts[never] != 0 {
				t.Errorf("document %d: event %s is in the stream", i, never)
			}
		}
	}
	// Gini's ledger: each document once per round, each job named with its own round's tag, and
	// the job a completion names is its document's round-1 upload.
	perDoc := map[int][]string{} // document → uploads' file names
	for _, u := range sim.Ledger.All() {
		i := -1
		for j, d := range docs {
			if d.sha == u.SHA256 {
				i = j
			}
		}
		if i < 0 {
			t.Errorf("Gini holds an upload of bytes no client sent: %+v", u)
			continue
		}
		perDoc[i] = append(perDoc[i], u.Filename)
		_, round0 := vendors.TaggedAttempt(ids[i], u.Filename)
		_, round1 := vendors.TaggedAttempt(ids[i]+".r1", u.Filename)
		if round0 == round1 {
			t.Errorf("document %d's upload %q carries the tag of neither or both rounds", i, u.Filename)
		}
		if round1 && completedRef[ids[i]] != u.Ref {
			t.Errorf("document %d completed with job %s, its round-1 upload is %s", i, completedRef[ids[i]], u.Ref)
		}
	}
	for i := range docs {
		if len(perDoc[i]) != 2 {
			t.Errorf("document %d reached Gini %d times, want once per round: %v", i, len(perDoc[i]), perDoc[i])
		}
	}
	seen := proc.checkLog()
	retries := 0
	for _, a := range answers {
		retries += a.attempts - 1
	}
	t.Logf("RETRY CRASH TEST: %d documents failed and retried (%d client repeats), %d kills, all complete %s after the first retry; "+
		"Gini uploads %d (want %d); reconciled by tag %d, found absent and resubmitted %d",
		n, retries, retryKills, settled.Round(time.Millisecond), len(sim.Ledger.All()), 2*n,
		seen["found at the vendor by its tag"], seen["did not reach the vendor"])
}

type retryResult struct {
	status   int
	body     string
	attempts int
}

// retryDocument asks for a retry with an Idempotency-Key until it is accepted, as a client does:
// connection errors and 503 are repeated with the same key.
func retryDocument(t *testing.T, addr, id, key string) retryResult {
	var r retryResult
	hc := &http.Client{Timeout: 30 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		r.attempts++
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/documents/"+id+"/retry?vendor=gini", nil)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Idempotency-Key", key)
		res, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			r.status, r.body = res.StatusCode, string(b)
		}
		switch {
		case err == nil && r.status == http.StatusAccepted:
			return r
		case err != nil, r.status == http.StatusServiceUnavailable, r.status >= 500:
			time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond) // a client's retry pause
		default:
			return r // a refusal: reported by the caller
		}
	}
	return r
}

// kindEvents counts the messages on the subjects of one kind.
func kindEvents(js jetstream.JetStream, names events.Names, k events.Kind) int {
	return subjectCount(js, names, names.KindSubjects(k))
}

func subjectCount(js jetstream.JetStream, names events.Names, filter string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, names.Stream())
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}
