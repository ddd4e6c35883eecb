package webdav

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/intake"
)

// Post-actions: what happens to a file once its document is announced.
const (
	AfterMove   = "move"   // into MoveTo (the default)
	AfterDelete = "delete" // DELETE it
	AfterKeep   = "keep"   // leave it; its (path, ETag) is remembered so it is not taken again
)

// Defaults.
const (
	DefaultPollInterval     = 30 * time.Second
	DefaultMinAge           = 10 * time.Second
	DefaultMoveTo           = "processed/"
	DefaultMaxDocumentBytes = 64 << 20
	DefaultMaxListingBytes  = 64 << 20
	DefaultRequestTimeout   = time.Minute
	DefaultEmptyGrace       = 10 * time.Minute
	DefaultConcurrency      = 4
)

// DefaultSkipPatterns are the names of files still being written by common clients: partial
// downloads and uploads, Office lock files, editors' temporaries and dot-files.
func DefaultSkipPatterns() []string {
	return []string{"*.part", "~$*", "*.tmp", ".*", "*.crdownload"}
}

// Config configures a Watcher of one WebDAV folder.
type Config struct {
	// Name is the source's name in events (kind "webdav") and in its bookkeeping keys: a-z, 0-9,
	// _ and -.
	Name string
	// URL is the watched collection, e.g. https://cloud.example.com/remote.php/dav/files/scan/inbox/.
	URL string
	// Username and Password give Basic auth; BearerToken gives "Authorization: Bearer". At most
	// one of the two.
	Username, Password string
	BearerToken        string
	// Recursive also watches subfolders (walked one PROPFIND Depth 1 at a time).
	Recursive bool
	// Include and Exclude are globs on the path relative to URL ("*.pdf", "scans/**/*.tif"). A
	// pattern without "/" is matched against the file name alone; "**" spans folders. Empty
	// Include takes everything; Exclude wins. A folder matching Exclude is not entered.
	Include, Exclude []string
	// PollInterval is the time between polls (default 30 s).
	PollInterval time.Duration
	// MinAge is how old (by getlastmodified) a file must be before it is taken (default 10 s).
	MinAge time.Duration
	// Vendors and Route are passed on to dispatch like an upload's vendor and route fields.
	Vendors []string
	Route   string
	// After is the post-action: "move" (default), "delete" or "keep".
	After string
	// MoveTo is where "move" puts files, relative to URL (default "processed/"); the subfolder
	// path of a file is kept. It is never watched.
	MoveTo string
	// MoveFailed, when set, is where rejected files go (relative to URL, never watched); empty
	// leaves them in place (they are not rejected again).
	MoveFailed string
	// ReingestOnChange ingests a file that stayed in the folder (After "keep") again when its
	// ETag changes. Off by default: a kept file that is edited is left alone.
	ReingestOnChange bool
	// SkipPatterns are globs on file and folder names that are never taken. Nil means
	// DefaultSkipPatterns; an empty, non-nil slice skips nothing.
	SkipPatterns []string
	// MaxDocumentBytes bounds one document (default 64 MiB); larger files are rejected.
	MaxDocumentBytes int64
	// TLSConfig is used for https URLs when HTTPClient is nil.
	TLSConfig *tls.Config
	// HTTPClient replaces the default client (tests, proxies). Auth headers are still added.
	HTTPClient *http.Client
	// MaxListingBytes bounds one PROPFIND answer (default 64 MiB, about 130,000 entries).
	MaxListingBytes int64
	// RequestTimeout bounds each PROPFIND, MOVE, MKCOL and DELETE, the wait for a GET's headers
	// and any stall of a GET body (default 1 min). A GET that keeps flowing is not cut off.
	RequestTimeout time.Duration
	// EmptyGrace is how long a zero-byte file may stay empty before it is rejected (default
	// 10 min).
	EmptyGrace time.Duration
	// Concurrency is how many files are taken at once (default 4).
	Concurrency int

	Bus        *events.Bus
	Intake     *intake.Intake
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (tests); time.Now by default.
	Now func() time.Time
}

// Check reports every problem of cfg a person can fix in the configuration, under the key of
// sources.webdav[i] it concerns. The service runs it for `ingest config check` and before it starts
// anything; New runs it again.
func (cfg Config) Check(report config.Report) {
	cfg.normalize(report)
}

// withDefaults validates cfg and fills in its defaults. Every problem is worded for the person
// who wrote the configuration.
func (cfg Config) withDefaults() (Config, *url.URL, error) {
	if cfg.Bus == nil || cfg.Intake == nil {
		return cfg, nil, errors.New("webdav: Bus and Intake are required")
	}
	var problems []config.Problem
	cfg, root := cfg.normalize(config.Collect(&problems))
	if len(problems) > 0 {
		words := make([]string, len(problems))
		for i, p := range problems {
			words[i] = p.String()
		}
		return cfg, nil, fmt.Errorf("webdav source %q: %s", cfg.Name, strings.Join(words, "; "))
	}
	return cfg, root, nil
}

