// Package config reads ingest's YAML configuration: ${ENV} expansion, strict keys (a misspelled key
// is an error naming it and its line), a default for everything, and validation that reports every
// problem at once.
package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration. The yaml tags are the documented keys.
type Config struct {
	// DataDir holds the embedded NATS server's storage and the runtime file the CLI reads.
	DataDir string  `yaml:"data_dir"`
	Log     Log     `yaml:"log"`
	NATS    NATS    `yaml:"nats"`
	HTTP    HTTP    `yaml:"http"`
	Sources Sources `yaml:"sources"`
	// Vendors are the vendors' sections, each decoded and checked by its vendor's package (see
	// vendors.Spec); a vendor without a section has its defaults.
	Vendors map[string]Section `yaml:"vendors"`
	// Routes send documents to vendors: the first whose match fits wins. A sender may name
	// vendors or a route instead. Not set (nil): the vendor catalog's default route; empty: no
	// routing, documents stay received unless their sender names a vendor.
	Routes    []Route   `yaml:"routes"`
	Dispatch  Dispatch  `yaml:"dispatch"`
	Callbacks Callbacks `yaml:"callbacks"`
	// Index is the per-instance list index behind GET /v1/documents.
	Index Index `yaml:"index"`
	// Subscriptions are outbound webhooks: events delivered by HTTP to receivers that do not
	// speak NATS (see the webhooks package).
	Subscriptions []Subscription `yaml:"subscriptions"`
	// ShutdownTimeout bounds a graceful stop: in-flight uploads get this long to finish.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// MemoryLimit is the Go runtime's soft memory limit for `ingest serve` (GOMEMLIMIT, which
	// wins when set): the garbage collector works harder as the process nears it, and nothing is
	// refused when it is passed. 0: no limit (Go's default: the heap may grow to twice what is live).
	MemoryLimit ByteSize `yaml:"memory_limit"`
	// HeartbeatTTL: how long an instance counts as alive after its last heartbeat, and so how
	// soon another instance takes over the submissions and Idempotency-Key claims of one that
	// died.
	HeartbeatTTL Duration `yaml:"heartbeat_ttl"`
	// Origin is where the configuration was read from (nil when built in code).
	Origin *Origin `yaml:"-"`
}

// Log configures log/slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // auto (text on a terminal, JSON otherwise), text, json
}

// NATS says where events, document bytes and state live.
type NATS struct {
	// URL of an external server or cluster (comma-separated). Empty starts an embedded server.
	URL             string   `yaml:"url"`
	CredentialsFile string   `yaml:"credentials_file"`
	NKeySeedFile    string   `yaml:"nkey_seed_file"`
	User            string   `yaml:"user"`
	Password        string   `yaml:"password"`
	Token           string   `yaml:"token"`
	TLS             TLS      `yaml:"tls"`
	Embedded        Embedded `yaml:"embedded"`
	// Namespace names the stream (upper-cased), the subject root and the buckets, so that several
	// deployments can share one NATS account. Default "ingest": stream INGEST over ingest.>.
	Namespace string `yaml:"namespace"`
	Stream    Stream `yaml:"stream"`
	// DocumentsMaxBytes caps the Object Store bucket that holds document bytes (0 = no cap).
	DocumentsMaxBytes ByteSize `yaml:"documents_max_bytes"`
}

// TLS for an external NATS connection.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Embedded configures the in-process nats-server used when NATS.URL is empty.
type Embedded struct {
	// Listen is where other programs (ingest tail, subscribers) reach the embedded server. When the
	// port is taken, a free port is used instead and logged.
	Listen    string   `yaml:"listen"`
	MaxStore  ByteSize `yaml:"max_store"`
	MaxMemory ByteSize `yaml:"max_memory"`
}

// Stream configures the event stream.
type Stream struct {
	MaxAge          Duration `yaml:"max_age"`
	DuplicateWindow Duration `yaml:"duplicate_window"`
	Replicas        int      `yaml:"replicas"`
}

