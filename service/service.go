// Package service runs what a configuration asks for: NATS (embedded or external), the event
// backbone, the state projector and the HTTP server with its inputs; and stops it all in order.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/broker"
	"github.com/ingest-dev/ingest/callbacks"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/dispatch"
	"github.com/ingest-dev/ingest/docapi"
	"github.com/ingest-dev/ingest/docindex"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/schema"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/intake"
	"github.com/ingest-dev/ingest/internal/redact"
	"github.com/ingest-dev/ingest/liveness"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/catalog"
	"github.com/ingest-dev/ingest/webhooks"
)

// Service is a running ingest.
type Service struct {
	cfg       config.Config
	log       *slog.Logger
	broker    *broker.Broker
	bus       *events.Bus
	live      *liveness.Registry
	catalog   *catalog.Catalog
	dispatch  *dispatch.Dispatcher
	poller    *dispatch.Poller
	callbacks *callbacks.Receiver
	sources   *sources
	webhooks  *webhooks.Deliverer
	index     *docindex.Index
	http      *httpapi.Server
	// retry starts a new attempt of a failed document at one vendor (the console's Retry
	// button); nil until retry is wired.
	retry    func(ctx context.Context, id, vendor string) error
	httpAddr string

	// The service's one lifecycle: every long-running part is a component, run together until
	// shutdown or until one of them fails; then they all stop, each within the drain time.
	components []component
	stopWork   context.CancelFunc
	workDone   chan struct{}
	running    sync.Map // names of the components whose run has not returned yet
	// lock holds data_dir for this process until it stops.
	lock *os.File
	// failed reports the first component that ended on its own with an error.
	failed        chan error
	stopHeartbeat func()
}

// component is a long-running part of the service: it runs until its context ends, then finishes
// what it has in hand within the drain time, and returns.
type component struct {
	name string
	run  func(ctx context.Context) error
}

func (s *Service) add(name string, run func(ctx context.Context) error) {
	s.components = append(s.components, component{name: name, run: run})
}

// drain is how long each component may take to finish its work in hand once the service stops:
// what is left of shutdown_timeout after a second for the heartbeat and NATS.
func (s *Service) drain() time.Duration {
	return max(s.cfg.ShutdownTimeout.Std()-time.Second, 500*time.Millisecond)
}

