package events

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketSpec describes a Key-Value bucket a component needs. The Bus names it after the purpose
// and gives it the deployment's replicas, so that every piece of state is as durable as the
// events it goes with.
type BucketSpec struct {
	Purpose     string // "submissions", "idempotency", "instances": the bucket is <namespace>-<purpose>
	Description string
	// TTL is the bucket's age limit: a key not written for that long disappears (0: kept). It is
	// how keys expire on NATS 2.9, which has no per-key TTL.
	TTL time.Duration
	// History is how many values per key are kept (default 1).
	History uint8
}

// KeyValue provisions (idempotently) and returns the bucket spec describes.
func (b *Bus) KeyValue(ctx context.Context, spec BucketSpec) (jetstream.KeyValue, error) {
	return openBucket(ctx, b.js, b.log, jetstream.KeyValueConfig{
		Bucket:      b.names.Bucket(spec.Purpose),
		Description: spec.Description,
		Storage:     jetstream.FileStorage,
		Replicas:    b.replicas,
		TTL:         spec.TTL,
		History:     max(spec.History, 1),
	})
}

// openBucket provisions a Key-Value bucket, checks its replicas and binds it with reads that go
// to the stream's leader.
//
// Why not direct gets (nats.go turns them on for every bucket): with them any replica answers a
// Get, and a replica may be behind; NATS 2.9 before 2.9.17 even answers from a restarted node
// before it has caught up (nats-server#4162). Every bucket here is read to decide a
// compare-and-set write or whether work was done, so a stale read means a write that loses its
// race again and again, or one decided on a past that is no longer true. The leader's answer
// costs a hop on a cluster and nothing on a single server.
func openBucket(ctx context.Context, js jetstream.JetStream, log *slog.Logger, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	name, stream := cfg.Bucket, "KV_"+cfg.Bucket
	err := provision(ctx, log, "key-value bucket "+name, func(ctx context.Context) error {
		// Most starts find the bucket as it should be; the create-or-update would turn direct
		// gets back on for a moment, so it is only made when something differs.
		if st, err := js.Stream(ctx, stream); err == nil && bucketIs(st.CachedInfo().Config, cfg) {
			return nil
		}
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return err
		}
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		if sc := st.CachedInfo().Config; sc.AllowDirect {
			sc.AllowDirect = false
			_, err = js.UpdateStream(ctx, sc)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("provision key-value bucket %s: %w", name, err)
	}
	var kv jetstream.KeyValue
	err = provision(ctx, log, "key-value bucket "+name, func(ctx context.Context) (err error) {
		kv, err = js.KeyValue(ctx, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open key-value bucket %s: %w", name, err)
	}
	// A bucket made earlier with other replicas keeps them if the server would not change it.
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("read back key-value bucket %s: %w", name, err)
	}
	if kst, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		sc := kst.StreamInfo().Config
		if err := replicasAre(sc.Name, sc.Replicas, cfg.Replicas); err != nil {
			return nil, err
		}
		if sc.AllowDirect {
			return nil, fmt.Errorf("key-value bucket %s still answers reads from any replica (allow_direct) after it was turned off", name)
		}
	}
	return kv, nil
}

// bucketIs reports whether a bucket's stream has the settings cfg asks for and direct gets off.
func bucketIs(sc jetstream.StreamConfig, cfg jetstream.KeyValueConfig) bool {
	return !sc.AllowDirect && sc.Description == cfg.Description && sc.MaxAge == cfg.TTL &&
		sc.MaxMsgsPerSubject == int64(cfg.History) && max(sc.Replicas, 1) == max(cfg.Replicas, 1) &&
		sc.Storage == cfg.Storage
}

// provision runs fn until it succeeds or fails for a reason, giving each try a short bound. An
// answer that does not come is tried again: a cluster electing a leader, or two instances that
// create the same stream at once (NATS 2.9 then answers neither for a long while; the stream is
// there when they look again).
func provision(ctx context.Context, log *slog.Logger, what string, fn func(ctx context.Context) error) error {
	delay, bound := 200*time.Millisecond, 2*time.Second
	for attempt := 1; ; attempt++ {
		// Short at first (a lost answer costs little), longer later (a slow cluster gets time).
		actx, cancel := context.WithTimeout(ctx, bound)
		bound = min(bound*2, 10*time.Second)
		err := fn(actx)
		cancel()
		if err == nil || !Retryable(err) || ctx.Err() != nil {
			return err
		}
		log.Warn("NATS did not answer while setting up; trying again", "what", what, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay/2 + rand.N(delay/2+1)):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// replicasAre reports a stream (an event stream, a bucket's backing stream) whose replicas are
// not the configured ones, with the command that fixes it.
func replicasAre(stream string, got, want int) error {
	if got == want || (got == 0 && want == 1) {
		return nil
	}
	return fmt.Errorf("stream %s has %d replicas, not the configured %d (nats.stream.replicas); it was made before with other "+
		"settings and NATS kept them: run `nats stream edit %s --replicas %d` (or delete it, losing its data) and start again",
		stream, got, want, stream, want)
}
