package docapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
)

// Retry: POST /v1/documents/{id}/retry[?vendor=V] starts a new round of a (document, vendor)
// whose last round failed — of every failed vendor of the document without ?vendor. A round is
// one retried event with a deterministic id (<doc>.retried.<vendor>.r<round>), the round being
// the failed one's plus one, so that however often or concurrently the same retry is asked for,
// and whatever crashes in between, the stream holds it once and the dispatcher submits the
// document once more (see dispatch/retry.go).
//
// Idempotency-Key: the first request with a key records its plan (which rounds of which vendors)
// in the Idempotency-Key bucket (the one uploads use) before it publishes anything; a repeat with
// the key finishes that plan — publishing what a crash left unpublished, never a further round —
// and answers 202 with the document's state as it is then. The key used for another document or
// vendor is refused with 422.

// Errors of Retry; the error's text is a sentence for the person who asked.
var (
	// ErrNotFound: no such document, or the vendor is not one of the document's.
	ErrNotFound = errors.New("not found")
	// ErrNotRetryable: the vendor's round under way has not failed (it is queued, submitted or
	// completed), or the document has no failed vendor.
	ErrNotRetryable = errors.New("not retryable")
	// ErrIdempotencyMismatch: the Idempotency-Key was used for a different retry.
	ErrIdempotencyMismatch = errors.New("idempotency key reused for another request")
	// ErrBadRetry: the request itself is malformed (a vendor name or key that cannot be one).
	ErrBadRetry = errors.New("bad retry request")
	// ErrUnavailable: the event store could not be reached; nothing or not all was done, and the
	// same request (with its key) may be sent again.
	ErrUnavailable = errors.New("event store unavailable")
)

// retryError carries a sentence and the kind of refusal it is.
type retryError struct {
	kind error
	msg  string
}

func (e *retryError) Error() string { return e.msg }
func (e *retryError) Unwrap() error { return e.kind }

func refuse(kind error, format string, args ...any) error {
	return &retryError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// IdempotencyStore is where Idempotency-Key records are kept: the Key-Value bucket uploads use.
type IdempotencyStore = jetstream.KeyValue

// RetrySource is the CloudEvents source of retried events.
const RetrySource = "/api/retry"

type requesterKey struct{}

// WithRequester names who asks for a retry (a client's key digest, "console", "cli"): it is kept
// in the retried event, and Idempotency-Keys are scoped by it, as uploads' are by API client.
func WithRequester(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, requesterKey{}, who)
}

func requesterOf(ctx context.Context) string {
	who, _ := ctx.Value(requesterKey{}).(string)
	return who
}

// retryRecord is an Idempotency-Key's record: the request it was first used for and the rounds
// it started.
type retryRecord struct {
	Kind        string         `json:"kind"` // "retry": the bucket also holds the uploads' records
	Fingerprint string         `json:"fingerprint"`
	Rounds      map[string]int `json:"rounds"` // vendor → round
	Started     time.Time      `json:"started"`
}

// Retry starts a new round of the failed vendor (every failed vendor when vendor is "") of
// document id and returns the document's state, as GET /v1/documents/{id} shows it. With an
// idempotencyKey, a repeat returns the same kind of answer without another round. The errors are
// ErrNotFound, ErrNotRetryable, ErrIdempotencyMismatch, ErrBadRetry and ErrUnavailable (test
// with errors.Is); their text is a sentence for people. Name the requester with WithRequester.
func (d *API) Retry(ctx context.Context, id, vendor, idempotencyKey string) (*events.Document, error) {
	doc, _, err := d.retry(ctx, id, vendor, idempotencyKey)
	return doc, err
}

