// Package eventstest starts real NATS servers for tests: an embedded nats-server with JetStream in a
// temporary directory, or the external server the development machines and CI run.
package eventstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/broker"
	"github.com/ingest-dev/ingest/events"
)

// EmbeddedBroker starts an embedded server with JetStream under dir on a free port.
func EmbeddedBroker(t testing.TB, dir string) *broker.Broker {
	t.Helper()
	b, err := broker.Open(context.Background(), broker.Config{
		Embedded: broker.Embedded{Listen: "127.0.0.1:0", StoreDir: dir, MaxStore: 4 << 30, MaxMemory: 64 << 20},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	return b
}

// Embedded returns a connection to a fresh embedded server.
func Embedded(t testing.TB) *nats.Conn {
	t.Helper()
	return EmbeddedBroker(t, t.TempDir()).Conn()
}

// ExternalURL returns the external server's URL: $INGEST_TEST_NATS_URL, else 127.0.0.1:4222. When
// nothing answers there, the test is skipped with a loud message, or fails when
// $INGEST_REQUIRE_EXTERNAL_NATS is set (as CI does, where the server must be present).
func ExternalURL(t testing.TB) string {
	t.Helper()
	raw := os.Getenv("INGEST_TEST_NATS_URL")
	if raw == "" {
		raw = "nats://127.0.0.1:4222"
	}
	addr := raw
	if u, err := url.Parse(strings.Split(raw, ",")[0]); err == nil && u.Host != "" {
		addr = u.Host
	}
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		msg := "\n\n!!! SKIPPING: no external NATS server at " + raw + " (" + err.Error() + ").\n" +
			"!!! This test proves ingest against a real NATS 2.9 server; CI runs it. Start one with:\n" +
			"!!!   nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/nats-js\n\n"
		if os.Getenv("INGEST_REQUIRE_EXTERNAL_NATS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c.Close()
	return raw
}

// External connects to the external server (see ExternalURL).
func External(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ExternalURL(t), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to external NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Namespace returns a namespace no other test uses, so that tests sharing the external server do
// not see each other's stream and buckets. On the external server, they are deleted at cleanup.
func Namespace(t testing.TB, nc *nats.Conn) string {
	t.Helper()
	var b [5]byte
	_, _ = rand.Read(b[:])
	ns := "t" + hex.EncodeToString(b[:])
	t.Cleanup(func() { Purge(nc, ns) })
	return ns
}

// Purge deletes everything a namespace provisioned: its stream and every bucket named after it
// (documents, state, and those later packages add: submissions, refs, leases, checkpoints…).
func Purge(nc *nats.Conn, namespace string) {
	if nc.IsClosed() {
		return
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := events.Names{Namespace: namespace}
	_ = js.DeleteStream(ctx, names.Stream())
	prefix := namespace + "-"
	kvs := js.KeyValueStoreNames(ctx)
	for name := range kvs.Name() {
		if strings.HasPrefix(name, prefix) {
			_ = js.DeleteKeyValue(ctx, name)
		}
	}
	objs := js.ObjectStoreNames(ctx)
	for name := range objs.Name() {
		if strings.HasPrefix(name, prefix) {
			_ = js.DeleteObjectStore(ctx, name)
		}
	}
}

// Bus provisions a backbone in a fresh namespace on nc.
func Bus(t testing.TB, nc *nats.Conn) *events.Bus {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := events.Open(ctx, js, events.Config{Namespace: Namespace(t, nc)})
	if err != nil {
		t.Fatalf("provision backbone: %v", err)
	}
	return b
}

// WaitFor polls cond until it holds or the deadline passes: tests wait on conditions, never sleep.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Run runs a component's Run(ctx) in the background until the test ends, then stops it and waits
// for it to return.
func Run(t testing.TB, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// TestCluster is a JetStream cluster of embedded servers.
type TestCluster struct {
	t testing.TB
	// URLs are the nodes' client URLs, comma-separated as nats.url takes them.
	URLs    string
	Servers []*server.Server
	nodes   []clusterNode
	routes  []*url.URL
}

// clusterNode is what a node restarts with: its name, the ports it listened on and its store.
type clusterNode struct {
	name              string
	port, clusterPort int
	storeDir          string
}

func (c *TestCluster) options(n clusterNode, routes []*url.URL) *server.Options {
	return &server.Options{
		ServerName: n.name, Host: "127.0.0.1", Port: n.port,
		Cluster:   server.ClusterOpts{Name: "ingest-test", Host: "127.0.0.1", Port: n.clusterPort},
		Routes:    routes,
		JetStream: true, StoreDir: n.storeDir, JetStreamMaxStore: 1 << 30, JetStreamMaxMemory: 64 << 20,
		NoSigs: true, NoLog: true,
	}
}

func (c *TestCluster) start(n int, wait time.Duration) bool {
	c.Servers, c.nodes, c.routes = nil, nil, nil
	for i := range n {
		c.nodes = append(c.nodes, clusterNode{name: fmt.Sprintf("n%d", i+1), port: server.RANDOM_PORT, clusterPort: freePort(c.t), storeDir: c.t.TempDir()})
		c.routes = append(c.routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", c.nodes[i].clusterPort)})
	}
	for i := range c.nodes {
		srv, err := server.NewServer(c.options(c.nodes[i], c.routes))
		if err != nil {
			c.t.Fatal(err)
		}
		go srv.Start()
		c.Servers = append(c.Servers, srv)
	}
	for i, srv := range c.Servers {
		if !srv.ReadyForConnections(wait) {
			return false
		}
		c.nodes[i].port = srv.Addr().(*net.TCPAddr).Port // a restart listens where the clients were told
	}
	return true
}

func (c *TestCluster) shutdown() {
	for _, s := range c.Servers {
		s.Shutdown()
	}
	for _, s := range c.Servers {
		s.WaitForShutdown()
	}
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Name is node i's server name (what stream infos give as leader).
func (c *TestCluster) Name(i int) string { return c.nodes[i].name }

// Stop shuts node i down (as a node failure looks to the others).
func (c *TestCluster) Stop(i int) {
	c.Servers[i].Shutdown()
	c.Servers[i].WaitForShutdown()
}

// Restart starts node i again on its ports and store, with a route to every node.
func (c *TestCluster) Restart(i int) {
	c.t.Helper()
	srv, err := server.NewServer(c.options(c.nodes[i], c.routes))
	if err != nil {
		c.t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(60 * time.Second) {
		c.t.Fatalf("node %s did not come back", c.nodes[i].name)
	}
	c.Servers[i] = srv
}

// Cluster starts a JetStream cluster of n embedded servers on loopback, each with its own store.
// It returns once the cluster has a meta leader, so that streams can be created at once.
func Cluster(t testing.TB, n int) *TestCluster {
	t.Helper()
	c := &TestCluster{t: t}
	t.Cleanup(c.shutdown)
	// Route ports must be known before the nodes start (each names all of them), so they are
	// asked for and released first; another test package can take one before the node listens
	// (CI saw it), and the node then never becomes ready. So a start that does not come up in
	// time is retried on other ports. Client ports are the nodes' own choice.
	for attempt := 1; ; attempt++ {
		if c.start(n, 20*time.Second) {
			break
		}
		c.shutdown()
		if attempt == 3 {
			t.Fatal("a cluster node did not start, three times over (on fresh ports each time)")
		}
		t.Logf("a cluster node did not start (port taken?): starting the cluster again on other ports")
	}
	urls := make([]string, n)
	for i, srv := range c.Servers {
		urls[i] = "nats://" + srv.Addr().String()
	}
	c.URLs = strings.Join(urls, ",")
	nc, err := nats.Connect(c.URLs)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	WaitFor(t, 60*time.Second, "the cluster's JetStream meta leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
	return c
}
