// Package console is the web console at /ui/: server-rendered pages (html/template, assets
// embedded, a little plain JavaScript and no build step) over what the service already knows —
// the document list index, the document states and events, the source leases and the vendors'
// settings. A person signs in with an API key and gets a session cookie; sessions live in a NATS
// Key-Value bucket, so they survive a restart and work on every instance. Pages follow the event
// stream through server-sent events.
package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/docindex"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the console.
type Config struct {
	Bus *events.Bus
	// Index answers the lists and counts. Nil: the pages say the index is off and show no lists.
	Index *docindex.Index
	// APIKeys are the keys a person may sign in with (http.api_keys, or the generated key).
	APIKeys []string
	// Enrich adds the dispatcher's attempts and last errors to a document's state (nil: none).
	Enrich func(ctx context.Context, doc *events.Document)
	// Retry starts a new attempt of a failed document at one vendor. Nil: no Retry buttons.
	Retry func(ctx context.Context, id, vendor string) error
	// Sources are the configured inputs, Vendors the enabled vendors, as the pages show them.
	Sources []Source
	Vendors []Vendor
	// Self names this instance (the liveness id that lease holders are written with).
	Self string
	// SessionTTL is how long a sign-in lasts (default 12 h). Every instance of a deployment must
	// use the same: it is the sessions bucket's age limit.
	SessionTTL time.Duration
	// StatusEvery is how often the lease holder of a mailbox or folder writes how it is doing,
	// for the sources page of every instance (default 10 s).
	StatusEvery time.Duration
	// Now is the clock (tests move it past a session's end); default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Source is one configured input.
type Source struct {
	Kind string // http, imap, webdav
	Name string
	// Where says what it watches, without credentials: user@host/mailbox, a folder URL.
	Where string
	// Lease is the key in the leases bucket of the instance that watches it; "" for the HTTP
	// drop, which every instance serves.
	Lease string
	// Health is this instance's watcher's state (nil error: working), nil when it has none.
	// Only the lease holder's watcher runs, so only its health means anything.
	Health func() error
	// LastPass is when this instance's watcher last looked through it to the end (zero: not
	// yet); nil when it has none.
	LastPass func() time.Time
}

// Vendor is one enabled vendor and its settings.
type Vendor struct {
	Name    string
	Sandbox bool
	// BaseURL is where requests go: the vendor's API, or the in-process simulator in sandbox.
	BaseURL     string
	RateLimit   float64 // requests per second; 0: unlimited
	Concurrency int     // requests in flight; 0: unlimited
	Timeout     time.Duration
	PollInitial time.Duration
	PollMax     time.Duration
	Deadline    time.Duration
	Callbacks   bool // the vendor calls back (a callback token is set)
}

// DefaultSessionTTL is how long a sign-in lasts.
const DefaultSessionTTL = 12 * time.Hour

// Console serves /ui/.
type Console struct {
	cfg      Config
	bus      *events.Bus
	log      *slog.Logger
	sessions jetstream.KeyValue
	status   jetstream.KeyValue // the sources' states (nil without mailboxes or folders)
	keys     httpapi.KeyDigests
	guesses  *guesses // wrong keys per address at sign-in
	pages    map[string]*template.Template
	static   fs.FS

	// stopping ends the event streams (they would otherwise hold the HTTP server's shutdown
	// for its whole drain time).
	stopOnce sync.Once
	stopping chan struct{}
}

// New provisions the sessions bucket and parses the pages.
func New(ctx context.Context, cfg Config) (*Console, error) {
	if cfg.Bus == nil || len(cfg.APIKeys) == 0 {
		return nil, errors.New("console: a Bus and API keys are required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.StatusEvery <= 0 {
		cfg.StatusEvery = DefaultStatusEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// The bucket's age limit ends sessions nobody signed out of, on NATS 2.9 too (no per-key
	// TTL there); each session also carries its end, which is what is checked.
	kv, err := cfg.Bus.KeyValue(ctx, events.BucketSpec{
		Purpose: "console-sessions", Description: "web console sign-in sessions", TTL: cfg.SessionTTL,
	})
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, bus: cfg.Bus, log: cfg.Logger.With("component", "console"), sessions: kv,
		stopping: make(chan struct{})}
	if err := c.openStatus(ctx); err != nil {
		return nil, err
	}
	c.keys, c.guesses = httpapi.Digests(cfg.APIKeys), newGuesses(cfg.Now)
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if c.static, err = fs.Sub(staticFS, "static"); err != nil {
		return nil, err
	}
	return c, nil
}

// Run writes the state of the sources this instance watches every StatusEvery until ctx ends,
// then ends the event streams, so that the HTTP server's shutdown does not wait on browsers that
// keep them open.
func (c *Console) Run(ctx context.Context) error {
	defer c.Close()
	t := time.NewTicker(c.cfg.StatusEvery)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, c.cfg.StatusEvery)
		c.reportSources(rctx)
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close ends the event streams now and refuses new ones.
func (c *Console) Close() { c.stopOnce.Do(func() { close(c.stopping) }) }

// Register adds the console's routes.
func (c *Console) Register(e *echo.Echo) {
	e.GET("/ui", func(ec echo.Context) error { return ec.Redirect(http.StatusMovedPermanently, "/ui/") }, c.secure)
	g := e.Group("/ui", c.secure)
	g.GET("/login", c.loginPage)
	g.POST("/login", c.login)
	g.GET("/static/*", c.asset)
	page := func(h func(echo.Context, *session) error) echo.HandlerFunc { return c.withSession(h, true) }
	other := func(h func(echo.Context, *session) error) echo.HandlerFunc { return c.withSession(h, false) }
	g.GET("/", page(c.overview))
	g.GET("/documents", page(c.documents))
	g.GET("/documents/:id", page(c.document))
	g.GET("/documents/:id/content", page(c.content))
	g.GET("/documents/:id/artifacts/:vendor/:n", page(c.artifact))
	g.POST("/documents/:id/retry", other(c.csrf(c.retry)))
	g.GET("/sources", page(c.sourcesPage))
	g.GET("/vendors", page(c.vendorsPage))
	g.GET("/events", other(c.events))
	g.POST("/logout", other(c.csrf(c.logout)))
	// Whatever else is asked under /ui needs a session too: a signed-out visitor learns nothing
	// about which pages exist.
	g.Any("/*", other(c.csrf(func(ec echo.Context, _ *session) error {
		return c.render(ec, http.StatusNotFound, "error", &view{Title: "Not found", Error: "There is no such page."})
	})))
}

// secure sets the headers every console answer carries: no script but the console's own file,
// no framing by other sites, no caching of what a session showed.
func (c *Console) secure(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		h := ec.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
			"frame-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		return next(ec)
	}
}

func (c *Console) asset(ec echo.Context) error {
	name := ec.Param("*")
	if st, err := fs.Stat(c.static, name); !fs.ValidPath(name) || err != nil || st.IsDir() {
		return c.render(ec, http.StatusNotFound, "error", &view{Title: "Not found", Error: "There is no such file."})
	}
	// Assets are the same for everyone and hold nothing about the deployment: the sign-in page
	// needs them before there is a session. They may be cached; pages may not.
	ec.Response().Header().Set("Cache-Control", "public, max-age=300")
	http.ServeFileFS(ec.Response(), ec.Request(), c.static, name)
	return nil
}

// problem answers a request that is not a page (a form post, the event stream) the way the API
// does: problem+json.
func problem(status int, format string, args ...any) error {
	return httpapi.NewProblem(status, format, args...)
}
