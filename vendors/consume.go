package vendors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// worker runs handle for messages of a durable consumer on up to n goroutines. It pulls only as
// many messages as it has free goroutines, so no message waits in a client-side buffer while its
// AckWait runs: AckWait can then be short (a crashed instance's messages come back within
// seconds), and a handler that takes long keeps its message with InProgress.
type worker struct {
	wg       sync.WaitGroup // handlers in hand
	loop     sync.WaitGroup // the pull loop
	cancel   context.CancelFunc
	stopPull context.CancelFunc
}

// pullWait bounds one pull request: how long an idle worker waits for work before asking again.
const pullWait = 5 * time.Second

func startWorker(cons jetstream.Consumer, n int, ackWait time.Duration, log *slog.Logger,
	handle func(ctx context.Context, m jetstream.Msg)) (*worker, error) {
	if n <= 0 {
		return nil, errors.New("a worker needs at least one goroutine")
	}
	ctx, cancel := context.WithCancel(context.Background())    // the handlers'
	pctx, stopPull := context.WithCancel(context.Background()) // the pulls'
	w := &worker{cancel: cancel, stopPull: stopPull}
	slots := make(chan struct{}, n)
	release := func(k int) {
		for range k {
			<-slots
		}
	}
	w.loop.Add(1)
	go func() {
		defer w.loop.Done()
		pause := 100 * time.Millisecond
		for {
			// One free goroutine at least, then every other that is free.
			select {
			case slots <- struct{}{}:
			case <-pctx.Done():
				return
			}
			k := 1
		more:
			for k < n {
				select {
				case slots <- struct{}{}:
					k++
				default:
					break more
				}
			}
			fctx, fcancel := context.WithTimeout(pctx, pullWait)
			batch, err := cons.Fetch(k, jetstream.FetchContext(fctx))
			if err != nil {
				fcancel()
				release(k)
				if pctx.Err() != nil {
					return
				}
				log.Debug("consumer pull failed; retrying", "err", err)
				select {
				case <-pctx.Done():
					return
				case <-time.After(pause):
				}
				pause = min(pause*2, 5*time.Second)
				continue
			}
			pause = 100 * time.Millisecond
			got := 0
			for m := range batch.Messages() {
				got++
				w.wg.Add(1)
				go func() {
					defer func() { release(1); w.wg.Done() }()
					stop := keepAlive(ctx, m, ackWait/3)
					defer stop()
					safely(ctx, log, m, handle)
				}()
			}
			fcancel()
			release(k - got)
			if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) &&
				!errors.Is(err, jetstream.ErrNoHeartbeat) && pctx.Err() == nil {
				log.Debug("consumer pull ended early", "err", err)
			}
		}
	}()
	return w, nil
}

// safely runs handle, turning a panic (a vendor's malformed answer hitting a bug) into a log line
// with the stack and a delayed redelivery, instead of the end of the process.
func safely(ctx context.Context, log *slog.Logger, m jetstream.Msg, handle func(ctx context.Context, m jetstream.Msg)) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("handler panicked; the message will be redelivered", "subject", m.Subject(),
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			_ = m.NakWithDelay(time.Minute)
		}
	}()
	handle(ctx, m)
}

// stop takes no more messages and lets those in hand finish until ctx ends; then their contexts
// are cancelled (their messages are redelivered later).
func (w *worker) stop(ctx context.Context) {
	w.stopPull()
	done := make(chan struct{})
	go func() { w.loop.Wait(); w.wg.Wait(); close(done) }()
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

// backoff is initial·2^(attempt-1), capped, with jitter (between half and the whole of it), so
// that documents waiting on a recovering vendor do not all come back in the same second. A
// vendor's Retry-After is honoured, with up to a tenth added for the same reason.
func backoff(attempt int, initial, ceiling, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		retryAfter = min(retryAfter, time.Hour)
		return retryAfter + jitter(retryAfter/10)
	}
	d := initial
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + jitter(d/2)
}

// jitter is a random duration in [0, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}
