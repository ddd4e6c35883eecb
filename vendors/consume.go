package vendors

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// worker runs handle for messages of a durable consumer on up to n goroutines. A handler that
// takes long keeps its message with InProgress, so AckWait only has to cover a stalled worker.
type worker struct {
	cc     jetstream.ConsumeContext
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

func startWorker(cons jetstream.Consumer, n int, ackWait time.Duration, log *slog.Logger,
	handle func(ctx context.Context, m jetstream.Msg)) (*worker, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{cancel: cancel}
	sem := make(chan struct{}, n)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sem <- struct{}{} // blocks the delivery goroutine: no more than n in hand
		w.wg.Add(1)
		go func() {
			defer func() { <-sem; w.wg.Done() }()
			stop := keepAlive(ctx, m, ackWait/3)
			defer stop()
			handle(ctx, m)
		}()
	}, jetstream.PullMaxMessages(n), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			log.Debug("consumer pull", "err", err)
		}
	}))
	if err != nil {
		cancel()
		return nil, err
	}
	w.cc = cc
	return w, nil
}

// stop takes no more messages and lets those in hand finish until ctx ends; then their contexts
// are cancelled (their messages are redelivered later).
func (w *worker) stop(ctx context.Context) {
	w.cc.Stop()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		w.cancel()
		<-done
	}
	w.cancel()
}

func keepAlive(ctx context.Context, m jetstream.Msg, every time.Duration) func() {
	t := time.NewTicker(every)
	done := make(chan struct{})
	go func() {
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = m.InProgress()
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}

// backoff is initial·2^(attempt-1), capped, or the vendor's Retry-After when it said one.
func backoff(attempt int, initial, ceiling, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, time.Hour)
	}
	d := initial
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}
