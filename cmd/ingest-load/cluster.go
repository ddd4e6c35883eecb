package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// measureCluster runs two ingest instances on a three-node JetStream cluster (in this process,
// on loopback) with replicas 3: the HTTP drop's throughput over both, then how long uploads fail
// after the stream's leader node is killed.
func measureCluster(bin string, n, c int, size int64) error {
	nodes, urls, err := startCluster()
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range nodes {
			s.Shutdown()
		}
	}()
	extra := fmt.Sprintf("routes: []\nnats:\n  url: %s\n  stream: {replicas: 3}\n", urls)
	var svcs []*service
	for range 2 {
		s, err := startService(bin, extra)
		if err != nil {
			return err
		}
		defer s.stop()
		svcs = append(svcs, s)
	}
	fmt.Printf("two instances on a three-node cluster (replicas 3), documents of %d bytes, %d concurrent clients\n", size, c)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	for i := range 2 * c { // warm up
		if err := upload(client, svcs[i%2], newDocument(size), size); err != nil {
			return err
		}
	}
	var next sync.Mutex
	turn := 0
	pick := func() *service {
		next.Lock()
		defer next.Unlock()
		turn++
		return svcs[turn%2]
	}
	if err := run("HTTP drop, 2 instances, R3", n, c, func() error { return upload(client, pick(), newDocument(size), size) }); err != nil {
		return err
	}

	// Failover: uploads go on while the stream's leader node dies.
	nc, err := nats.Connect(urls)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	leader := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "INGEST")
		if err != nil {
			return ""
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			return ""
		}
		return info.Cluster.Leader
	}
	var mu sync.Mutex
	var ok []time.Time
	failures := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := upload(client, pick(), newDocument(size), size)
				mu.Lock()
				if err == nil {
					ok = append(ok, time.Now())
				} else {
					failures++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(100 * time.Millisecond) // a client's retry pause
				}
			}
		})
	}
	time.Sleep(3 * time.Second) // uploads under way before the kill
	l := leader()
	var killed time.Time
	for _, s := range nodes {
		if s.Name() == l {
			killed = time.Now()
			s.Shutdown()
		}
	}
	if killed.IsZero() {
		close(stop)
		wg.Wait()
		return fmt.Errorf("no stream leader found (%q)", l)
	}
	time.Sleep(15 * time.Second)
	close(stop)
	wg.Wait()
	var firstAfter time.Time
	longest, last := time.Duration(0), killed
	for _, t := range ok {
		if t.Before(killed) {
			continue
		}
		if firstAfter.IsZero() {
			firstAfter = t
		}
		longest = max(longest, t.Sub(last))
		last = t
	}
	fmt.Printf("stream leader %s killed: first 202 after %s, longest gap without a 202 %s, %d uploads refused (503) or failed meanwhile, new leader %s\n",
		l, firstAfter.Sub(killed).Round(time.Millisecond), longest.Round(time.Millisecond), failures, leader())
	return nil
}

func startCluster() ([]*server.Server, string, error) {
	free := func() (int, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port, nil
	}
	var routes []*url.URL
	var cports []int
	for range 3 {
		p, err := free()
		if err != nil {
			return nil, "", err
		}
		cports = append(cports, p)
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	var nodes []*server.Server
	var urls []string
	for i := range 3 {
		dir, err := os.MkdirTemp("", "ingest-load-node-")
		if err != nil {
			return nil, "", err
		}
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			Cluster: server.ClusterOpts{Name: "load", Host: "127.0.0.1", Port: cports[i]}, Routes: routes,
			JetStream: true, StoreDir: dir, JetStreamMaxStore: 8 << 30, JetStreamMaxMemory: 256 << 20, NoSigs: true, NoLog: true,
		})
		if err != nil {
			return nil, "", err
		}
		go srv.Start()
		nodes = append(nodes, srv)
	}
	for _, s := range nodes {
		if !s.ReadyForConnections(60 * time.Second) {
			return nodes, "", fmt.Errorf("node %s did not start", s.Name())
		}
		urls = append(urls, s.ClientURL())
	}
	return nodes, strings.Join(urls, ","), nil
}