// Start brings everything up. It returns once the service takes documents, or with the first
// problem in words an operator can act on.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Service, err error) {
	// Everything that can be checked is, before anything starts: the same checks as
	// `ingest config check`.
	plan, err := check(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// No secret of the configuration is written in a log line, whoever writes it.
	log = slog.New(redact.New(log.Handler(), cfg.Secrets()))
	s := &Service{cfg: cfg, log: log, failed: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.stop(context.Background())
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data_dir: %w", err)
	}
	if s.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	keys, err := apiKeys(cfg, log)
	if err != nil {
		return nil, err
	}
	if len(cfg.HTTP.APIKeys) == 0 { // the generated key, kept in data_dir
		log = slog.New(redact.New(log.Handler(), keys))
		s.log = log
	}
	// The port first: a second instance on the same address fails before it starts watching
	// anything.
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("http.listen %s is already in use (is ingest running already? `ingest status` finds it); choose another address", cfg.HTTP.Listen)
		}
		return nil, fmt.Errorf("http.listen %s: %w", cfg.HTTP.Listen, err)
	}
	s.httpAddr = ln.Addr().String()
	serving := false
	defer func() {
		if !serving {
			ln.Close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	bcfg := BrokerConfig(cfg)
	bcfg.Logger = log
	s.broker, err = broker.Open(ctx, bcfg)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(s.broker.Conn())
	if err != nil {
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	if s.bus, err = s.provision(ctx, js, reg); err != nil {
		return nil, err
	}
	if err := s.startHeartbeat(ctx, cfg); err != nil {
		return nil, err
	}
	projector, err := s.bus.NewProjector(ctx, reg)
	if err != nil {
		return nil, err
	}
	s.add("state projector", projector.Run)
	publicURL := cfg.Callbacks.PublicURL
	if publicURL == "" {
		publicURL = "http://" + dialable(s.httpAddr)
	}
	if s.catalog, err = catalog.Build(ctx, plan, catalog.BuildConfig{Logger: log, PublicURL: publicURL,
		StateDir: filepath.Join(cfg.DataDir, "sandbox")}); err != nil {
		return nil, err
	}
	router, err := dispatch.NewRouter(rules(routes(cfg, plan)), plan.Enabled())
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	// Documents being received go ahead of dispatch (events.Priority).
	intakeBusy, yield := events.NewPriority(events.PriorityConfig{}), (*events.Priority)(nil)
	if cfg.Dispatch.YieldToIntake {
		yield = intakeBusy
	}
	in, err := intake.New(intake.Config{Bus: s.bus, Logger: log, Registerer: reg, Route: router.Route, Priority: intakeBusy})
	if err != nil {
		return nil, err
	}
	vm, err := dispatch.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	refs, err := dispatch.OpenRefIndex(ctx, s.bus)
	if err != nil {
		return nil, err
	}
	if s.dispatch, err = dispatch.NewDispatcher(ctx, dispatch.Config{
		Bus: s.bus, Vendors: s.catalog.Vendors, Router: router,
		Workers: cfg.Dispatch.Workers, MaxAttempts: cfg.Dispatch.MaxAttempts,
		RetryInitial: cfg.Dispatch.RetryInitial.Std(), RetryMax: cfg.Dispatch.RetryMax.Std(), Lease: cfg.Dispatch.Lease.Std(),
		InDoubtTimeout: cfg.Dispatch.InDoubtTimeout.Std(), Liveness: s.live, AckWait: cfg.HeartbeatTTL.Std(), Drain: s.drain(),
		Logger: log, Metrics: vm, Refs: refs, YieldTo: yield,
	}); err != nil {
		return nil, err
	}
	s.add("dispatcher", s.dispatch.Run)
	if s.poller, err = dispatch.NewPoller(ctx, dispatch.PollConfig{
		Bus: s.bus, Vendors: s.catalog.Vendors, Settings: s.catalog.Poll,
		Workers: cfg.Dispatch.PollWorkers, AckWait: cfg.HeartbeatTTL.Std(), Drain: s.drain(), Logger: log, Metrics: vm,
		YieldTo: yield,
	}); err != nil {
		return nil, err
	}
	s.add("poller", s.poller.Run)

	s.http, err = httpapi.New(httpapi.Config{
		ReadHeaderTimeout:     cfg.HTTP.ReadHeaderTimeout.Std(),
		IdleTimeout:           cfg.HTTP.IdleTimeout.Std(),
		MinBodyRate:           cfg.HTTP.MinBodyRate.Int64(),
		BodyRateWindow:        cfg.HTTP.BodyRateWindow.Std(),
		MaxRequestsPerAddress: cfg.HTTP.MaxRequestsPerAddress,
		Logger:                log,
		Registry:              reg,
		Ready: func(ctx context.Context) error {
			if err := s.broker.Ready(ctx); err != nil {
				return err
			}
			if err := s.bus.Ready(ctx); err != nil {
				return err
			}
			return s.sources.ready()
		},
		ReadyDetail: s.readyDetail,
	})
	if err != nil {
		return nil, err
	}
	if cfg.HTTP.Profiling {
		s.http.RegisterProfiling(keys)
	}
	index, err := s.openIndex(ctx, reg)
	if err != nil {
		return nil, err
	}
	// Documents are read back whatever their source.
	docs, err := docapi.New(docapi.Config{Bus: s.bus, APIKeys: keys, Enrich: s.dispatch.Enrich, Index: index, Logger: log})
	if err != nil {
		return nil, err
	}
	if err := s.wireRetry(ctx, docs); err != nil {
		return nil, err
	}
	docs.Register(s.http.Echo())
	// The events described (AsyncAPI 3.0, generated from the Go types), with this deployment's
	// subject root.
	asyncapi, err := schema.AsyncAPI(s.bus.Names())
	if err != nil {
		return nil, err
	}
	s.http.Echo().GET("/asyncapi.json", func(c echo.Context) error { return c.JSONBlob(http.StatusOK, asyncapi) })
	// The HTTP API described (OpenAPI 3.1), public like the AsyncAPI document: it holds no secret.
	openapi, err := OpenAPI()
	if err != nil {
		return nil, err
	}
	s.http.Echo().GET("/openapi.json", func(c echo.Context) error { return c.JSONBlob(http.StatusOK, openapi) })
	if cfg.Sources.HTTPDrop.Enabled {
		drop, err := httpdrop.New(ctx, httpdrop.Config{
			Bus: s.bus, Intake: in, SourceName: cfg.Sources.HTTPDrop.Name, APIKeys: keys,
			MaxDocumentBytes: cfg.HTTP.MaxDocumentBytes.Int64(), MaxRequestBytes: cfg.HTTP.MaxRequestBytes.Int64(),
			MaxFiles: cfg.HTTP.MaxFiles, IdempotencyTTL: cfg.HTTP.IdempotencyTTL.Std(),
			CheckRouting: router.Check, Liveness: s.live,
			Logger: log, Registerer: reg,
		})
		if err != nil {
			return nil, err
		}
		drop.Register(s.http.Echo())
		s.add("idempotency sweep", drop.Run)
	}
	if err := s.startCallbacks(ctx, cfg, refs, reg); err != nil {
		return nil, err
	}
	if err := s.startSources(ctx, cfg, in, reg); err != nil {
		return nil, err
	}
	if err := s.startWebhooks(ctx, cfg, keys, reg); err != nil {
		return nil, err
	}
	if err := s.startConsole(ctx, cfg, plan, keys); err != nil {
		return nil, err
	}
	serving = true
	s.add("http", func(ctx context.Context) error { return s.serveHTTP(ctx, ln) })
	s.start()

	if err := writeRuntime(cfg.DataDir, Runtime{
		PID: os.Getpid(), NATSURL: s.broker.URL(), HTTPURL: "http://" + dialable(s.httpAddr), Started: time.Now().UTC(),
	}); err != nil {
		return nil, err
	}
	log.Info("ingest is ready", "http", "http://"+s.httpAddr, "nats", s.broker.URL(), "embedded_nats", s.broker.Embedded(),
		"stream", s.bus.Names().Stream(), "data_dir", cfg.DataDir)
	return s, nil
}

// wireRetry gives the retry endpoint the Idempotency-Key bucket of uploads (provisioned with the
// very spec httpdrop uses, so that neither changes it back and forth), whether or not the HTTP
// drop is enabled, and the console its Retry button.
func (s *Service) wireRetry(ctx context.Context, docs *docapi.API) error {
	kv, err := s.bus.KeyValue(ctx, events.BucketSpec{
		Purpose: "idempotency", Description: "Idempotency-Key records of POST /v1/documents",
		TTL: s.cfg.HTTP.IdempotencyTTL.Std(),
	})
	if err != nil {
		return err
	}
	docs.UseIdempotency(kv)
	s.retry = func(ctx context.Context, id, vendor string) error {
		_, err := docs.Retry(docapi.WithRequester(ctx, "console"), id, vendor, "")
		return docapi.RetryProblem(err)
	}
	return nil
}

// openIndex opens the document list index (nil when it is disabled) and runs it as a component;
// it is closed once the components have stopped.
func (s *Service) openIndex(ctx context.Context, reg prometheus.Registerer) (*docindex.Index, error) {
	c := s.cfg.Index
	if !c.Enabled {
		return nil, nil
	}
	path := c.Path
	if path == "" {
		path = filepath.Join(s.cfg.DataDir, "index", "documents.db")
	}
	ix, err := docindex.Open(ctx, docindex.Config{Bus: s.bus, Path: path, CacheKiB: int(c.CacheSize.Int64() >> 10),
		Logger: s.log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	s.index = ix
	s.add("document index", ix.Run)
	return ix, nil
}

// startCallbacks opens the callback endpoint of every vendor that has a callback token.
func (s *Service) startCallbacks(ctx context.Context, cfg config.Config, refs *dispatch.RefIndex, reg prometheus.Registerer) error {
	var eps []callbacks.Endpoint
	for _, name := range s.catalog.Names() {
		cb := s.catalog.Callbacks[name]
		if cb == nil {
			continue
		}
		v := s.catalog.Vendors[name].(vendors.CallbackVendor) // checked by catalog.Build
		eps = append(eps, callbacks.Endpoint{Vendor: name, Token: cb.CallbackToken, AllowCIDRs: cb.AllowList(),
			Verifier: v.CallbackVerifier(), Parser: v})
	}
	if len(eps) == 0 {
		return nil
	}
	var err error
	s.callbacks, err = callbacks.New(ctx, callbacks.Config{
		Bus: s.bus, Endpoints: eps, PublicURL: cfg.Callbacks.PublicURL, MaxBody: cfg.Callbacks.MaxBodyBytes.Int64(),
		ParkWindow: cfg.Callbacks.ParkWindow.Std(), Poller: s.poller, Refs: refs, AckWait: cfg.HeartbeatTTL.Std(), Drain: s.drain(),
		Logger: s.log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	s.add("callback resolver", s.callbacks.Run)
	s.callbacks.Register(s.http.Echo())
	for vendor, url := range s.callbacks.URLs() {
		s.log.Info(fmt.Sprintf("callback URL for %s (paste it into the vendor's console with vendors.%s.callback_token in place of <callback_token>): %s",
			vendor, vendor, url), "vendor", vendor)
	}
	return nil
}

func rules(routes []config.Route) []dispatch.Rule {
	out := make([]dispatch.Rule, len(routes))
	for i, r := range routes {
		out[i] = dispatch.Rule{Name: r.Name, SourceKind: r.Match.SourceKind, SourceName: r.Match.SourceName,
			Filename: r.Match.Filename, ContentType: r.Match.ContentType, Vendors: r.Vendors}
	}
	return out
}

// start runs every component until stopWork; the first one to fail stops the rest and is
// reported on Done.
func (s *Service) start() {
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range s.components {
		s.running.Store(c.name, struct{}{})
		g.Go(func() error {
			defer s.running.Delete(c.name)
			if err := c.run(gctx); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			return nil
		})
	}
	s.stopWork, s.workDone = cancel, make(chan struct{})
	go func() {
		defer close(s.workDone)
		if err := g.Wait(); err != nil {
			s.failed <- err
		}
	}()
}

// serveHTTP serves until ctx ends, then lets requests in flight finish within the drain time.
func (s *Service) serveHTTP(ctx context.Context, ln net.Listener) error {
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(ln) }()
	select {
	case err := <-served:
		return err // the listener failed under us
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), s.drain())
	defer cancel()
	if err := s.http.Shutdown(dctx); err != nil {
		s.log.Warn("HTTP requests still running at the end of the drain time were cut off", "err", err)
	}
	<-served
	return nil
}

// startHeartbeat makes this instance known as alive before it claims any work, and keeps it so
// until the end of stop: claims it makes name it, and others take them over once it is gone.
func (s *Service) startHeartbeat(ctx context.Context, cfg config.Config) error {
	live, err := liveness.New(ctx, liveness.Config{Bus: s.bus, TTL: cfg.HeartbeatTTL.Std(), Logger: s.log})
	if err != nil {
		return err
	}
	if err := live.Beat(ctx); err != nil {
		return err
	}
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = live.Run(hctx) }()
	s.live, s.stopHeartbeat = live, func() { cancel(); <-done }
	return nil
}

// BrokerConfig is the NATS part of a configuration.
func BrokerConfig(cfg config.Config) broker.Config {
	return broker.Config{
		URL: cfg.NATS.URL, CredentialsFile: cfg.NATS.CredentialsFile, NKeySeedFile: cfg.NATS.NKeySeedFile,
		User: cfg.NATS.User, Password: cfg.NATS.Password, Token: cfg.NATS.Token,
		CAFile: cfg.NATS.TLS.CAFile, CertFile: cfg.NATS.TLS.CertFile, KeyFile: cfg.NATS.TLS.KeyFile,
		Embedded: broker.Embedded{
			Listen:    cfg.NATS.Embedded.Listen,
			StoreDir:  filepath.Join(cfg.DataDir, "nats"),
			PortFile:  filepath.Join(cfg.DataDir, "nats-port"),
			MaxStore:  cfg.NATS.Embedded.MaxStore.Int64(),
			MaxMemory: cfg.NATS.Embedded.MaxMemory.Int64(),
		},
	}
}

// provision sets up the stream and buckets, retrying while NATS is not there yet: a service
// started before its NATS cluster waits for it instead of failing.
func (s *Service) provision(ctx context.Context, js jetstream.JetStream, reg prometheus.Registerer) (*events.Bus, error) {
	cfg := events.Config{
		Namespace:         s.cfg.NATS.Namespace,
		MaxAge:            s.cfg.NATS.Stream.MaxAge.Std(),
		DuplicateWindow:   s.cfg.NATS.Stream.DuplicateWindow.Std(),
		Replicas:          s.cfg.NATS.Stream.Replicas,
		DocumentsMaxBytes: s.cfg.NATS.DocumentsMaxBytes.Int64(),
		Logger:            s.log,
		Registerer:        reg, // Open registers only once everything is provisioned
	}
	delay := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		bus, err := events.Open(pctx, js, cfg)
		cancel()
		if err == nil {
			return bus, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 && !events.Retryable(err) {
			return nil, fmt.Errorf("NATS refused the setup: %w", err)
		}
		s.log.Warn("NATS/JetStream not available yet; retrying", "attempt", attempt, "retry_in", delay.String(), "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("gave up waiting for NATS: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// HTTPAddr is the address the HTTP server listens on.
func (s *Service) HTTPAddr() string { return s.httpAddr }

// NATSURL is where other programs reach the service's NATS.
func (s *Service) NATSURL() string { return s.broker.URL() }

// Bus is the event backbone.
func (s *Service) Bus() *events.Bus { return s.bus }

// Done reports a component that ended on its own with an error (the HTTP listener failed, …):
// the service is stopping.
func (s *Service) Done() <-chan error { return s.failed }

// Shutdown stops taking input and lets the work in hand finish (uploads, submissions, polls,
// callbacks: each within shutdown_timeout less a second), then drains NATS.
func (s *Service) Shutdown(ctx context.Context) error {
	s.log.Info("shutting down: no new requests; finishing those in flight")
	return s.stop(ctx)
}

func (s *Service) stop(ctx context.Context) error {
	var errs []error
	if s.stopWork != nil {
		s.stopWork()
		select {
		case <-s.workDone:
		case <-ctx.Done():
			var names []string
			s.running.Range(func(k, _ any) bool { names = append(names, k.(string)); return true })
			slices.Sort(names)
			errs = append(errs, fmt.Errorf("work still running at the shutdown deadline (%s): %w", strings.Join(names, ", "), ctx.Err()))
		}
	}
	if s.catalog != nil {
		s.catalog.Close(ctx)
	}
	if s.index != nil {
		if err := s.index.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the document index: %w", err))
		}
	}
	// Last before NATS goes: with the heartbeat gone, whatever this instance still held is taken
	// over by the others at once.
	if s.stopHeartbeat != nil {
		s.stopHeartbeat()
	}
	if s.broker != nil {
		s.broker.Close(ctx)
	}
	if s.lock != nil {
		// Only the instance that holds data_dir wrote its runtime file (one refused at the
		// lock must not remove the running one's, even in the same process).
		removeRuntime(s.cfg.DataDir)
		s.lock.Close() // releases the flock
		s.lock = nil
	}
	return errors.Join(errs...)
}

// Run starts the service and runs it until ctx ends, then shuts down within the configured
// shutdown_timeout.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	s, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-s.failed:
		log.Error("a part of the service failed; stopping", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.Std())
	defer cancel()
	err = s.Shutdown(sctx)
	if err == nil {
		log.Info("stopped cleanly")
	}
	return err
}
