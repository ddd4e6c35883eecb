package httpdrop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/intake"
)

// Idempotency-Key, as the IETF draft (draft-ietf-httpapi-idempotency-key-header) describes it: the
// first request with a key is processed, a repeat gets the first answer again (same document ids,
// no new event), a repeat while the first is still running gets 409, and the key reused for a
// different request gets 422. Records live in a Key-Value bucket, so every instance sees them.

// pendingStaleAfter is how long a claim may stay unfinished before another request may take it
// over: an instance that died mid-upload must not block the key until it expires.
const pendingStaleAfter = time.Hour

type idemRecord struct {
	State       string    `json:"state"` // "pending" or "done"
	Started     time.Time `json:"started"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Response    *Response `json:"response,omitempty"`
}

type claim struct {
	key string
	rev uint64
}

func validIdempotencyKey(k string) error {
	if len(k) > 255 {
		return httpapi.NewProblem(http.StatusBadRequest, "the Idempotency-Key is longer than 255 characters")
	}
	for _, r := range k {
		if r < 0x21 || r > 0x7e {
			return httpapi.NewProblem(http.StatusBadRequest, "the Idempotency-Key must be printable ASCII without spaces")
		}
	}
	return nil
}

// claim reserves key for this request, or returns the finished record of an earlier one.
func (d *Drop) claim(ctx context.Context, client, key string) (*claim, *idemRecord, error) {
	sum := sha256.Sum256([]byte(key))
	kvKey := "k" + client + "_" + hex.EncodeToString(sum[:16])
	pending, _ := json.Marshal(idemRecord{State: "pending", Started: time.Now().UTC()})
	rev, err := d.idem.Create(ctx, kvKey, pending)
	if err == nil {
		return &claim{key: kvKey, rev: rev}, nil, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, nil, fmt.Errorf("reserve Idempotency-Key: %w", err)
	}
	e, err := d.idem.Get(ctx, kvKey)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) { // released between our Create and Get
			return d.claim(ctx, client, key)
		}
		return nil, nil, fmt.Errorf("read Idempotency-Key record: %w", err)
	}
	var rec idemRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, nil, fmt.Errorf("Idempotency-Key record is not valid JSON: %w", err)
	}
	switch {
	case rec.State == "done":
		return nil, &rec, nil
	case time.Since(rec.Started) < pendingStaleAfter:
		return nil, nil, httpapi.NewProblem(http.StatusConflict,
			"a request with this Idempotency-Key is still being processed; retry when it has finished").WithHeader("Retry-After", "5")
	}
	rev, err = d.idem.Update(ctx, kvKey, pending, e.Revision())
	if err != nil {
		return nil, nil, httpapi.NewProblem(http.StatusConflict,
			"another request took over this Idempotency-Key; retry shortly").WithHeader("Retry-After", "5")
	}
	d.log.WarnContext(ctx, "took over an abandoned Idempotency-Key claim", "started", rec.Started)
	return &claim{key: kvKey, rev: rev}, nil, nil
}

// complete records the answer, for repeats of the request.
func (d *Drop) complete(ctx context.Context, cl *claim, fingerprint string, resp Response) {
	body, _ := json.Marshal(idemRecord{State: "done", Started: time.Now().UTC(), Fingerprint: fingerprint, Response: &resp})
	if _, err := d.idem.Update(context.WithoutCancel(ctx), cl.key, body, cl.rev); err != nil {
		// The documents are accepted; only a repeat of this request would not be recognised.
		d.log.WarnContext(ctx, "could not record the Idempotency-Key answer", "err", err)
	}
}

// release frees the key after a failed request, so the client can retry with it.
func (d *Drop) release(ctx context.Context, cl *claim) {
	if err := d.idem.Delete(context.WithoutCancel(ctx), cl.key, jetstream.LastRevision(cl.rev)); err != nil {
		d.log.WarnContext(ctx, "could not release an Idempotency-Key after a failed request", "err", err)
	}
}

// check is the storeFunc of a replay: the checks of Stage, nothing stored.
func (d *Drop) check(_ context.Context, id, name string, r io.Reader) (intake.Staged, error) {
	return intake.Check(id, name, r, d.cfg.MaxDocumentBytes)
}

// replay answers a repeated request with the first answer, after checking that it is the same
// request: the body is read and hashed, nothing is stored.
func (d *Drop) replay(c echo.Context, rec *idemRecord) error {
	r, err := d.read(c, d.check, nil)
	if err != nil {
		return err
	}
	if r.fingerprint() != rec.Fingerprint || rec.Response == nil {
		return d.refuse("idempotency_mismatch", httpapi.NewProblem(http.StatusUnprocessableEntity,
			"this Idempotency-Key was used for a different request (other files or fields); use a new key for a new request"))
	}
	c.Response().Header().Set("Idempotent-Replayed", "true")
	return d.answer(c, *rec.Response)
}
