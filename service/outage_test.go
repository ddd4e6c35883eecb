package service_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/events/eventstest"
)

// natsServer is a NATS server the test can stop and start again on the same port and store, as
// an operator restarting NATS would.
type natsServer struct {
	t    *testing.T
	port int
	dir  string
	srv  *server.Server
}

func newNATSServer(t *testing.T) *natsServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	n := &natsServer{t: t, port: port, dir: t.TempDir()}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

func (n *natsServer) start() {
	n.t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir,
		JetStreamMaxStore: 1 << 30, JetStreamMaxMemory: 64 << 20, NoSigs: true, NoLog: true})
	if err != nil {
		n.t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		n.t.Fatal("NATS did not start")
	}
	n.srv = srv
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

type upload struct {
	status   int
	retry    string
	detail   string
	ids      []string
	replayed bool
}

func postDocument(t *testing.T, addr, idemKey string, body []byte) upload {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/documents?filename=scan.pdf", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/pdf")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	cl := &http.Client{Timeout: 60 * time.Second}
	res, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	u := upload{status: res.StatusCode, retry: res.Header.Get("Retry-After"), replayed: res.Header.Get("Idempotent-Replayed") == "true"}
	var ok httpdrop.Response
	if res.StatusCode == http.StatusAccepted && json.Unmarshal(b, &ok) == nil {
		for _, d := range ok.Documents {
			u.ids = append(u.ids, d.ID)
		}
	}
	var p struct {
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(b, &p)
	u.detail = p.Detail
	return u
}

// While NATS is away every upload, with an Idempotency-Key or without, is answered 503 with
// Retry-After and a sentence about the event store — never 500 — and once NATS is back every one
// of them succeeds, the keyed ones with one set of ids each.
func TestNATSOutageAnswers503ThenRecovers(t *testing.T) {
	n := newNATSServer(t)
	cfg := testConfig(t)
	cfg.NATS.URL = n.url()
	s := start(t, cfg)
	addr := s.HTTPAddr()
	doc := func(i int) []byte { return []byte(fmt.Sprintf("%%PDF-1.7\ndocument %d\n%%%%EOF\n", i)) }
	if u := postDocument(t, addr, "before", doc(0)); u.status != http.StatusAccepted {
		t.Fatalf("before the outage: %+v", u)
	}

	n.stop()
	keys := []string{"k-1", "k-2", "", ""}
	for i, k := range keys {
		u := postDocument(t, addr, k, doc(i+1))
		if u.status != http.StatusServiceUnavailable || u.retry == "" || !strings.Contains(u.detail, "event store") {
			t.Fatalf("upload %d (key %q) during the outage: %+v; want 503 with Retry-After naming the event store", i, k, u)
		}
	}

	n.start()
	ids := map[string][]string{}
	for i, k := range keys {
		var u upload
		eventstest.WaitFor(t, 60*time.Second, fmt.Sprintf("upload %d to succeed after NATS is back", i), func() bool {
			u = postDocument(t, addr, k, doc(i+1))
			if u.status != http.StatusAccepted && u.status != http.StatusServiceUnavailable && u.status != http.StatusConflict {
				t.Fatalf("upload %d after the outage: %+v", i, u)
			}
			return u.status == http.StatusAccepted
		})
		ids[k] = u.ids
	}
	for _, k := range keys[:2] {
		again := postDocument(t, addr, k, doc(map[string]int{"k-1": 1, "k-2": 2}[k]))
		if again.status != http.StatusAccepted || !again.replayed || again.ids[0] != ids[k][0] {
			t.Fatalf("repeat of %s: %+v, first answer %v", k, again, ids[k])
		}
	}
}
