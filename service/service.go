// Package service runs what a configuration asks for: NATS (embedded or external), the event
// backbone, the state projector and the HTTP server with its inputs; and stops it all in order.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/broker"
	"github.com/ingest-dev/ingest/callbacks"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
	"github.com/ingest-dev/ingest/intake"
	"github.com/ingest-dev/ingest/liveness"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/catalog"
)

// Service is a running ingest.
type Service struct {
	cfg       config.Config
	log       *slog.Logger
	broker    *broker.Broker
	bus       *events.Bus
	live      *liveness.Registry
	stopLive  func()
	bg        []func() // stops background tasks
	projector *events.Projector
	catalog   *catalog.Catalog
	dispatch  *vendors.Dispatcher
	poller    *vendors.Poller
	callbacks *callbacks.Receiver
	sources   *sources
	http      *httpapi.Server
	httpAddr  string
	served    chan error
}

// Start brings everything up. It returns once the service takes documents, or with the first
// problem in words an operator can act on.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Service, err error) {
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, &config.Problems{Source: "the given configuration", List: errorStrings(errs)}
	}
	s := &Service{cfg: cfg, log: log, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.stop(context.Background())
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data_dir: %w", err)
	}
	keys, err := apiKeys(cfg, log)
	if err != nil {
		return nil, err
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
	if s.projector, err = s.bus.StartProjector(ctx, reg); err != nil {
		return nil, err
	}
	if s.catalog, err = catalog.Build(ctx, cfg.Vendors, log); err != nil {
		return nil, err
	}
	router, err := vendors.NewRouter(rules(cfg.Routes), cfg.Vendors.Enabled())
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	in, err := intake.New(intake.Config{Bus: s.bus, Logger: log, Registerer: reg, Route: router.Route})
	if err != nil {
		return nil, err
	}
	vm, err := vendors.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	refs, err := vendors.OpenRefIndex(ctx, s.bus)
	if err != nil {
		return nil, err
	}
	if s.dispatch, err = vendors.StartDispatcher(ctx, vendors.DispatchConfig{
		Bus: s.bus, Vendors: s.catalog.Vendors, Router: router,
		Workers: cfg.Dispatch.Workers, MaxAttempts: cfg.Dispatch.MaxAttempts,
		RetryInitial: cfg.Dispatch.RetryInitial.Std(), RetryMax: cfg.Dispatch.RetryMax.Std(), Lease: cfg.Dispatch.Lease.Std(),
		InDoubtTimeout: cfg.Dispatch.InDoubtTimeout.Std(), Liveness: s.live, AckWait: cfg.HeartbeatTTL.Std(),
		Logger: log, Metrics: vm, Refs: refs,
	}); err != nil {
		return nil, err
	}
	if s.poller, err = vendors.StartPoller(ctx, vendors.PollConfig{
		Bus: s.bus, Vendors: s.catalog.Vendors, Settings: s.catalog.Poll,
		Workers: cfg.Dispatch.PollWorkers, AckWait: cfg.HeartbeatTTL.Std(), Logger: log, Metrics: vm,
	}); err != nil {
		return nil, err
	}

	s.http, err = httpapi.New(httpapi.Config{
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout.Std(),
		IdleTimeout:       cfg.HTTP.IdleTimeout.Std(),
		Logger:            log,
		Registry:          reg,
		Ready: func(ctx context.Context) error {
			if err := s.broker.Ready(ctx); err != nil {
				return err
			}
			return s.sources.ready()
		},
	})
	if err != nil {
		return nil, err
	}
	if cfg.Sources.HTTPDrop.Enabled {
		drop, err := httpdrop.New(ctx, httpdrop.Config{
			Bus: s.bus, Intake: in, SourceName: cfg.Sources.HTTPDrop.Name, APIKeys: keys,
			MaxDocumentBytes: cfg.HTTP.MaxDocumentBytes.Int64(), MaxRequestBytes: cfg.HTTP.MaxRequestBytes.Int64(),
			MaxFiles: cfg.HTTP.MaxFiles, IdempotencyTTL: cfg.HTTP.IdempotencyTTL.Std(),
			CheckRouting: router.Check, Enrich: s.dispatch.Enrich, Liveness: s.live,
			Logger: log, Registerer: reg,
		})
		if err != nil {
			return nil, err
		}
		drop.Register(s.http.Echo())
		s.background(drop.Run)
	}
	if err := s.startCallbacks(ctx, cfg, refs, reg); err != nil {
		return nil, err
	}
	if err := s.startSources(ctx, cfg, in, reg); err != nil {
		return nil, err
	}
	serving = true
	go func() { s.served <- s.http.Serve(ln) }()

	if err := writeRuntime(cfg.DataDir, Runtime{
		PID: os.Getpid(), NATSURL: s.broker.URL(), HTTPURL: "http://" + dialable(s.httpAddr), Started: time.Now().UTC(),
	}); err != nil {
		return nil, err
	}
	log.Info("ingest is ready", "http", "http://"+s.httpAddr, "nats", s.broker.URL(), "embedded_nats", s.broker.Embedded(),
		"stream", s.bus.Names().Stream(), "data_dir", cfg.DataDir)
	return s, nil
}

