// Package callbacks receives vendors' "done" calls: POST /v1/callbacks/{vendor}/{token}. A
// callback proves itself (a secret in its URL, optionally a source address allow-list and a
// signature), is parked in JetStream at once, and is answered 202 within milliseconds. A consumer
// then maps the vendor's ids to our document and fetches the authoritative result from the
// vendor's API with our credentials: nothing in a callback body is trusted beyond identifiers.
package callbacks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/dispatch"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/vendors"
)

// Endpoint is one vendor's callback endpoint.
type Endpoint struct {
	Vendor string
	// Token is the secret path element; required.
	Token string
	// AllowCIDRs, when not empty, are the only source addresses accepted.
	AllowCIDRs []netip.Prefix
	// Verifier, when set, checks each callback's signature before anything else is done with it
	// (a vendor's signed webhooks); callbacks it refuses are answered 401.
	Verifier vendors.CallbackVerifier
	// Parser reads the vendor's identifiers out of a body.
	Parser vendors.CallbackVendor
}

// Config configures the receiver.
type Config struct {
	Bus       *events.Bus
	Endpoints []Endpoint
	// PublicURL is the scheme and host vendors call (https://ingest.example.com): the URLs to
	// paste into vendor consoles, and what a signing vendor signs.
	PublicURL string
	// MaxBody bounds a callback body (default 10 MiB): 413 beyond.
	MaxBody int64
	// ParkWindow is how long a callback whose document is not known yet (it came before our own
	// submitted record) is kept trying before it is recorded as unmatched (default 10 min).
	ParkWindow time.Duration
	Poller     *dispatch.Poller
	Refs       *dispatch.RefIndex
	// SweepWindow: a callback whose ids cannot be read has the vendor's submissions indexed
	// within this window checked at once (default 24 h, the default poll deadline).
	SweepWindow time.Duration
	Workers     int // callbacks resolved at once (default 8)
	// AckWait and Drain: see events.ConsumerSpec.
	AckWait, Drain time.Duration
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

// Receiver is the callback endpoints and the consumer behind them.
type Receiver struct {
	cfg       Config
	endpoints map[string]Endpoint
	nonces    jetstream.KeyValue
	cons      *events.Consumer
	log       *slog.Logger
	now       func() time.Time
	received  *prometheus.CounterVec // vendor, outcome
	resolved  *prometheus.CounterVec // vendor, outcome

	sweepMu   sync.Mutex
	lastSweep map[string]time.Time // vendor → when its open submissions were last checked
}

// nonceMemory is how long a signed callback's nonce is remembered: longer than any signature
// window a vendor uses (5 minutes either way is usual), so that a replay finds it.
const nonceMemory = 11 * time.Minute

// maxInlineBody is the largest body kept inside the parked record; larger ones go to the Object
// Store (events are limited to 1 MiB).
const maxInlineBody = 256 << 10

// New provisions the nonce bucket and the resolver's consumer. Run resolves.
func New(ctx context.Context, cfg Config) (*Receiver, error) {
	if cfg.Bus == nil || cfg.Poller == nil || cfg.Refs == nil {
		return nil, errors.New("callbacks: Bus, Poller and Refs are required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 10 << 20
	}
	if cfg.ParkWindow <= 0 {
		cfg.ParkWindow = 10 * time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.SweepWindow <= 0 {
		cfg.SweepWindow = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{cfg: cfg, endpoints: map[string]Endpoint{}, log: cfg.Logger, now: time.Now, lastSweep: map[string]time.Time{},
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_callbacks_received_total", Help: "Callback requests by vendor and answer (accepted, refused_*).",
		}, []string{"vendor", "outcome"}),
		resolved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_callbacks_resolved_total", Help: "Parked callbacks by vendor and outcome (completed, already_done, unmatched, left_to_polling, swept, swept_already).",
		}, []string{"vendor", "outcome"}),
	}
	for _, e := range cfg.Endpoints {
		if len(e.Token) < 16 {
			return nil, fmt.Errorf("callbacks: vendors.%s.callback_token must be at least 16 characters", e.Vendor)
		}
		if e.Parser == nil {
			return nil, fmt.Errorf("callbacks: vendor %s cannot read callbacks", e.Vendor)
		}
		r.endpoints[e.Vendor] = e
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.received, r.resolved} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	names := cfg.Bus.Names()
	var err error
	// Nonces are remembered a little longer than the timestamp window: a replay must find them.
	r.nonces, err = cfg.Bus.KeyValue(ctx, events.BucketSpec{
		Purpose: "callback-nonces", Description: "signed callback nonces seen (replay protection)", TTL: nonceMemory,
	})
	if err != nil {
		return nil, err
	}
	r.cons, err = cfg.Bus.Consumer(ctx, events.ConsumerSpec{
		Purpose: "callbacks", Description: "resolves parked vendor callbacks into completed events",
		Filter: names.CallbackSubjects("received"), Workers: cfg.Workers, AckWait: cfg.AckWait, Drain: cfg.Drain,
	}, r.resolve)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// URLs are the callback URLs to give each vendor, with the token left as <callback_token>: the
// token is the callback's only credential, so it is written in no log (the operator has it in
// the configuration).
func (r *Receiver) URLs() map[string]string {
	out := map[string]string{}
	base := r.cfg.PublicURL
	if base == "" {
		base = "http://<this host>"
	}
	for v := range r.endpoints {
		out[v] = fmt.Sprintf("%s/v1/callbacks/%s/<callback_token>", trimSlash(base), v)
	}
	return out
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// Register adds the endpoint to the server.
// GET is taken too: a vendor's "call to your URL" may be a GET with the ids in the query.
func (r *Receiver) Register(e *echo.Echo) {
	e.POST("/v1/callbacks/:vendor/:token", r.receive)
	e.GET("/v1/callbacks/:vendor/:token", r.receive)
}

// notFound is the answer for every callback that does not prove itself by its URL or address:
// the same as for a path that does not exist, so that endpoints cannot be probed.
func notFound(c echo.Context) error {
	return httpapi.NewProblem(http.StatusNotFound, "there is no endpoint %s %s", c.Request().Method, httpapi.RedactedPath(c))
}

func (r *Receiver) receive(c echo.Context) error {
	vendor := c.Param("vendor")
	ep, ok := r.endpoints[vendor]
	if !ok || subtle.ConstantTimeCompare([]byte(c.Param("token")), []byte(ep.Token)) != 1 {
		r.received.WithLabelValues("unknown", "refused_token").Inc()
		return notFound(c)
	}
	count := func(outcome string) { r.received.WithLabelValues(vendor, outcome).Inc() }
	if len(ep.AllowCIDRs) > 0 {
		addr, err := netip.ParseAddr(c.RealIP())
		if err != nil || !allowed(ep.AllowCIDRs, addr.Unmap()) {
			count("refused_address")
			r.log.Warn("callback from an address outside the allow-list", "vendor", vendor, "remote", c.RealIP())
			return notFound(c)
		}
	}
	// Everything the headers can decide is decided before the body is read: a request refused
	// here costs us no bytes (the answer closes the connection rather than drain the body).
	if pre, ok := ep.Verifier.(vendors.CallbackPrechecker); ok {
		if err := pre.PrecheckCallback(c.Request().Header, r.now()); err != nil {
			count("refused_signature")
			r.log.Warn("callback refused by its headers", "vendor", vendor, "remote", c.RealIP(), "err", err)
			return httpapi.NewProblem(http.StatusUnauthorized, "%v", err)
		}
	}
	if cl := c.Request().ContentLength; cl > r.cfg.MaxBody {
		count("refused_size")
		return httpapi.NewProblem(http.StatusRequestEntityTooLarge, "the callback body is larger than %d bytes", r.cfg.MaxBody).WithLimit(r.cfg.MaxBody)
	}
	// One read, bounded, hashed on the way: the digest names the parked callback.
	digest := sha256.New()
	digest.Write([]byte(vendor + "\x00" + c.Request().URL.RawQuery + "\x00"))
	var body bytes.Buffer
	if cl := c.Request().ContentLength; cl > 0 {
		body.Grow(int(cl))
	}
	_, err := body.ReadFrom(io.TeeReader(http.MaxBytesReader(c.Response(), c.Request().Body, r.cfg.MaxBody), digest))
	var tooLarge *http.MaxBytesError
	var slow *httpapi.SlowBodyError
	switch {
	case errors.As(err, &tooLarge):
		count("refused_size")
		return httpapi.NewProblem(http.StatusRequestEntityTooLarge, "the callback body is larger than %d bytes", r.cfg.MaxBody).WithLimit(r.cfg.MaxBody)
	case errors.As(err, &slow):
		count("refused_slow")
		return httpapi.SlowBodyProblem(slow)
	case err != nil:
		count("refused_body")
		return httpapi.NewProblem(http.StatusBadRequest, "the callback body could not be read: %v", err)
	}
	signed := false
	if ep.Verifier != nil {
		nonce, err := ep.Verifier.VerifyCallback(c.Request(), r.publicURL(c), body.Bytes(), r.now())
		if err != nil {
			count("refused_signature")
			r.log.Warn("callback with a bad signature", "vendor", vendor, "remote", c.RealIP(), "err", err)
			return httpapi.NewProblem(http.StatusUnauthorized, "%v", err)
		}
		if nonce != "" {
			if err := r.rememberNonce(c.Request().Context(), vendor, nonce); err != nil {
				count("refused_replay")
				return err
			}
		}
		signed = true
	}
	// The ids are read from JSON; a form post or a GET query is read as a JSON object of its
	// fields. A callback whose ids cannot be read is not refused (the vendor would not send it
	// again, or would send it again unchanged): it is parked as unreadable, and its vendor's open
	// submissions are checked at once instead.
	fields, kind := asJSON(c.Request(), body.Bytes())
	ids, err := ep.Parser.CallbackIDs(fields)
	if err != nil || len(ids) == 0 {
		if err == nil {
			err = errors.New("no identifier")
		}
		r.log.Warn("a callback we cannot read: checking the vendor's open submissions now", "vendor", vendor,
			"remote", c.RealIP(), "method", c.Request().Method, "content_type", c.Request().Header.Get("Content-Type"),
			"query", truncate(c.Request().URL.RawQuery, 512), "body", truncate(body.String(), 512), "err", err)
		ids = nil
	}
	p := Parked{Vendor: vendor, IDs: ids, Remote: c.RealIP(), Signed: signed, Format: kind}
	if ids == nil {
		p.Unreadable = err.Error()
	}
	if err := r.park(c.Request().Context(), p, fields, body.Bytes(), hex.EncodeToString(digest.Sum(nil))); err != nil {
		count("unavailable")
		r.log.Error("could not park a callback", "vendor", vendor, "err", err)
		return httpapi.NewProblem(http.StatusServiceUnavailable, "the callback could not be recorded; please send it again").WithHeader("Retry-After", "30")
	}
	if ids == nil {
		count("accepted_unreadable")
		return c.JSON(http.StatusAccepted, map[string]any{"status": "accepted",
			"detail": fmt.Sprintf("no %s identifier could be read (%v); this vendor's open submissions are being checked instead", vendor, err)})
	}
	count("accepted")
	return c.JSON(http.StatusAccepted, map[string]any{"status": "accepted", "ids": ids})
}

// asJSON gives the callback's fields as JSON for the vendor's parser: a JSON body as it is, a
// form post or a GET query as an object of its fields (one value: a string; several: a list).
// kind says which it was.
func asJSON(req *http.Request, body []byte) (fields []byte, kind string) {
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	var values url.Values
	switch {
	case req.Method == http.MethodGet:
		values, kind = req.URL.Query(), "query"
	case ct == "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return body, "form"
		}
		values, kind = v, "form"
	case json.Valid(body):
		return body, "json"
	default:
		return body, "other"
	}
	obj := make(map[string]any, len(values))
	for k, vs := range values {
		if len(vs) == 1 {
			obj[k] = vs[0]
		} else {
			obj[k] = vs
		}
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return body, kind
	}
	return out, kind
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// publicURL is scheme and host as the vendor called us: the configured public URL, else what the
// request says.
func (r *Receiver) publicURL(c echo.Context) string {
	if r.cfg.PublicURL != "" {
		return r.cfg.PublicURL
	}
	return c.Scheme() + "://" + c.Request().Host
}

func allowed(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

func (r *Receiver) rememberNonce(ctx context.Context, vendor, nonce string) error {
	sum := sha256.Sum256([]byte(vendor + "\x00" + nonce))
	if _, err := r.nonces.Create(ctx, hex.EncodeToString(sum[:16]), []byte(vendor)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return httpapi.NewProblem(http.StatusConflict, "this callback's nonce was seen before: a replay")
		}
		return httpapi.NewProblem(http.StatusServiceUnavailable, "the callback could not be checked; please send it again").WithHeader("Retry-After", "30")
	}
	return nil
}

// Parked is a callback waiting to be resolved: in the stream for the record, with the body (or a
// key to it) for inspection.
type Parked struct {
	Vendor string   `json:"vendor"`
	IDs    []string `json:"ids"`
	// Unreadable says why no id could be read; the resolver then checks the vendor's open
	// submissions.
	Unreadable string `json:"unreadable,omitempty"`
	// Format is how the callback came: json, form, query or other.
	Format        string          `json:"format,omitempty"`
	ReceivedAt    time.Time       `json:"received_at"`
	Remote        string          `json:"remote"`
	Signed        bool            `json:"signed"`
	BodySHA256    string          `json:"body_sha256"`
	Body          json.RawMessage `json:"body,omitempty"`
	BodyObjectKey string          `json:"body_object_key,omitempty"`
	// RawBody is a body that is not JSON (kept for inspection), when small enough.
	RawBody []byte `json:"raw_body,omitempty"`
}

// park writes the callback to the stream. Its id is digest (SHA-256 of vendor, query and body),
// so a vendor repeating a callback within the duplicate window parks it once. fields is the JSON
// the ids were read from, kept inline; the body as it came is kept too when it is not that JSON.
func (r *Receiver) park(ctx context.Context, p Parked, fields, body []byte, digest string) error {
	vendor := p.Vendor
	p.ReceivedAt, p.BodySHA256 = r.now().UTC(), digest
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch {
	case len(fields) <= maxInlineBody && json.Valid(fields):
		p.Body = fields
		if p.Format == "form" || p.Format == "other" {
			if len(body) <= maxInlineBody {
				p.RawBody = body
			}
		}
	case len(body) <= maxInlineBody:
		p.RawBody = body
	default:
		p.BodyObjectKey = "callbacks/" + vendor + "/" + digest
		if _, err := r.cfg.Bus.Blobs().Put(ctx, p.BodyObjectKey, bytes.NewReader(body), map[string]string{"content-type": "application/octet-stream"}); err != nil {
			return err
		}
	}
	subject := "(unreadable)"
	if len(p.IDs) > 0 {
		subject = p.IDs[0]
	}
	data, _ := json.Marshal(p)
	ev := events.Event{
		SpecVersion: events.SpecVersion, ID: "callback-" + digest[:32], Source: "/callbacks/" + vendor,
		Type: "ingest.callback.received", Subject: subject, Time: p.ReceivedAt, DataContentType: "application/json", Data: data,
	}
	_, err := r.cfg.Bus.Publish(ctx, r.cfg.Bus.Names().CallbackSubject("received", vendor), ev)
	return err
}
