package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// Event stream settings: a comment line keeps proxies from closing a quiet stream; a write that
// does not get through in writeTimeout ends the stream (the browser reconnects); a browser that
// reads slower than events come is told to reload rather than buffered for.
const (
	keepAlive    = 15 * time.Second
	writeTimeout = 10 * time.Second
	sseBuffer    = 256
)

// liveEvent is what a page is told about one document event: enough to know whether it
// concerns what the page shows, nothing a page would have to escape.
type liveEvent struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Vendor string `json:"vendor,omitempty"`
	seq    uint64 // stream sequence
}

// events streams the document events as server-sent events (text/event-stream), fed by an
// ordered consumer of new events on the stream. It ends when the browser goes, when the session
// ends (the stream is re-checked every keep-alive) or when the service stops.
func (c *Console) events(ec echo.Context, s *session) error {
	select {
	case <-c.stopping:
		return problem(http.StatusServiceUnavailable, "the service is stopping")
	default:
	}
	// The stream ends with the request or with the service, whichever first.
	ctx, cancel := context.WithCancel(ec.Request().Context())
	defer cancel()
	go func() {
		select {
		case <-c.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()

	ch := make(chan liveEvent, sseBuffer)
	overflow := make(chan struct{}, 1)
	ready := make(chan struct{})
	followErr := make(chan error, 1)
	go func() {
		names := c.bus.Names()
		followErr <- events.Follow(ctx, c.bus.JetStream(), events.FollowConfig{
			Stream: names.Stream(), Subject: names.DocumentSubjects(), Ready: func() { close(ready) },
		}, func(m jetstream.Msg) {
			ev, err := events.Decode(m.Data())
			if err != nil {
				return
			}
			le := liveEvent{ID: ev.Subject, Kind: string(ev.Kind())}
			if md, err := m.Metadata(); err == nil {
				le.seq = md.Sequence.Stream
			}
			var v struct {
				Vendor string `json:"vendor"`
			}
			if json.Unmarshal(ev.Data, &v) == nil && events.ValidToken(v.Vendor) {
				le.Vendor = v.Vendor
			}
			// Never block the consumer on a slow browser: past the buffer it is told to
			// reload instead.
			select {
			case ch <- le:
			default:
				select {
				case overflow <- struct{}{}:
				default:
				}
			}
		})
	}()

	w := ec.Response()
	w.Header().Set(echo.HeaderContentType, "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(format string, args ...any) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// "ready" once the consumer exists: from then on the page misses no event, so it refreshes
	// once on it to catch up with what happened while it connected.
	select {
	case <-ready:
	case err := <-followErr:
		if err != nil && ctx.Err() == nil {
			c.log.Warn("console event stream did not start", "err", err)
		}
		return nil
	case <-ctx.Done():
		return nil
	}
	if !send("retry: 3000\nevent: ready\ndata: {}\n\n") {
		return nil
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-followErr:
			if err != nil && ctx.Err() == nil {
				c.log.Warn("console event stream ended", "err", err)
			}
			return nil
		case le := <-ch:
			c.waitIndexed(ctx, le.seq)
			body, _ := json.Marshal(le)
			if !send("event: document\ndata: %s\n\n", body) {
				return nil
			}
		case <-overflow:
			if !send("event: overflow\ndata: {}\n\n") {
				return nil
			}
		case <-tick.C:
			if cur, err := c.lookup(ec); err == nil && cur == nil {
				_ = send("event: signedout\ndata: {}\n\n")
				return nil
			}
			if !send(": keep-alive\n\n") {
				return nil
			}
		}
	}
}

// indexWait bounds how long an event is held back for the index to apply it.
const indexWait = 2 * time.Second

// waitIndexed holds an event back until the list index has applied it (a page that refreshes
// on it would otherwise show the list as it was), within indexWait.
func (c *Console) waitIndexed(ctx context.Context, seq uint64) {
	if c.cfg.Index == nil || seq == 0 || c.cfg.Index.Progress().Sequence >= seq {
		return
	}
	deadline := time.NewTimer(indexWait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for c.cfg.Index.Progress().Sequence < seq {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}
