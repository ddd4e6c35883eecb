package service_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events/eventstest"
)

// On a three-node cluster with replicas: 3, everything the service provisions — the stream, the
// object store, every Key-Value bucket (state, submissions, refs, idempotency, instances, leases,
// IMAP checkpoints, WebDAV memory, callback nonces) and every durable consumer — has three
// replicas: nothing that vouches for exactly-once sits on one node.
func TestEverythingHasTheConfiguredReplicas(t *testing.T) {
	cluster := eventstest.Cluster(t, 3)
	urls := cluster.URLs
	// A bucket an earlier version made with one replica is brought to three.
	pre, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	prejs, _ := jetstream.New(pre)
	if _, err := prejs.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "ingest-refs", Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	pre.Close()
	cfg := testConfig(t)
	cfg.NATS.URL = urls
	cfg.NATS.Stream.Replicas = 3
	cfg.Routes = []config.Route{{Name: "default", Vendors: []string{"gini"}}}
	vendorsYAML(t, &cfg, "  allspark: {callback_token: cluster-test-callback-token-0123}\n")
	// Sources whose servers are not there: their buckets are provisioned all the same.
	cfg.Sources.IMAP = []config.IMAPSource{testIMAPSource()}
	cfg.Sources.WebDAV = []config.WebDAVSource{testWebDAVSource()}
	s := start(t, cfg)
	endToEnd(t, s) // a document goes through, so that nothing is provisioned lazily unseen

	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var streams []string
	lister := js.ListStreams(ctx)
	for info := range lister.Info() {
		streams = append(streams, info.Config.Name)
		if info.Config.Replicas != 3 {
			t.Errorf("stream %s has %d replicas", info.Config.Name, info.Config.Replicas)
		}
		for ci := range mustStream(t, js, info.Config.Name).ListConsumers(ctx).Info() {
			if ci.Config.Durable != "" && ci.Config.Replicas != 3 {
				t.Errorf("consumer %s on %s has %d replicas", ci.Name, info.Config.Name, ci.Config.Replicas)
			}
		}
	}
	if err := lister.Err(); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(streams, " ")
	for _, want := range []string{"INGEST", "OBJ_ingest-documents", "KV_ingest-state", "KV_ingest-submissions", "KV_ingest-refs",
		"KV_ingest-idempotency", "KV_ingest-instances", "KV_ingest-leases", "KV_ingest-imap-checkpoints", "KV_ingest-webdav-seen",
		"KV_ingest-callback-nonces"} {
		if !strings.Contains(" "+all+" ", " "+want+" ") {
			t.Errorf("no stream %s among %s", want, all)
		}
	}
	consumers := map[string]bool{}
	for ci := range mustStream(t, js, "INGEST").ListConsumers(ctx).Info() {
		consumers[ci.Config.Durable] = true
	}
	for _, want := range []string{"ingest-state", "ingest-dispatch", "ingest-poll", "ingest-callbacks"} {
		if !consumers[want] {
			t.Errorf("no durable consumer %s (have %v)", want, consumers)
		}
	}

	// Without a quorum the stream has no leader: /readyz says so.
	nc.Close()
	cluster.Stop(1)
	cluster.Stop(2)
	var body []byte
	// (While the client moves from a stopped node to the one left, /readyz says it is
	// reconnecting; then it must say why it is still not ready.)
	eventstest.WaitFor(t, 60*time.Second, "/readyz to report the lost quorum", func() bool {
		var res *http.Response
		res, body = get(t, s.HTTPAddr(), "/readyz")
		return res.StatusCode == http.StatusServiceUnavailable &&
			(strings.Contains(string(body), "quorum") || strings.Contains(string(body), "no leader"))
	})
}

func mustStream(t *testing.T, js jetstream.JetStream, name string) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testIMAPSource() config.IMAPSource {
	m := config.DefaultIMAPSource()
	m.Name, m.Host, m.Port, m.TLS, m.Username, m.Password = "inbox", "127.0.0.1", 1, "none", "u", "p"
	return m
}

func testWebDAVSource() config.WebDAVSource {
	f := config.DefaultWebDAVSource()
	f.Name, f.URL = "scans", "http://127.0.0.1:1/dav/"
	return f
}
