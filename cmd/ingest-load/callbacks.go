package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// measureCallbacks sends n distinct Allspark callbacks from c senders and checks that every one
// answered 202 is in the stream (count in, count out).
func measureCallbacks(s *service, n, c int) error {
	fmt.Printf("%d Allspark callbacks from %d concurrent senders\n", n, c)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}}
	url := s.httpURL + "/v1/callbacks/allspark/" + callbackToken
	var accepted atomic.Int64
	cost, err := s.begin()
	if err != nil {
		return err
	}
	err = run("callback → 202", n, c, func() error {
		// Distinct bodies (a vendor's callbacks differ); case ids nobody submitted, so each is
		// parked and, after the park window, recorded as unmatched.
		body := fmt.Sprintf(`{"case_id": %d, "status": "completed", "sent": %d}`, 900000+time.Now().UnixNano()%1000000, time.Now().UnixNano())
		res, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		// Read to the end: a response body closed unread costs the connection (Go's transport
		// cannot reuse it), and the run would measure TCP set-up instead of the endpoint.
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusAccepted {
			return fmt.Errorf("callback answered %s", res.Status)
		}
		accepted.Add(1)
		return nil
	})
	if err != nil {
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "INGEST")
	if err != nil {
		return err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("ingest.callback.received.allspark"))
	if err != nil {
		return err
	}
	parked := int64(0)
	for _, v := range info.State.Subjects {
		parked += int64(v)
	}
	in := accepted.Load()
	fmt.Printf("answered 202: %d; parked in the stream: %d; lost: %d\n", in, parked, in-parked)
	if parked != in {
		return fmt.Errorf("%d callbacks answered 202 are not in the stream", in-parked)
	}
	return nil
}