// normalize reports what is wrong with cfg and returns it with its defaults, and its URL as a
// collection (with its trailing slash: relative resolution and prefix checks work).
func (cfg Config) normalize(report config.Report) (Config, *url.URL) {
	bad := func(key string) func(format string, args ...any) {
		return func(format string, args ...any) { report(key, format, args...) }
	}
	if !events.ValidToken(cfg.Name) {
		bad("name")("%q must be 1-64 characters of a-z, 0-9, _ and -", cfg.Name)
	}
	root, err := url.Parse(cfg.URL)
	switch {
	case cfg.URL == "":
		bad("url")("is required")
	case err != nil:
		bad("url")("%q is not a URL: %v", cfg.URL, err)
	case root.Scheme != "http" && root.Scheme != "https" || root.Host == "":
		bad("url")("%q must be an http:// or https:// URL", cfg.URL)
	case root.User != nil:
		bad("url")("%q must not carry credentials; use username and password", redact(root))
	}
	if err != nil || root == nil {
		root = &url.URL{}
	}
	if cfg.BearerToken != "" && (cfg.Username != "" || cfg.Password != "") {
		bad("")("set either username/password or bearer_token, not both")
	}
	if cfg.After == "" {
		cfg.After = AfterMove
	}
	switch cfg.After {
	case AfterMove:
		if cfg.MoveTo == "" {
			cfg.MoveTo = DefaultMoveTo
		}
	case AfterDelete, AfterKeep:
	default:
		bad("after")("%q must be move, delete or keep", cfg.After)
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"move_to", &cfg.MoveTo}, {"move_failed", &cfg.MoveFailed}} {
		if *f.v == "" {
			continue
		}
		clean, err := cleanRel(*f.v)
		if err != nil {
			key := f.name
			if key == "move_to" {
				key = "after" // written as after: {move: …}
			}
			bad(key)("%q %v", *f.v, err)
			continue
		}
		*f.v = clean
	}
	if cfg.After == AfterMove && cfg.MoveTo == "" {
		bad("after")("move must name a subfolder")
	}
	if cfg.SkipPatterns == nil {
		cfg.SkipPatterns = DefaultSkipPatterns()
	}
	for _, set := range []struct {
		name     string
		patterns []string
	}{{"include", cfg.Include}, {"exclude", cfg.Exclude}, {"skip_patterns", cfg.SkipPatterns}} {
		for _, p := range set.patterns {
			if err := validGlob(p); err != nil {
				bad(set.name)("pattern %q: %v", p, err)
			}
		}
	}
	if cfg.Route != "" && !events.ValidToken(cfg.Route) {
		bad("route")("%q must be 1-64 characters of a-z, 0-9, _ and -", cfg.Route)
	}
	for _, v := range cfg.Vendors {
		if !events.ValidToken(v) {
			bad("vendor")("%q must be 1-64 characters of a-z, 0-9, _ and -", v)
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"poll_interval", &cfg.PollInterval, DefaultPollInterval},
		{"min_age", &cfg.MinAge, DefaultMinAge},
		{"request_timeout", &cfg.RequestTimeout, DefaultRequestTimeout},
		{"empty_grace", &cfg.EmptyGrace, DefaultEmptyGrace},
	} {
		if *d.v < 0 {
			bad(d.name)("must not be negative")
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxDocumentBytes <= 0 {
		cfg.MaxDocumentBytes = DefaultMaxDocumentBytes
	}
	if cfg.MaxListingBytes <= 0 {
		cfg.MaxListingBytes = DefaultMaxListingBytes
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// The watched URL is a collection: with its trailing slash, relative resolution and
	// prefix checks work.
	if !strings.HasSuffix(root.Path, "/") {
		root.Path += "/"
		if root.RawPath != "" {
			root.RawPath += "/"
		}
	}
	root.RawQuery, root.Fragment = "", ""
	return cfg, root
}

// cleanRel checks a configured subfolder (MoveTo, MoveFailed) and returns it without leading or
// trailing slashes.
func cleanRel(p string) (string, error) {
	if strings.HasPrefix(p, "/") || strings.Contains(p, "://") {
		return "", errors.New("must be a subfolder relative to url")
	}
	for _, seg := range strings.Split(strings.Trim(p, "/"), "/") {
		if seg == ".." || seg == "." {
			return "", errors.New(`must not contain "." or ".." segments`)
		}
	}
	clean := path.Clean("/" + p)[1:]
	if clean == "" {
		return "", errors.New("must name a subfolder, not the watched folder itself")
	}
	return clean, nil
}

// redact returns u without credentials, for messages.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
