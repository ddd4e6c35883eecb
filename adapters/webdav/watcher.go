package webdav

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/intake"
)

// tidyEvery is how often the seen bucket's purge markers are cleaned up.
const tidyEvery = time.Hour

// Watcher polls one WebDAV folder. Run it once at a time (the service runs it under a lease, so
// one instance in a cluster watches each folder).
type Watcher struct {
	cfg    Config
	root   *url.URL
	folder string // the watched URL, for metadata and logs
	dav    *client
	bus    *events.Bus
	in     *intake.Intake
	seen   *seenStore
	filter filter
	log    *slog.Logger
	m      *metrics
	now    func() time.Time

	// Poll state, touched only by the goroutine that runs pollOnce.
	tree           map[string]*dirState
	files          map[string]*fileObs
	nonPropagating bool
	polls          int
	lastTidy       time.Time
	lastReport     string

	dirsMu sync.Mutex      // held while creating folders
	dirsOK map[string]bool // collections known to exist (post-action targets)

	healthMu sync.Mutex
	health   error
	lastPass time.Time // when the last poll ended, whatever its outcome

	hooks testHooks
}

// testHooks let tests stop a watcher at the points a crash would.
type testHooks struct {
	afterAnnounce func(rel string) error // between the PubAck and the bookkeeping
}

// New checks cfg and provisions the bucket that remembers ingested files. It does not contact the
// WebDAV server: a server that is down at start is retried by Run.
func New(ctx context.Context, cfg Config) (*Watcher, error) {
	cfg, root, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	seen, err := openSeen(ctx, cfg.Bus, cfg.Name)
	if err != nil {
		return nil, err
	}
	var private []string
	for _, p := range []string{cfg.MoveTo, cfg.MoveFailed} {
		if p != "" {
			private = append(private, p)
		}
	}
	w := &Watcher{
		cfg:    cfg,
		root:   root,
		folder: redact(root),
		bus:    cfg.Bus,
		in:     cfg.Intake,
		seen:   seen,
		filter: filter{include: cfg.Include, exclude: cfg.Exclude, skip: cfg.SkipPatterns, recursive: cfg.Recursive, private: private},
		log:    cfg.Logger.With("source", events.SourceWebDAV+"/"+cfg.Name),
		m:      m,
		now:    cfg.Now,
		tree:   map[string]*dirState{},
		files:  map[string]*fileObs{},
		dirsOK: map[string]bool{},
	}
	w.dav = &client{
		hc: newHTTPClient(cfg), root: root, auth: authFunc(cfg), timeout: cfg.RequestTimeout,
		maxListing: cfg.MaxListingBytes,
		onRequest:  func(method string) { m.requests.WithLabelValues(cfg.Name, method).Inc() },
	}
	return w, nil
}

// Run polls the folder every PollInterval until ctx ends. A failing poll is logged when the
// failure starts or changes and when polling works again, and retried at the next interval.
func (w *Watcher) Run(ctx context.Context) error {
	w.log.InfoContext(ctx, "watching WebDAV folder", "url", w.folder, "interval", w.cfg.PollInterval,
		"recursive", w.cfg.Recursive, "after", w.cfg.After)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := w.pollOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.report(ctx, err)
		t.Reset(w.cfg.PollInterval)
	}
}

// Health is nil when the last poll went through, else what went wrong.
func (w *Watcher) Health() error {
	w.healthMu.Lock()
	defer w.healthMu.Unlock()
	return w.health
}

func (w *Watcher) report(ctx context.Context, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch {
	case msg == w.lastReport:
	case err != nil:
		w.log.WarnContext(ctx, "polling the WebDAV folder failed; retrying every interval", "url", w.folder, "err", err)
	default:
		w.log.InfoContext(ctx, "polling the WebDAV folder works again", "url", w.folder)
	}
	w.lastReport = msg
}

func (w *Watcher) setHealth(err error) {
	w.healthMu.Lock()
	w.health, w.lastPass = err, w.now()
	w.healthMu.Unlock()
}

// LastPass is when the last poll of the folder ended (zero: none yet, by this process); Health
// says whether it went through.
func (w *Watcher) LastPass() time.Time {
	w.healthMu.Lock()
	defer w.healthMu.Unlock()
	return w.lastPass
}

// pollOnce lists the folder, takes what is stable and returns what went wrong. Nothing is lost on
// an error: files not taken are taken at a later poll.
func (w *Watcher) pollOnce(ctx context.Context) (err error) {
	start := time.Now()
	defer func() {
		result := "ok"
		if err != nil {
			result = "error"
		}
		w.m.polls.WithLabelValues(w.cfg.Name, result).Inc()
		w.m.duration.WithLabelValues(w.cfg.Name).Observe(time.Since(start).Seconds())
		w.setHealth(err)
	}()
	w.polls++
	res, err := w.scan(ctx)
	if err != nil {
		return fmt.Errorf("webdav source %s: %w", w.cfg.Name, err)
	}
	if len(res.stale) > 0 {
		w.distrustFolderETags(ctx, "folder", res.stale[0])
	}
	for _, o := range w.observe(res) {
		w.forgetGone(ctx, o)
	}

	var fileErrs []error
	for _, r := range w.takeAll(ctx, w.candidates(res)) {
		if r.changed && !res.listed[parentRel(r.rel)] {
			// The file was taken on the word of its folder's unchanged ETag, yet it had changed.
			w.distrustFolderETags(ctx, "path", r.rel)
		}
		w.apply(ctx, r)
		if r.err != nil {
			fileErrs = append(fileErrs, r.err)
		}
	}
	if w.now().Sub(w.lastTidy) > tidyEvery {
		w.lastTidy = w.now()
		if err := w.seen.tidy(ctx); err != nil {
			w.log.DebugContext(ctx, "tidying the seen bucket failed", "err", err)
		}
	}

	errs := res.errs
	if len(fileErrs) > 0 {
		errs = append(errs, fmt.Errorf("%d file(s) could not be taken yet, retried next poll; first: %w", len(fileErrs), fileErrs[0]))
	}
	if len(errs) > 0 {
		return fmt.Errorf("webdav source %s: %w", w.cfg.Name, errors.Join(errs...))
	}
	return nil
}

// distrustFolderETags notes, for good, that the server's collection ETags do not tell whether
// anything below changed (evidence: the folder or file named by key/value).
func (w *Watcher) distrustFolderETags(ctx context.Context, key, value string) {
	if w.nonPropagating {
		return
	}
	w.nonPropagating = true
	w.log.InfoContext(ctx, "the server's folder ETags do not change when their content does; listing every folder at every poll",
		"url", w.folder, key, value)
}

// takeAll takes files, Concurrency at a time.
func (w *Watcher) takeAll(ctx context.Context, cands []fileObs) []takeResult {
	results := make([]takeResult, len(cands))
	sem := make(chan struct{}, w.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, o := range cands {
		if ctx.Err() != nil {
			results[i] = takeResult{rel: o.e.rel, err: ctx.Err()}
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = w.take(ctx, o)
		})
	}
	wg.Wait()
	return results
}
