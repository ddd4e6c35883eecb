package imap

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// Bucket purposes (events.Names.Bucket): the mailbox checkpoints, the record of what was already
// ingested (for a rescan after a UIDVALIDITY change), and rotated OAuth refresh tokens.
const (
	checkpointBucket = "imap-checkpoints"
	ingestedBucket   = "imap-ingested"
	tokenBucket      = "imap-oauth"
)

// checkpoint is where a mailbox stands: every mail with a UID up to LastUID is done (ingested and
// post-actioned, or left alone on purpose), as long as the mailbox's UIDVALIDITY is UIDValidity.
type checkpoint struct {
	UIDValidity uint32    `json:"uidvalidity"`
	LastUID     uint32    `json:"last_uid"`
	UpdatedAt   time.Time `json:"updated_at"`
	rev         uint64
}

// store keeps one mailbox's state in JetStream Key-Value buckets.
type store struct {
	checkpoints jetstream.KeyValue
	ingested    jetstream.KeyValue
	key         string // this mailbox in the checkpoint bucket
	prefix      string // this source in the ingested bucket
}

func openStore(ctx context.Context, bus *events.Bus, name, account, mailbox string) (*store, error) {
	cps, err := keyValue(ctx, bus, checkpointBucket, "IMAP mailbox checkpoints: UIDVALIDITY and the last UID done")
	if err != nil {
		return nil, err
	}
	ing, err := keyValue(ctx, bus, ingestedBucket, "IMAP documents already ingested, by Message-ID and checksum (rescans after a UIDVALIDITY change)")
	if err != nil {
		return nil, err
	}
	return &store{
		checkpoints: cps,
		ingested:    ing,
		key:         name + "." + kvSafe(account+"/"+mailbox),
		prefix:      name + ".",
	}, nil
}

func keyValue(ctx context.Context, bus *events.Bus, purpose, description string) (jetstream.KeyValue, error) {
	// The Bus gives it the deployment's replicas: the exactly-once records of mail are as durable
	// as the events they vouch for.
	return bus.KeyValue(ctx, events.BucketSpec{Purpose: purpose, Description: description})
}

// kvSafe turns any text (a mailbox name in modified UTF-7, an e-mail address) into a KV key token.
func kvSafe(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (s *store) load(ctx context.Context) (checkpoint, error) {
	e, err := s.checkpoints.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return checkpoint{}, nil
	}
	if err != nil {
		return checkpoint{}, fmt.Errorf("read the mailbox checkpoint: %w", err)
	}
	var cp checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		return checkpoint{}, fmt.Errorf("the mailbox checkpoint %s is not valid JSON: %w", s.key, err)
	}
	cp.rev = e.Revision()
	return cp, nil
}

// errCheckpointMoved says another instance wrote the checkpoint: this one lost its lease.
var errCheckpointMoved = errors.New("the mailbox checkpoint was changed by another instance; stopping this one")

// save writes cp with compare-and-set, so that an instance that lost its lease cannot move the
// checkpoint of the one that took over.
func (s *store) save(ctx context.Context, cp *checkpoint) error {
	cp.UpdatedAt = time.Now().UTC()
	body, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	var rev uint64
	if cp.rev == 0 {
		rev, err = s.checkpoints.Create(ctx, s.key, body)
	} else {
		rev, err = s.checkpoints.Update(ctx, s.key, body, cp.rev)
	}
	if events.IsConflict(err) {
		return errCheckpointMoved
	}
	if err != nil {
		return fmt.Errorf("write the mailbox checkpoint: %w", err)
	}
	cp.rev = rev
	return nil
}

// contentKey identifies one document's content within one mail independently of UIDs: the mail's
// identity (its Message-ID, or the digest of the raw message when it has none), the document's
// SHA-256, and which occurrence of those bytes it is within the mail (a mail may carry the same
// file twice, and both are documents).
func (s *store) contentKey(identity, sha string, occurrence int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", identity, sha, occurrence))
	return s.prefix + hex.EncodeToString(sum[:])
}

// ingestedAs returns the document id under which this content was announced before, or "".
func (s *store) ingestedAs(ctx context.Context, key string) (string, error) {
	e, err := s.ingested.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up already ingested documents: %w", err)
	}
	return string(e.Value()), nil
}

// remember records that this content was announced as docID. It is written after the PubAck, so
// a record always means "published"; a crash before it is covered by the derived document id.
func (s *store) remember(ctx context.Context, key, docID string) error {
	if _, err := s.ingested.Put(ctx, key, []byte(docID)); err != nil {
		return fmt.Errorf("record the ingested document %s: %w", docID, err)
	}
	return nil
}
