package crashtest

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/internal/testservers"
)

// nodes is a three-node NATS cluster the test can break: kill a node, bring it back.
type nodes interface {
	urls() string
	name(i int) string
	kill(t *testing.T, i int)
	restart(t *testing.T, i int)
}

// embeddedNodes are nats-server/v2 servers in the test process.
type embeddedNodes struct{ c *eventstest.TestCluster }

func (e embeddedNodes) urls() string                { return e.c.URLs }
func (e embeddedNodes) name(i int) string           { return e.c.Name(i) }
func (e embeddedNodes) kill(_ *testing.T, i int)    { e.c.Stop(i) }
func (e embeddedNodes) restart(t *testing.T, i int) { e.c.Restart(i) }

// scriptNodes are Debian's nats-server processes, run by scripts/nats-cluster.
type scriptNodes struct{ dir string }

func (s scriptNodes) urls() string {
	return "nats://127.0.0.1:4241,nats://127.0.0.1:4242,nats://127.0.0.1:4243"
}
func (s scriptNodes) name(i int) string { return fmt.Sprintf("n%d", i+1) }
func (s scriptNodes) run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("../scripts/nats-cluster", append(args, s.dir)...).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/nats-cluster %v: %v\n%s", args, err, out)
	}
}
func (s scriptNodes) kill(t *testing.T, i int)    { s.run(t, "kill", fmt.Sprint(i+1)) }
func (s scriptNodes) restart(t *testing.T, i int) { s.run(t, "restart", fmt.Sprint(i+1)) }

// Two ingest instances on a three-node cluster with replicas 3, taking uploads, mails and files
// while the stream's leader node dies and comes back, and then an instance is killed and comes
// back: nothing lost, nothing twice, and the survivor takes the dead one's mailbox and folder over.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("the failover test builds ingest and runs a NATS cluster; skipped with -short")
	}
	bin := buildIngest(t)
	t.Run("embedded nats-server cluster", func(t *testing.T) {
		failover(t, bin, embeddedNodes{eventstest.Cluster(t, 3)}, 500, false)
	})
	t.Run("Debian nats-server 2.9 cluster", func(t *testing.T) {
		testservers.Require(t, "/usr/sbin/nats-server", "three nats-server 2.9 processes", "nats-server")
		n := scriptNodes{dir: t.TempDir()}
		n.run(t, "start")
		t.Cleanup(func() { _ = exec.Command("../scripts/nats-cluster", "stop", n.dir).Run() })
		// NATS 2.9.10 now and then loses an acknowledged Key-Value write when the stream leader
		// node is killed (a state without an event its producer wrote; 1-2 documents of 340 in
		// one run of three or so): the test repairs those with events.Rebuild and says how many.
		failover(t, bin, n, 300, true)
	})
}

