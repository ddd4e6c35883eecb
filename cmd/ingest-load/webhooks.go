package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// hookSink is an instant webhook receiver: 204 at once, and for each delivery the time from the
// event (its CloudEvents time) to its arrival.
type hookSink struct {
	srv   *http.Server
	url   string
	count atomic.Int64
	mu    sync.Mutex
	lags  []time.Duration
	last  time.Time
}

func newHookSink() (*hookSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hookSink{url: "http://" + ln.Addr().String() + "/hook"}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		now := time.Now()
		var ev struct {
			Time time.Time `json:"time"`
		}
		_ = json.Unmarshal(body, &ev)
		if r.Header.Get("webhook-signature") == "" || r.Header.Get("webhook-id") == "" {
			http.Error(w, "unsigned", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.lags = append(h.lags, now.Sub(ev.Time))
		h.last = now
		h.mu.Unlock()
		h.count.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})}
	go h.srv.Serve(ln)
	return h, nil
}

func (h *hookSink) reset() {
	h.mu.Lock()
	h.lags = h.lags[:0]
	h.mu.Unlock()
	h.count.Store(0)
}

func (h *hookSink) wait(n int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	for h.count.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d deliveries arrived within %s", h.count.Load(), n, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func (h *hookSink) percentiles() (p50, p99, worst time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := slices.Clone(h.lags)
	slices.Sort(l)
	pct := func(p float64) time.Duration { return l[min(len(l)-1, int(float64(len(l))*p))] }
	return pct(0.5), pct(0.99), l[len(l)-1]
}

// webhookConfig subscribes subs subscriptions to received events, all to the sink.
func webhookConfig(url string, subs int) string {
	var b strings.Builder
	b.WriteString("routes: []\nsubscriptions:\n")
	for i := range subs {
		fmt.Fprintf(&b, "  - {name: load%d, url: %q, events: [received], secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, allow_private_targets: true, max_in_flight: 32}\n", i, url)
	}
	return b.String()
}

// measureWebhooks publishes received events straight into the running service's stream (the
// intake is measured elsewhere) and counts what the sink receives: first as fast as the
// deliverer goes (deliveries/s), then at a steady rate below that (event → delivery latency).
func measureWebhooks(s *service, sink *hookSink, n, subs, rate int) error {
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	subject := "ingest.document.received.http"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	publish := func() error {
		id := uuid.Must(uuid.NewV7()).String()
		ev, err := events.NewEvent(events.Received, id+".received", events.SourceURI("http", "load"), id, time.Now(), events.ReceivedData{
			DocumentID: id, Source: events.SourceRef{Kind: "http", Name: "load"}, Filename: "load.pdf", ContentType: "application/pdf",
			Size: 1, SHA256: strings.Repeat("0", 64), ObjectKey: "documents/" + id, ReceivedAt: time.Now().UTC(),
		})
		if err != nil {
			return err
		}
		b, _ := json.Marshal(ev)
		_, err = js.PublishAsync(subject, b, jetstream.WithMsgID(ev.ID))
		return err
	}
	fmt.Printf("webhooks: %d subscription(s) to an instant local receiver, %d events\n", subs, n)

	// Warm-up: connections, consumers, pools.
	for range 100 {
		if err := publish(); err != nil {
			return err
		}
	}
	if err := sink.wait(int64(100*subs), time.Minute); err != nil {
		return err
	}
	sink.reset()

	start := time.Now()
	for range n {
		if err := publish(); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	published := time.Since(start)
	if err := sink.wait(int64(n*subs), 5*time.Minute); err != nil {
		return err
	}
	sink.mu.Lock()
	took := sink.last.Sub(start)
	sink.mu.Unlock()
	fmt.Printf("  burst: %d events published in %s; %d deliveries in %s = %.0f deliveries/s\n",
		n, published.Round(time.Millisecond), n*subs, took.Round(time.Millisecond), float64(n*subs)/took.Seconds())

	// Latency at a steady rate of events (each one delivered to every subscription).
	sink.reset()
	steady := max(n/4, 500)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for range steady {
		<-tick.C
		if err := publish(); err != nil {
			return err
		}
	}
	if err := sink.wait(int64(steady*subs), 5*time.Minute); err != nil {
		return err
	}
	p50, p99, worst := sink.percentiles()
	fmt.Printf("  steady %d events/s (%d deliveries/s): event → delivery p50 %s  p99 %s  max %s\n",
		rate, rate*subs, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), worst.Round(100*time.Microsecond))
	return nil
}