func (d *API) retry(ctx context.Context, id, vendor, key string) (doc *events.Document, replayed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !events.ValidDocumentID(id) {
		return nil, false, refuse(ErrNotFound, "there is no document with id %q", truncate(id, 80))
	}
	if vendor != "" && !events.ValidToken(vendor) {
		return nil, false, refuse(ErrBadRetry, "the vendor %q cannot be a vendor name (1-64 characters of a-z, 0-9, _ and -)", truncate(vendor, 80))
	}
	if key == "" {
		return d.retryOnce(ctx, id, vendor, "", nil)
	}
	if err := validKey(key); err != nil {
		return nil, false, err
	}
	if d.cfg.Idempotency == nil {
		return nil, false, refuse(ErrBadRetry, "this service keeps no Idempotency-Key records for retries; send the request without one")
	}
	sum := sha256.Sum256([]byte(key))
	kvKey := "retry_" + safeKeyPart(requesterOf(ctx)) + "_" + hex.EncodeToString(sum[:16])
	fp := "doc=" + id + "&vendor=" + vendor
	for range 3 {
		e, err := d.cfg.Idempotency.Get(ctx, kvKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			doc, replayed, err := d.retryOnce(ctx, id, vendor, kvKey, &retryRecord{Kind: "retry", Fingerprint: fp, Started: time.Now().UTC()})
			if errors.Is(err, errKeyTaken) {
				continue // another request with the key recorded its plan first: finish that one
			}
			return doc, replayed, err
		case err != nil:
			return nil, false, storeDown("the Idempotency-Key could not be read", err)
		}
		var rec retryRecord
		if json.Unmarshal(e.Value(), &rec) != nil || rec.Kind != "retry" || rec.Fingerprint != fp {
			return nil, false, refuse(ErrIdempotencyMismatch,
				"this Idempotency-Key was used for a different request (another document, vendor or endpoint); use a new key for a new request")
		}
		// A repeat: finish the plan (a crash may have left part of it unpublished), never more.
		state, err := d.bus.States().Get(ctx, id)
		if err != nil {
			return nil, false, storeDown("the document's state could not be read", err)
		}
		if _, err := d.publishRounds(ctx, state, rec.Rounds); err != nil {
			return nil, false, err
		}
		doc, err := d.current(ctx, id)
		return doc, true, err
	}
	return nil, false, refuse(ErrNotRetryable, "this Idempotency-Key is being used by other requests at this moment; retry shortly")
}

var errKeyTaken = errors.New("the Idempotency-Key was recorded by another request first")

// retryOnce plans the rounds from the document's state, records the plan under kvKey when rec is
// given (a keyed request), publishes the retried events and answers with the new state.
func (d *API) retryOnce(ctx context.Context, id, vendor, kvKey string, rec *retryRecord) (*events.Document, bool, error) {
	state, err := d.bus.States().Get(ctx, id)
	if errors.Is(err, events.ErrUnknownDocument) {
		return nil, false, refuse(ErrNotFound, "there is no document with id %q", id)
	}
	if err != nil {
		return nil, false, storeDown("the document's state could not be read", err)
	}
	rounds, err := plan(state, vendor)
	if err != nil {
		return nil, false, err
	}
	if rec != nil {
		rec.Rounds = rounds
		body, _ := json.Marshal(rec)
		if _, err := d.cfg.Idempotency.Create(ctx, kvKey, body); events.IsConflict(err) {
			return nil, false, errKeyTaken
		} else if err != nil {
			return nil, false, storeDown("the Idempotency-Key could not be recorded", err)
		}
	}
	started, err := d.publishRounds(ctx, state, rounds)
	if err != nil {
		return nil, false, err
	}
	if started == 0 && rec == nil {
		// Every round was published by another request between our reading and our publishing:
		// it is under way, and this request started nothing.
		names := slices.Sorted(func(yield func(string) bool) {
			for v := range rounds {
				if !yield(v) {
					return
				}
			}
		})
		return nil, false, refuse(ErrNotRetryable, "document %s was just retried at %s by another request; it is under way", id, strings.Join(names, ", "))
	}
	doc, err := d.current(ctx, id)
	return doc, false, err
}

