// Package broker gives ingest its NATS connection: to an external server or cluster, reconnecting
// forever, or to an embedded nats-server with JetStream on disk when no URL is configured.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says which NATS to use.
type Config struct {
	// URL of an external server or cluster, comma-separated. Empty starts an embedded server.
	URL             string
	CredentialsFile string
	NKeySeedFile    string
	User, Password  string
	Token           string
	CAFile          string
	CertFile        string
	KeyFile         string
	Embedded        Embedded
	// ClientName is how the connection shows up in the server's monitoring.
	ClientName string
	Logger     *slog.Logger
}

// Embedded configures the in-process server.
type Embedded struct {
	// Listen is the TCP address for other programs. If its port is taken, a free one is used.
	Listen    string
	StoreDir  string // JetStream storage; required
	MaxStore  int64
	MaxMemory int64
	// PortFile, when set, remembers the port taken instead of a busy Listen port, so that the
	// next start takes the same one while Listen stays busy: programs that found the server
	// (ingest tail, subscribers) find it again after a restart.
	PortFile string
}

// Broker is a NATS connection, and the embedded server behind it when there is one.
type Broker struct {
	nc       *nats.Conn
	srv      *server.Server
	url      string
	fellBack bool
	log      *slog.Logger
}

// Open connects (starting the embedded server first when cfg.URL is empty). An external server that
// is down does not fail Open: the connection keeps retrying and Ready reports the state.
func Open(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ClientName == "" {
		cfg.ClientName = "ingest"
	}
	b := &Broker{log: cfg.Logger}
	opts := []nats.Option{
		nats.Name(cfg.ClientName),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("lost the NATS connection; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { b.log.Info("NATS connection restored", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			b.log.Warn("NATS asynchronous error", "subject", subj, "err", err)
		}),
	}
	if cfg.URL == "" {
		if err := b.startEmbedded(cfg); err != nil {
			return nil, err
		}
		// In-process connection: no TCP on the hot path; it lives and dies with the server.
		opts = append(opts, nats.InProcessServer(b.srv))
		nc, err := nats.Connect("", opts...)
		if err != nil {
			b.shutdownServer()
			return nil, fmt.Errorf("connect to the embedded NATS server: %w", err)
		}
		b.nc = nc
		return b, nil
	}

	b.url = cfg.URL
	opts = append(opts,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return min(time.Duration(attempts)*500*time.Millisecond, 10*time.Second)
		}),
		nats.RetryOnFailedConnect(true),
		// No writes kept for later while NATS is away: every write here waits for its
		// acknowledgement and is retried by its caller, and a kept write that lands after its
		// caller gave up (a claim, an event) is one nobody accounts for. They fail at once
		// instead, and the caller answers "retry later".
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(nc *nats.Conn) { b.log.Info("connected to NATS", "url", nc.ConnectedUrlRedacted()) }),
	)
	o, err := authOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, o...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", cfg.URL, err)
	}
	if !nc.IsConnected() {
		b.log.Warn("NATS is not reachable yet; retrying in the background", "url", cfg.URL)
	}
	b.nc = nc
	return b, nil
}

// Dial is a plain connection for short-lived clients (the CLI): it fails at once when nothing
// answers at url instead of retrying forever. Credentials and TLS come from cfg.
func Dial(url string, cfg Config, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := authOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name("ingest-cli"), nats.Timeout(5*time.Second))
	opts = append(opts, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

func authOptions(cfg Config) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case cfg.CredentialsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredentialsFile))
	case cfg.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("read nkey seed: %w", err)
		}
		opts = append(opts, o)
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	}
	if cfg.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	return opts, nil
}

func (b *Broker) startEmbedded(cfg Config) error {
	e := cfg.Embedded
	if e.StoreDir == "" {
		return errors.New("embedded NATS: a storage directory is required")
	}
	if err := os.MkdirAll(e.StoreDir, 0o750); err != nil {
		return fmt.Errorf("embedded NATS: create storage directory: %w", err)
	}
	host, portStr, err := net.SplitHostPort(e.Listen)
	if err != nil {
		return fmt.Errorf("embedded NATS: listen address %q: %w", e.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("embedded NATS: listen port %q is not a number", portStr)
	}
	if port != 0 && portTaken(e.Listen) {
		b.fellBack = true
		port = 0
		if remembered := readPort(e.PortFile); remembered != 0 && !portTaken(net.JoinHostPort(host, strconv.Itoa(remembered))) {
			port = remembered
		}
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		ServerName:         "ingest-embedded",
		Host:               host,
		Port:               port,
		JetStream:          true,
		StoreDir:           filepath.Clean(e.StoreDir),
		JetStreamMaxStore:  e.MaxStore,
		JetStreamMaxMemory: e.MaxMemory,
		NoSigs:             true, // signals are ours
	})
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	// Without a logger the server's fatal errors are invisible; its default logger's Fatalf would
	// exit the process. This one only logs.
	srv.SetLoggerV2(serverLogger{b.log.With("component", "nats-server")}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("embedded NATS did not start within 30s (is %s writable? see the nats-server lines above)", e.StoreDir)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		return fmt.Errorf("embedded NATS started without JetStream (storage %s)", e.StoreDir)
	}
	b.srv = srv
	b.url = srv.ClientURL()
	if b.fellBack {
		if e.PortFile != "" {
			if err := os.WriteFile(e.PortFile, []byte(strconv.Itoa(srv.Addr().(*net.TCPAddr).Port)+"\n"), 0o644); err != nil {
				b.log.Warn("could not remember the embedded NATS port; the next start may take another one", "err", err)
			}
		}
		b.log.Warn(fmt.Sprintf("nats.embedded.listen %s is taken (another NATS server?); the embedded NATS server listens on %s instead", e.Listen, b.url),
			"url", b.url)
	} else {
		b.log.Info("embedded NATS server started", "url", b.url, "store_dir", e.StoreDir)
	}
	return nil
}

// readPort reads a remembered port; 0 when there is none.
func readPort(path string) int {
	if path == "" {
		return 0
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 || n > 65535 {
		return 0
	}
	return n
}

// portTaken reports whether something already listens on addr.
func portTaken(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	ln.Close()
	return false
}

// Conn is the NATS connection.
func (b *Broker) Conn() *nats.Conn { return b.nc }

// URL is where other programs reach this NATS: the embedded server's client URL, or the configured
// external URL.
func (b *Broker) URL() string { return b.url }

// Embedded reports whether the server runs in this process.
func (b *Broker) Embedded() bool { return b.srv != nil }

// Ready checks that the connection is up and JetStream answers.
func (b *Broker) Ready(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return fmt.Errorf("NATS connection is %s", b.nc.Status())
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		return err
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream does not answer (on a cluster: the nodes have no quorum or are electing a leader): %w", err)
	}
	return nil
}

// Close drains the connection (pending publishes and acks go out) and stops the embedded server.
func (b *Broker) Close(ctx context.Context) {
	if b.nc != nil && !b.nc.IsClosed() {
		done := make(chan struct{})
		b.nc.SetClosedHandler(func(*nats.Conn) { close(done) })
		if err := b.nc.Drain(); err != nil {
			b.nc.Close()
		} else {
			select {
			case <-done:
			case <-ctx.Done():
				b.nc.Close()
			}
		}
	}
	b.shutdownServer()
}

func (b *Broker) shutdownServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// serverLogger sends nats-server's log to slog. Its notices (a banner of ~20 lines at start) are
// debug here; warnings and errors stay visible.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