// lossyKV says the NATS under test may lose acknowledged state writes in a failover (2.9): the
// documents left behind are then counted and repaired with events.Rebuild rather than failed.
func failover(t *testing.T, bin string, cluster nodes, uploads int, lossyKV bool) {
	const (
		user, pass = "invoices", "mail-pass-1"
		mails      = 20
		files      = 20
	)
	mail := testservers.StartDovecot(t, testservers.DovecotOptions{User: user, Pass: pass})
	dav := testservers.StartRclone(t, t.TempDir(), "scanner", "dav-pass-1")
	v := startVendors(t)

	cfgFor := func(dir, addr string) string {
		host, port, _ := strings.Cut(mail.Addr(), ":")
		return fmt.Sprintf(`data_dir: %s
log: {level: info, format: json}
heartbeat_ttl: %s
nats:
  url: %s
  stream: {replicas: 3}
http:
  listen: %s
  api_keys: [%s]
sources:
  imap:
    - {name: inbox, host: %s, port: %s, tls: none, username: %s, password: %s}
  webdav:
    - {name: scans, url: "%s", username: scanner, password: dav-pass-1, poll_interval: 1s, min_age: 1s}
vendors:
  gini: {sandbox: false, base_url: %s, client_id: gini-id, client_secret: gini-secret, user_identifier: cluster, poll: {initial: 200ms, max: 1s}}
  allspark: {sandbox: false, base_url: %s%s, api_key: allspark-key, poll: {initial: 200ms, max: 1s}}
  laigo: {enabled: false}
  documine: {enabled: false}
  cradl: {enabled: false}
routes: [{name: all, vendors: [gini, allspark]}]
dispatch: {retry_initial: 200ms, retry_max: 2s}
`, dir, heartbeatTTL, cluster.urls(), addr, apiKey, host, port, user, pass, dav.URL,
			v.giniURL, v.allsparkURL, "/api/v1")
	}
	var procs []*process
	for _, name := range []string{"a", "b"} {
		dir := t.TempDir()
		addr := freeAddr(t)
		procs = append(procs, startIngest(t, bin, dir, addr, cfgFor(dir, addr), "ingest-"+name+".log"))
	}
	addrs := []string{procs[0].addr, procs[1].addr}

	nc, err := nats.Connect(cluster.urls(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	names := events.Names{Namespace: "ingest"}

	// The load: uploads spread over both instances, mails and files arriving. When the test
	// fails half-way, stop ends it, so that nothing is left blocked.
	docs := makeDocuments(uploads)
	results := make([]clientResult, len(docs))
	work := make(chan int)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })
	pause := func(d time.Duration) bool {
		select {
		case <-stop:
			return false
		case <-time.After(d): // pacing the load, not synchronisation
			return true
		}
	}
	var answered atomic.Int32 // results are read once every one is written
	for c := range 6 {
		wg.Go(func() {
			for i := range work {
				results[i] = uploadTo(t, []string{addrs[(i+c)%2], addrs[(i+c+1)%2]}, docs[i])
				answered.Add(1)
			}
		})
	}
	mailDocs := makeDocuments(uploads + mails)[uploads:]
	fileDocs := makeDocuments(uploads + mails + files)[uploads+mails:]
	wg.Go(func() {
		defer close(work)
		for i := range docs {
			select {
			case work <- i:
			case <-stop:
				return
			}
			if !pause(time.Duration(rand.IntN(60)) * time.Millisecond) { // spread over the failures
				return
			}
		}
	})
	loaded := make(chan struct{}, 2)
	wg.Go(func() {
		defer func() { loaded <- struct{}{} }()
		for i, d := range mailDocs {
			mail.Append(t, "INBOX", nil, mailWith(i, d.body))
			if !pause(time.Duration(300+rand.IntN(700)) * time.Millisecond) {
				return
			}
		}
	})
	wg.Go(func() {
		defer func() { loaded <- struct{}{} }()
		for i, d := range fileDocs {
			dav.Put(fmt.Sprintf("scan-%03d.pdf", i), strings.NewReader(string(d.body)))
			if !pause(time.Duration(300+rand.IntN(700)) * time.Millisecond) {
				return
			}
		}
	})

	// The failures: the stream leader node, then the instance holding a source's lease.
	time.Sleep(4 * time.Second) // let the load run into it; the moment is the point, not a sync
	leader := streamLeader(t, js, names)
	for i := range 3 {
		if cluster.name(i) == leader {
			nodeKilled := time.Now()
			cluster.kill(t, i)
			t.Logf("killed the stream leader %s", leader)
			waitFor(t, 60*time.Second, "a new stream leader", func() bool {
				l := streamLeader(t, js, names)
				return l != "" && l != leader
			})
			t.Logf("FAILOVER: a new stream leader %s after %s", streamLeader(t, js, names), time.Since(nodeKilled).Round(time.Millisecond))
			time.Sleep(3 * time.Second)
			cluster.restart(t, i)
		}
	}
	holder := leaseHolder(t, procs)
	killedAt := time.Now()
	procs[holder].kill()
	t.Logf("killed instance %d, which watched the sources", holder)
	survivor := procs[1-holder]
	took := waitTakeover(t, survivor, killedAt)
	t.Logf("FAILOVER: the survivor took the mailbox and the folder over %s after the kill", took.Round(time.Millisecond))
	if limit := 15*time.Second + 5*time.Second; took > limit { // lease TTL + 5 s
		t.Errorf("takeover took %s, more than the lease TTL + 5 s", took)
	}
	time.Sleep(2 * time.Second)
	procs[holder].start()

	<-loaded
	<-loaded
	waitFor(t, 3*time.Minute, "every upload to be answered", func() bool { return int(answered.Load()) == len(docs) })
	waitFor(t, 4*time.Minute, "every document to complete at both vendors", func() bool {
		return completedEvents(t, js, names) >= (uploads+mails+files)*2
	})
	evs := readEvents(t, js, names)

	// Count.
	received := map[string]int{}   // document id → received events
	bySHA := map[string][]string{} // content → document ids
	completedBy := map[string]map[string]bool{}
	for _, ev := range evs {
		switch ev.Kind() {
		case events.Received:
			received[ev.Subject]++
			var rd events.ReceivedData
			_ = ev.DecodeData(&rd)
			if received[ev.Subject] == 1 {
				bySHA[rd.SHA256] = append(bySHA[rd.SHA256], ev.Subject)
			}
		case events.Completed:
			var cd events.CompletedData
			_ = ev.DecodeData(&cd)
			if completedBy[ev.Subject] == nil {
				completedBy[ev.Subject] = map[string]bool{}
			}
			completedBy[ev.Subject][cd.Vendor] = true
		case events.Failed:
			t.Errorf("failed event: %s", ev.Data)
		}
	}
	dupEvents := 0
	for id, n := range received {
		if n > 1 {
			dupEvents++
			t.Errorf("document %s has %d received events", id, n)
		}
	}
	lost, twice := 0, 0
	for i, d := range append(append(append([]document{}, docs...), mailDocs...), fileDocs...) {
		ids := bySHA[d.sha]
		switch {
		case len(ids) == 0:
			lost++
			t.Errorf("document %d never became a document", i)
		case len(ids) > 1:
			twice++
			t.Errorf("document %d became %d documents", i, len(ids))
		default:
			if c := completedBy[ids[0]]; !c["gini"] || !c["allspark"] {
				t.Errorf("document %d (%s) is not completed at both vendors: %v", i, ids[0], c)
			}
		}
		if n := v.gini.Ledger.Count(d.sha); n != 1 {
			t.Errorf("document %d reached Gini %d times", i, n)
		}
		if n := v.allspark.Ledger.Count(d.sha); n != 1 {
			t.Errorf("document %d reached Allspark %d times", i, n)
		}
	}
	for i, r := range results {
		if len(r.ids) != 1 || len(bySHA[docs[i].sha]) != 1 || bySHA[docs[i].sha][0] != r.ids[0] {
			t.Errorf("upload %d: the client was told %v, the stream has %v", i, r.ids, bySHA[docs[i].sha])
		}
	}
	// The document states converge to the events, whatever the failover did to the projection.
	kv, err := js.KeyValue(context.Background(), names.StateBucket())
	if err != nil {
		t.Fatal(err)
	}
	behind := func() []string {
		var out []string
		for id := range completedBy {
			e, err := kv.Get(context.Background(), id)
			var doc events.Document
			if err != nil || json.Unmarshal(e.Value(), &doc) != nil || doc.Status != events.StatusCompleted {
				out = append(out, id)
			}
		}
		return out
	}
	converged := time.Now().Add(time.Minute)
	for len(behind()) > 0 && time.Now().Before(converged) {
		time.Sleep(500 * time.Millisecond)
	}
	stale := behind()
	for i, id := range stale {
		if i == 5 {
			break
		}
		e, err := kv.Get(context.Background(), id)
		var doc events.Document
		if err == nil {
			_ = json.Unmarshal(e.Value(), &doc)
		}
		var hist []string
		for _, h := range doc.History {
			hist = append(hist, h.EventID)
		}
		var inStream []string
		for _, ev := range evs {
			if ev.Subject == id {
				inStream = append(inStream, ev.ID)
			}
		}
		report := t.Errorf
		if lossyKV {
			report = t.Logf
		}
		report("document %s: state %q (err %v) with history %v; the stream has %v", id, doc.Status, err, hist, inStream)
	}
	if len(stale) > 0 && lossyKV {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		r, err := events.Rebuild(ctx, js, names)
		cancel()
		if err != nil {
			t.Fatalf("rebuild the state: %v", err)
		}
		if r.Applied < len(stale) {
			t.Errorf("rebuild applied %d events for %d documents behind", r.Applied, len(stale))
		}
		if still := behind(); len(still) > 0 {
			t.Errorf("after the rebuild %d documents are still behind their events: %v", len(still), still)
		}
		t.Logf("NATS lost state writes of %d documents in the failover; events.Rebuild replayed %d events and applied the %d missing",
			len(stale), r.Events, r.Applied)
	}
	for i, p := range procs {
		seen := p.checkLog()
		t.Logf("instance %d: state writes left to the projector %d, projector retries %d", i,
			seen["document state not written yet"], seen["state projector could not apply"])
	}
	t.Logf("FAILOVER TEST: %d uploads + %d mails + %d files over 2 instances, stream leader node killed and restarted, "+
		"an instance killed and restarted: lost %d, duplicated documents %d, duplicated received events %d, "+
		"vendor uploads %d at Gini and %d at Allspark for %d documents, takeover %s",
		uploads, mails, files, lost, twice, dupEvents, len(v.gini.Ledger.All()), len(v.allspark.Ledger.All()),
		uploads+mails+files, took.Round(time.Millisecond))
}