// startCallbacks opens the callback endpoint of every vendor that has a callback token.
func (s *Service) startCallbacks(ctx context.Context, cfg config.Config, refs *vendors.RefIndex, reg prometheus.Registerer) error {
	var eps []callbacks.Endpoint
	add := func(name string, cb config.Callback, cradlSecret string) error {
		if cb.CallbackToken == "" || s.catalog.Vendors[name] == nil {
			return nil
		}
		parser, ok := s.catalog.Vendors[name].(vendors.CallbackVendor)
		if !ok {
			return fmt.Errorf("vendors.%s: this vendor does not call back", name)
		}
		ep := callbacks.Endpoint{Vendor: name, Token: cb.CallbackToken, CradlSecret: cradlSecret, Parser: parser}
		for _, c := range cb.CallbackAllowCIDRs {
			ep.AllowCIDRs = append(ep.AllowCIDRs, netip.MustParsePrefix(c)) // validated with the config
		}
		eps = append(eps, ep)
		return nil
	}
	if err := add("allspark", cfg.Vendors.Allspark.Callback, ""); err != nil {
		return err
	}
	if err := add("cradl", cfg.Vendors.Cradl.Callback, cfg.Vendors.Cradl.WebhookSecret); err != nil {
		return err
	}
	if len(eps) == 0 {
		return nil
	}
	var err error
	s.callbacks, err = callbacks.New(ctx, callbacks.Config{
		Bus: s.bus, Endpoints: eps, PublicURL: cfg.Callbacks.PublicURL, MaxBody: cfg.Callbacks.MaxBodyBytes.Int64(),
		ParkWindow: cfg.Callbacks.ParkWindow.Std(), Poller: s.poller, Refs: refs,
		Logger: s.log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	if err := s.callbacks.Start(); err != nil {
		return err
	}
	s.callbacks.Register(s.http.Echo())
	for vendor, url := range s.callbacks.URLs() {
		s.log.Info(fmt.Sprintf("callback URL for %s (paste it into the vendor's console): %s", vendor, url), "vendor", vendor)
	}
	return nil
}

func errorStrings(errs []error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func rules(routes []config.Route) []vendors.Rule {
	out := make([]vendors.Rule, len(routes))
	for i, r := range routes {
		out[i] = vendors.Rule{Name: r.Name, SourceKind: r.Match.SourceKind, SourceName: r.Match.SourceName,
			Filename: r.Match.Filename, ContentType: r.Match.ContentType, Vendors: r.Vendors}
	}
	return out
}

// background runs fn until stop (after the HTTP server has stopped).
func (s *Service) background(fn func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("a background task ended", "err", err)
		}
	}()
	s.bg = append(s.bg, func() { cancel(); <-done })
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
	s.live, s.stopLive = live, func() { cancel(); <-done }
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
		if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 {
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

// Done reports the HTTP server ending on its own (a fatal error).
func (s *Service) Done() <-chan error { return s.served }

// Shutdown stops taking input, lets in-flight uploads finish (until ctx ends), then drains NATS.
func (s *Service) Shutdown(ctx context.Context) error {
	s.log.Info("shutting down: no new requests; finishing those in flight")
	return s.stop(ctx)
}

func (s *Service) stop(ctx context.Context) error {
	var errs []error
	if s.http != nil {
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("HTTP requests still running at the deadline: %w", err))
		}
	}
	for _, stop := range s.bg {
		stop()
	}
	// Inputs are closed; let submissions and checks in hand finish, then stop the rest.
	if s.sources != nil {
		s.sources.stop(ctx)
	}
	if s.callbacks != nil {
		s.callbacks.Stop()
	}
	if s.dispatch != nil {
		s.dispatch.Stop(ctx)
	}
	if s.poller != nil {
		s.poller.Stop(ctx)
	}
	if s.projector != nil {
		s.projector.Stop()
	}
	if s.catalog != nil {
		s.catalog.Close(ctx)
	}
	// Last before NATS goes: with the heartbeat gone, whatever this instance still held is taken
	// over by the others at once.
	if s.stopLive != nil {
		s.stopLive()
	}
	if s.broker != nil {
		s.broker.Close(ctx)
	}
	removeRuntime(s.cfg.DataDir)
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
	case err := <-s.served:
		log.Error("HTTP server stopped", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.Std())
	defer cancel()
	err = s.Shutdown(sctx)
	if err == nil {
		log.Info("stopped cleanly")
	}
	return err
}