// plan is the round each retried vendor gets: the failed round's plus one.
func plan(doc events.Document, vendor string) (map[string]int, error) {
	rounds := map[string]int{}
	if vendor != "" {
		vs := doc.Vendors[vendor]
		switch {
		case vs == nil && slices.Contains(doc.Chosen, vendor):
			return nil, refuse(ErrNotRetryable, "document %s has not been submitted to %s yet; only a failed vendor can be retried", doc.ID, vendor)
		case vs == nil:
			return nil, refuse(ErrNotFound, "document %s does not go to vendor %q (its vendors: %s)", doc.ID, vendor, strings.Join(vendorsOf(doc), ", "))
		case vs.Status != events.StatusFailed:
			return nil, refuse(ErrNotRetryable, "document %s is %s at %s (round %d); only a failed vendor can be retried", doc.ID, describe(vs.Status), vendor, vs.Round)
		}
		rounds[vendor] = vs.Round + 1
		return rounds, nil
	}
	for name, vs := range doc.Vendors {
		if vs.Status == events.StatusFailed {
			rounds[name] = vs.Round + 1
		}
	}
	if len(rounds) == 0 {
		return nil, refuse(ErrNotRetryable, "document %s has no failed vendor to retry (it is %s)", doc.ID, doc.Status)
	}
	return rounds, nil
}

func describe(s events.Status) string {
	if s == events.StatusReceived {
		return "waiting to be submitted"
	}
	return string(s)
}