// streamLeader is the server leading the event stream, "" while there is none.
func streamLeader(t *testing.T, js jetstream.JetStream, names events.Names) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, names.Stream())
	if err != nil {
		return ""
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

// leaseHolder is the instance that watches a source (the one whose log says it took a lease).
func leaseHolder(t *testing.T, procs []*process) int {
	t.Helper()
	for i, p := range procs {
		if len(leasesTaken(t, p, time.Time{})) > 0 {
			return i
		}
	}
	t.Fatal("no instance took a source's lease")
	return 0
}

// leasesTaken lists the leases p's log says it acquired after since.
func leasesTaken(t *testing.T, p *process, since time.Time) []string {
	f, err := os.Open(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Time  time.Time `json:"time"`
			Msg   string    `json:"msg"`
			Lease string    `json:"lease"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && strings.HasPrefix(line.Msg, "lease acquired") && line.Time.After(since) {
			out = append(out, line.Lease)
		}
	}
	return out
}

// waitTakeover waits until survivor holds both sources' leases taken after since, and says how
// long that took.
func waitTakeover(t *testing.T, survivor *process, since time.Time) time.Duration {
	t.Helper()
	waitFor(t, 60*time.Second, "the survivor to take the sources over", func() bool {
		got := strings.Join(leasesTaken(t, survivor, since), " ")
		held := strings.Join(leasesTaken(t, survivor, time.Time{}), " ")
		return (strings.Contains(got, "imap.inbox") || strings.Contains(held, "imap.inbox")) &&
			(strings.Contains(got, "webdav.scans") || strings.Contains(held, "webdav.scans"))
	})
	return time.Since(since)
}

// mailWith is a mail carrying body as its PDF attachment.
func mailWith(i int, body []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(body)
	return []byte(fmt.Sprintf("From: scanner@example.com\r\nTo: invoices@example.com\r\nSubject: scan %d\r\n"+
		"Message-ID: <scan-%d@crashtest>\r\nDate: %s\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n"+
		"--b\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Disposition: attachment; filename=\"scan.pdf\"\r\n"+
		"Content-Transfer-Encoding: base64\r\n\r\n%s\r\n--b--\r\n", i, i, time.Now().Format(time.RFC1123Z), enc))
}
