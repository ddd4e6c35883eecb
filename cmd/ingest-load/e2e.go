package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// measureE2E uploads n documents to the given vendors and waits for every completed event, timing
// each document from the start of its upload to the last of its completions as a subscriber sees it.
func measureE2E(s *service, n, c int, size int64, vendorList string) error {
	want := len(strings.Split(vendorList, ","))
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	done := map[string][]time.Time{} // doc id → arrival of each completion
	var failed atomic.Int64
	followErr := make(chan error, 1)
	following := make(chan struct{})
	go func() {
		cfg := events.FollowConfig{Stream: "INGEST", Subject: "ingest.document.>", Ready: func() { close(following) }}
		followErr <- events.Follow(ctx, js, cfg, func(m jetstream.Msg) {
			at := time.Now()
			ev, err := events.Decode(m.Data())
			if err != nil {
				return
			}
			switch ev.Kind() {
			case events.Completed:
				mu.Lock()
				done[ev.Subject] = append(done[ev.Subject], at)
				mu.Unlock()
			case events.Failed:
				failed.Add(1)
			}
		})
	}()
	select { // completions of the first uploads must not be missed
	case <-following:
	case err := <-followErr:
		return fmt.Errorf("following the stream: %w", err)
	}

	fmt.Printf("documents of %d bytes to %s, %d concurrent clients, simulators answering at once\n", size, vendorList, c)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	starts := make([]time.Time, n)
	ids := make([]string, n)
	cost, err := s.begin()
	if err != nil {
		return err
	}
	begin := time.Now()
	err = parallel(n, c, func(i int) error {
		starts[i] = time.Now()
		id, err := uploadTo(client, s, newDocument(size), size, vendorList)
		ids[i] = id
		return err
	})
	if err != nil {
		return err
	}
	uploaded := time.Since(begin)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		mu.Lock()
		complete := 0
		for _, id := range ids {
			if len(done[id]) >= want {
				complete++
			}
		}
		mu.Unlock()
		if complete == n {
			break
		}
		if f := failed.Load(); f > 0 {
			return fmt.Errorf("%d failed events", f)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d documents completed within 5 minutes", complete, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	total := time.Since(begin)
	if err := cost.end(n); err != nil {
		return err
	}
	lat := make([]time.Duration, n)
	mu.Lock()
	for i, id := range ids {
		lat[i] = slices.MaxFunc(done[id], time.Time.Compare).Sub(starts[i])
	}
	mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(n-1, int(float64(n)*p))].Round(100 * time.Microsecond) }
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	fmt.Printf("uploads took %s; all %d×%d completions in %s: %.1f documents/s, %.1f completions/s\n",
		uploaded.Round(time.Millisecond), n, want, total.Round(time.Millisecond), float64(n)/total.Seconds(), float64(n*want)/total.Seconds())
	fmt.Printf("upload → last completed event: p50 %s  p99 %s  max %s  mean %s\n", pct(0.5), pct(0.99), lat[n-1].Round(time.Millisecond), (sum / time.Duration(n)).Round(100*time.Microsecond))

	// What the vendors (simulators, over loopback HTTP) took, from the service's own metrics:
	// the rest of the latency is the pipeline's.
	calls, err := vendorCallSeconds(s.httpURL + "/metrics")
	if err != nil {
		return err
	}
	perDoc := 0.0
	for _, op := range []string{"submit", "check", "result"} {
		v := calls[op]
		fmt.Printf("vendor %-6s calls: %6d, mean %.2f ms\n", op, int(v[1]), 1000*v[0]/max(v[1], 1))
		perDoc += v[0] / float64(n*want)
	}
	fmt.Printf("vendor time per document and vendor (submit+checks+result): %.2f ms; the pipeline's share of the mean latency: %.2f ms\n",
		perDoc*1000, float64(sum/time.Duration(n))/1e6-perDoc*1000)
	cancel()
	<-followErr
	return nil
}

// vendorCallSeconds sums ingest_vendor_call_seconds by op: [sum, count].
func vendorCallSeconds(url string) (map[string][2]float64, error) {
	res, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	out := map[string][2]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, suffix := range []string{"_sum", "_count"} {
			prefix := "ingest_vendor_call_seconds" + suffix + "{"
			if !strings.HasPrefix(line, prefix) {
				continue
			}
			labels, val, _ := strings.Cut(line[len(prefix):], "} ")
			_, op, _ := strings.Cut(labels, `op="`)
			op, _, _ = strings.Cut(op, `"`)
			f, _ := strconv.ParseFloat(val, 64)
			v := out[op]
			if suffix == "_sum" {
				v[0] += f
			} else {
				v[1] += f
			}
			out[op] = v
		}
	}
	return out, sc.Err()
}