func vendorsOf(doc events.Document) []string {
	var out []string
	for name := range doc.Vendors {
		out = append(out, name)
	}
	for _, name := range doc.Chosen {
		if doc.Vendors[name] == nil {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	sort.Strings(out)
	return out
}

// publishRounds publishes the retried event of each planned round and folds it into the state.
// It returns how many the stream did not hold yet (the others were published by an earlier
// attempt of the same request, or another request).
func (d *API) publishRounds(ctx context.Context, state events.Document, rounds map[string]int) (int, error) {
	started := 0
	names := make([]string, 0, len(rounds))
	for v := range rounds {
		names = append(names, v)
	}
	sort.Strings(names)
	for _, vendor := range names {
		round := rounds[vendor]
		evID := events.VendorStepID(state.ID, events.Retried, vendor, round)
		if slices.ContainsFunc(state.History, func(h events.HistoryEntry) bool { return h.EventID == evID }) {
			continue // the state holds it: published, even if past the stream's duplicate window
		}
		prev := ""
		if vs := state.Vendors[vendor]; vs != nil && vs.Round == round-1 {
			prev = vs.Error
		}
		now := time.Now().UTC()
		ev, err := events.NewEvent(events.Retried, evID, RetrySource, state.ID, now, events.RetriedData{
			DocumentID: state.ID, Vendor: vendor, Round: round, RequestedAt: now, RequestedBy: requesterOf(ctx), PreviousError: prev,
		})
		if err != nil {
			return started, err
		}
		subject, err := d.bus.Names().Subject(events.Retried, vendor)
		if err != nil {
			return started, err
		}
		ack, err := d.bus.Publish(ctx, subject, ev)
		if err != nil {
			return started, storeDown("the retry could not be recorded", err)
		}
		if !ack.Duplicate {
			started++
			d.log.InfoContext(ctx, "retry requested: a new round", "doc_id", state.ID, "vendor", vendor, "round", round, "requested_by", requesterOf(ctx))
		}
		// The state at once, so that the answer shows the round; the projector makes it otherwise.
		if _, _, err := d.bus.States().Apply(context.WithoutCancel(ctx), ev, ack.Sequence); err != nil {
			d.log.WarnContext(ctx, "document state not written yet; the projector will", "doc_id", state.ID, "event_id", ev.ID, "err", err)
		}
	}
	return started, nil
}

// current is the document's state as GET /v1/documents/{id} answers it.
func (d *API) current(ctx context.Context, id string) (*events.Document, error) {
	doc, err := d.bus.States().Get(ctx, id)
	if err != nil {
		return nil, storeDown("the document's state could not be read", err)
	}
	if d.cfg.Enrich != nil {
		d.cfg.Enrich(ctx, &doc)
	}
	return &doc, nil
}

func storeDown(what string, err error) error {
	return &retryError{kind: ErrUnavailable, msg: fmt.Sprintf(
		"the event store (NATS JetStream) is not available, so %s; send the same request again in a few seconds (%v)", what, err)}
}

func validKey(k string) error {
	if len(k) > 255 {
		return refuse(ErrBadRetry, "the Idempotency-Key is longer than 255 characters")
	}
	for _, r := range k {
		if r < 0x21 || r > 0x7e {
			return refuse(ErrBadRetry, "the Idempotency-Key must be printable ASCII without spaces")
		}
	}
	return nil
}

// safeKeyPart keeps a requester name usable in a Key-Value key.
func safeKeyPart(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, truncate(s, 64))
}

// retryHandler answers POST /v1/documents/{id}/retry[?vendor=V] with 202 and the document's
// state.
func (d *API) retryHandler(c echo.Context) error {
	id := c.Param("id")
	c.Set(httpapi.DocIDKey, id)
	q := c.QueryParams()
	for name, vals := range q {
		switch {
		case name != "vendor":
			return httpapi.NewProblem(http.StatusBadRequest, "unknown query parameter %q: the only one is vendor", truncate(name, 40))
		case len(vals) > 1:
			return httpapi.NewProblem(http.StatusBadRequest, "the query parameter vendor is given %d times; name one vendor, or none for every failed one", len(vals))
		}
	}
	_, hasVendor := q["vendor"]
	vendor := q.Get("vendor")
	if hasVendor && vendor == "" {
		return httpapi.NewProblem(http.StatusBadRequest, "the query parameter vendor is empty; name a vendor, or leave the parameter out for every failed one")
	}
	ctx := c.Request().Context()
	if who, ok := c.Get(httpapi.ClientKey).(string); ok && requesterOf(ctx) == "" {
		ctx = WithRequester(ctx, "api:"+who)
	}
	doc, replayed, err := d.retry(ctx, id, vendor, c.Request().Header.Get("Idempotency-Key"))
	if err != nil {
		return RetryProblem(err)
	}
	if replayed {
		c.Response().Header().Set("Idempotent-Replayed", "true")
	}
	return c.JSON(http.StatusAccepted, doc)
}

// RetryProblem is Retry's error as the HTTP answer it makes (an *httpapi.Problem: 404, 409, 422,
// 400 or 503 with the sentence), for callers that answer over HTTP (the console); nil stays nil,
// other errors stay as they are.
func RetryProblem(err error) error {
	var re *retryError
	if !errors.As(err, &re) {
		return err
	}
	status := map[error]int{
		ErrNotFound: http.StatusNotFound, ErrNotRetryable: http.StatusConflict, ErrIdempotencyMismatch: http.StatusUnprocessableEntity,
		ErrBadRetry: http.StatusBadRequest, ErrUnavailable: http.StatusServiceUnavailable,
	}[re.kind]
	p := httpapi.NewProblem(status, "%s", re.msg)
	if status == http.StatusServiceUnavailable {
		p.WithHeader("Retry-After", "5")
	}
	return p
}

// UseIdempotency sets Config.Idempotency after New (the service opens the bucket once the API
// exists); call it before the server takes requests.
func (d *API) UseIdempotency(kv IdempotencyStore) { d.cfg.Idempotency = kv }

// Retry asks the service for a new round (POST /v1/documents/{id}/retry): what `ingest retry`
// uses. vendor "" retries every failed vendor; key "" sends no Idempotency-Key. A refusal is the
// server's *httpapi.Problem.
func (c *Client) Retry(ctx context.Context, id, vendor, key string) (events.Document, error) {
	var q url.Values
	if vendor != "" {
		q = url.Values{"vendor": {vendor}}
	}
	req, err := c.api().NewRequest(ctx, http.MethodPost, StatusURL(url.PathEscape(id))+"/retry", q, nil)
	if err != nil {
		return events.Document{}, err
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	var doc events.Document
	err = c.api().JSON(req, http.StatusAccepted, &doc)
	return doc, err
}