// HTTP configures the one HTTP server (drop endpoint, document API, callbacks, health, metrics).
type HTTP struct {
	Listen string `yaml:"listen"`
	// APIKeys are accepted as "Authorization: Bearer <key>". When empty, a key is generated once
	// and kept in data_dir/api-key, so that a fresh install is never open to anyone.
	APIKeys           []string `yaml:"api_keys"`
	MaxDocumentBytes  ByteSize `yaml:"max_document_bytes"`
	MaxRequestBytes   ByteSize `yaml:"max_request_bytes"`
	MaxFiles          int      `yaml:"max_files"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	// MinBodyRate and BodyRateWindow end a request body that trickles: in every window at least
	// MinBodyRate × window bytes must arrive, else the request is answered 408 and its
	// connection closed. A large upload on a slow line still succeeds, however long it takes.
	MinBodyRate    ByteSize `yaml:"min_body_rate"` // bytes per second
	BodyRateWindow Duration `yaml:"body_rate_window"`
	// MaxRequestsPerAddress bounds the requests with a body (uploads, callbacks) one client
	// address may have in flight; more get 429 with Retry-After. 0: no bound.
	MaxRequestsPerAddress int `yaml:"max_requests_per_address"`
	// IdempotencyTTL is how long an Idempotency-Key is remembered.
	IdempotencyTTL Duration `yaml:"idempotency_ttl"`
	// Profiling serves the Go runtime's profiles at /debug/pprof/, behind the API key.
	Profiling bool `yaml:"profiling"`
}

// Sources lists the inputs.
type Sources struct {
	HTTPDrop HTTPDrop       `yaml:"http_drop"`
	IMAP     []IMAPSource   `yaml:"imap"`
	WebDAV   []WebDAVSource `yaml:"webdav"`
}

// HTTPDrop is the POST /v1/documents source.
type HTTPDrop struct {
	Enabled bool   `yaml:"enabled"`
	Name    string `yaml:"name"`
}

// Route is one routing rule.
type Route struct {
	Name    string   `yaml:"name"`
	Match   Match    `yaml:"match"`
	Vendors []string `yaml:"vendors"`
}

// Match selects documents; empty fields match anything.
type Match struct {
	SourceKind  string `yaml:"source_kind"`  // http, imap, webdav
	SourceName  string `yaml:"source_name"`  // the source's configured name
	Filename    string `yaml:"filename"`     // glob, case-insensitive: "*.pdf"
	ContentType string `yaml:"content_type"` // glob on the sniffed type: "image/*"
}

// Callbacks configures the endpoints vendors call when they are done.
type Callbacks struct {
	// PublicURL is this service as vendors reach it (https://ingest.example.com): the URLs
	// printed for vendor consoles, and what signed callbacks are checked against.
	PublicURL    string   `yaml:"public_url"`
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// ParkWindow: a callback for a document not known yet is kept trying this long.
	ParkWindow Duration `yaml:"park_window"`
}

// Index configures the document list index: a local SQLite copy of the document events, rebuilt
// from the stream whenever it is missing or stale, one per instance.
type Index struct {
	Enabled bool `yaml:"enabled"`
	// Path of the database file; empty: data_dir/index/documents.db.
	Path string `yaml:"path"`
	// CacheSize caps SQLite's page cache per connection (the index uses at most 4).
	CacheSize ByteSize `yaml:"cache_size"`
}

// Dispatch tunes the dispatcher and the poller.
type Dispatch struct {
	Workers      int      `yaml:"workers"`       // documents dispatched at once
	PollWorkers  int      `yaml:"poll_workers"`  // documents checked at once
	MaxAttempts  int      `yaml:"max_attempts"`  // submission attempts per vendor before failing
	RetryInitial Duration `yaml:"retry_initial"` // first retry delay, doubling
	RetryMax     Duration `yaml:"retry_max"`
	// Lease: how long an unfinished submission belongs to its worker, even while the worker's
	// instance is alive, before it is presumed stuck and reconciled with the vendor.
	Lease Duration `yaml:"lease"`
	// InDoubtTimeout: how long a submission the vendor cannot tell us about is asked about again
	// before it fails for an operator to decide.
	InDoubtTimeout Duration `yaml:"in_doubt_timeout"`
	// YieldToIntake: while documents are being received and the cores are busy, one document
	// at a time is dispatched and checked, so that on a small machine dispatch does not take
	// the cores uploads need (never for more than 10 s of a document's wait; events.Priority).
	YieldToIntake bool `yaml:"yield_to_intake"`
}

// Default returns the configuration used for every key the file leaves out.
func Default() Config {
	return Config{
		DataDir:         "./data",
		Log:             Log{Level: "info", Format: "auto"},
		ShutdownTimeout: Duration(8 * time.Second),
		MemoryLimit:     ByteSize(100 << 20),
		HeartbeatTTL:    Duration(10 * time.Second),
		NATS: NATS{
			Embedded:  Embedded{Listen: "127.0.0.1:4222", MaxStore: 10 << 30, MaxMemory: 256 << 20},
			Namespace: "ingest",
			Stream: Stream{
				MaxAge:          Duration(30 * 24 * time.Hour),
				DuplicateWindow: Duration(2 * time.Minute),
				Replicas:        1,
			},
		},
		HTTP: HTTP{
			Listen:                "127.0.0.1:8080",
			APIKeys:               []string{},
			MaxDocumentBytes:      64 << 20,
			MaxRequestBytes:       256 << 20,
			MaxFiles:              20,
			ReadHeaderTimeout:     Duration(10 * time.Second),
			IdleTimeout:           Duration(2 * time.Minute),
			MinBodyRate:           1 << 10,
			BodyRateWindow:        Duration(20 * time.Second),
			MaxRequestsPerAddress: 64,
			IdempotencyTTL:        Duration(24 * time.Hour),
			Profiling:             true,
		},
		Sources: Sources{HTTPDrop: HTTPDrop{Enabled: true, Name: "api"}, IMAP: []IMAPSource{}, WebDAV: []WebDAVSource{}},
		Dispatch: Dispatch{
			Workers: 8, PollWorkers: 16, MaxAttempts: 10, YieldToIntake: true,
			RetryInitial: Duration(2 * time.Second), RetryMax: Duration(5 * time.Minute), Lease: Duration(10 * time.Minute),
			InDoubtTimeout: Duration(time.Hour),
		},
		Callbacks:     Callbacks{MaxBodyBytes: 10 << 20, ParkWindow: Duration(10 * time.Minute)},
		Index:         Index{Enabled: true, CacheSize: 8 << 20},
		Subscriptions: []Subscription{},
	}
}

// Validate reports every problem of the keys this package owns, each under its key, changing
// nothing. enabled are the enabled vendors' names (routes and sources must name those); the
// vendors' own sections are their packages' to check.
func (c *Config) Validate(enabled []string, bad Report) {
	if strings.TrimSpace(c.DataDir) == "" {
		bad("data_dir", "must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "text", "json":
	default:
		bad("log.format", "%q is not one of auto, text, json", c.Log.Format)
	}
	if c.HeartbeatTTL.Std() < 2*time.Second || c.HeartbeatTTL.Std() > 5*time.Minute {
		bad("heartbeat_ttl", "must be between 2s and 5m")
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive")
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < 32<<20 {
		bad("memory_limit", "%s is too little for ingest and its embedded NATS (at least 32MiB, or 0 for no limit)", c.MemoryLimit)
	}

	n := &c.NATS
	if n.URL != "" {
		for _, u := range strings.Split(n.URL, ",") {
			pu, err := url.Parse(strings.TrimSpace(u))
			if err != nil || pu.Host == "" {
				bad("nats.url", "%q is not a URL like nats://host:4222", u)
				continue
			}
			switch pu.Scheme {
			case "nats", "tls", "ws", "wss":
			default:
				bad("nats.url", "%q: scheme must be nats, tls, ws or wss", u)
			}
		}
	} else if err := checkHostPort(n.Embedded.Listen); err != nil {
		bad("nats.embedded.listen", "%v", err)
	}
	if n.User != "" && n.Password == "" {
		bad("nats.password", "is required when nats.user is set (use ${NATS_PASSWORD} to read it from the environment)")
	}
	if n.Password != "" && n.User == "" {
		bad("nats.user", "is required when nats.password is set")
	}
	authModes := 0
	for _, set := range []bool{n.CredentialsFile != "", n.NKeySeedFile != "", n.User != "", n.Token != ""} {
		if set {
			authModes++
		}
	}
	if authModes > 1 {
		bad("nats", "set only one of credentials_file, nkey_seed_file, user/password, token")
	}
	for key, path := range map[string]string{
		"nats.credentials_file": n.CredentialsFile, "nats.nkey_seed_file": n.NKeySeedFile,
		"nats.tls.ca_file": n.TLS.CAFile, "nats.tls.cert_file": n.TLS.CertFile, "nats.tls.key_file": n.TLS.KeyFile,
	} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			bad(key, "cannot read %q: %v", path, err)
		}
	}
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		bad("nats.tls", "cert_file and key_file go together")
	}
	if !validNamespace(n.Namespace) {
		bad("nats.namespace", "%q must be 1-32 characters of a-z, 0-9, _ or -, starting with a letter", n.Namespace)
	}
	if n.Stream.DuplicateWindow.Std() < 2*time.Minute {
		bad("nats.stream.duplicate_window", "must be at least 2m (a retried publish must still be recognised)")
	}
	if n.Stream.MaxAge.Std() < n.Stream.DuplicateWindow.Std() {
		bad("nats.stream.max_age", "must be at least the duplicate window (%s)", n.Stream.DuplicateWindow)
	}
	if n.Stream.Replicas < 1 || n.Stream.Replicas > 5 {
		bad("nats.stream.replicas", "must be between 1 and 5, not %d", n.Stream.Replicas)
	}
	if n.Embedded.MaxStore < 16<<20 {
		bad("nats.embedded.max_store", "must be at least 16MiB")
	}
	if n.Embedded.MaxMemory < 16<<20 {
		bad("nats.embedded.max_memory", "must be at least 16MiB")
	}

	h := &c.HTTP
	if err := checkHostPort(h.Listen); err != nil {
		bad("http.listen", "%v", err)
	}
	for i, k := range h.APIKeys {
		if weak := WeakToken(k); weak != "" {
			bad(fmt.Sprintf("http.api_keys[%d]", i), "%s", weak)
		}
	}
	if h.MaxDocumentBytes <= 0 {
		bad("http.max_document_bytes", "must be positive")
	}
	if h.MaxRequestBytes < h.MaxDocumentBytes {
		bad("http.max_request_bytes", "must be at least http.max_document_bytes (%s)", h.MaxDocumentBytes)
	}
	if h.MaxFiles < 1 || h.MaxFiles > 1000 {
		bad("http.max_files", "must be between 1 and 1000, not %d", h.MaxFiles)
	}
	if h.ReadHeaderTimeout <= 0 {
		bad("http.read_header_timeout", "must be positive")
	}
	if h.MinBodyRate < 0 {
		bad("http.min_body_rate", "must not be negative (0 lets a body take as long as it likes)")
	}
	if h.BodyRateWindow.Std() < time.Second {
		bad("http.body_rate_window", "must be at least 1s")
	}
	if h.MaxRequestsPerAddress < 0 {
		bad("http.max_requests_per_address", "must not be negative (0: no bound)")
	}
	if h.IdempotencyTTL.Std() < time.Minute {
		bad("http.idempotency_ttl", "must be at least 1m")
	}
	if c.Sources.HTTPDrop.Enabled && !validNamespace(c.Sources.HTTPDrop.Name) {
		bad("sources.http_drop.name", "%q must be 1-32 characters of a-z, 0-9, _ or -, starting with a letter", c.Sources.HTTPDrop.Name)
	}
	c.validateSources(enabled, bad)
	seen := map[string]bool{}
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		if !validNamespace(r.Name) {
			bad(key+".name", "%q must be 1-32 characters of a-z, 0-9, _ or -, starting with a letter", r.Name)
		}
		if seen[r.Name] {
			bad(key+".name", "route %q is defined twice", r.Name)
		}
		seen[r.Name] = true
		for field, g := range map[string]string{"filename": r.Match.Filename, "content_type": r.Match.ContentType} {
			if _, err := path.Match(g, ""); err != nil {
				bad(key+".match."+field, "%q is not a valid pattern", g)
			}
		}
		if len(r.Vendors) == 0 {
			bad(key+".vendors", "names no vendor")
		}
		for _, v := range r.Vendors {
			if !slices.Contains(enabled, v) {
				bad(key+".vendors", "vendor %q is not enabled (enabled: %s)", v, strings.Join(enabled, ", "))
			}
		}
	}
	if u := c.Callbacks.PublicURL; u != "" {
		if pu, err := url.Parse(u); err != nil || pu.Host == "" || (pu.Scheme != "https" && pu.Scheme != "http") || (pu.Path != "" && pu.Path != "/") {
			bad("callbacks.public_url", "%q should be scheme and host only, like https://ingest.example.com", u)
		}
	}
	if c.Callbacks.MaxBodyBytes < 1024 {
		bad("callbacks.max_body_bytes", "must be at least 1KiB")
	}
	if c.Callbacks.ParkWindow.Std() < time.Second {
		bad("callbacks.park_window", "must be at least 1s")
	}
	d := c.Dispatch
	if d.Workers < 1 || d.PollWorkers < 1 {
		bad("dispatch", "workers and poll_workers must be at least 1")
	}
	if d.MaxAttempts < 1 {
		bad("dispatch.max_attempts", "must be at least 1")
	}
	if d.RetryInitial <= 0 || d.RetryMax < d.RetryInitial {
		bad("dispatch", "retry_initial must be positive and at most retry_max")
	}
	if d.Lease.Std() < time.Minute {
		bad("dispatch.lease", "must be at least 1m (longer than a vendor upload takes)")
	}
	if d.InDoubtTimeout.Std() < time.Minute {
		bad("dispatch.in_doubt_timeout", "must be at least 1m")
	}
	if c.Index.Enabled {
		if fi, err := os.Stat(c.Index.Path); c.Index.Path != "" && err == nil && fi.IsDir() {
			bad("index.path", "%q is a directory; name the database file (e.g. %s)", c.Index.Path, path.Join(c.Index.Path, "documents.db"))
		}
		if c.Index.CacheSize < 1<<20 || c.Index.CacheSize > 4<<30 {
			bad("index.cache_size", "must be between 1MiB and 4GiB")
		}
	}
	c.validateSubscriptions(bad)
}

func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (example: 127.0.0.1:8080)", addr)
	}
	if port == "" {
		return fmt.Errorf("%q has no port", addr)
	}
	// What net.Listen would refuse only once everything else has started.
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: the port must be a number from 0 to 65535", addr)
	}
	return nil
}

func validNamespace(s string) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
