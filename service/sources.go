package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/adapters/imap"
	"github.com/ingest-dev/ingest/adapters/imap/mimewalk"
	"github.com/ingest-dev/ingest/adapters/webdav"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/intake"
	"github.com/ingest-dev/ingest/lease"
)

// watcher is a source that watches something until its context ends.
type watcher interface {
	Run(ctx context.Context) error
	Health() error
	LastPass() time.Time
}

// sources runs the mailbox and folder watchers, each under a lease so that one instance at a time
// watches it.
type sources struct {
	health   map[string]func() error
	lastPass map[string]func() time.Time
}

func (s *Service) startSources(ctx context.Context, cfg config.Config, in *intake.Intake, reg prometheus.Registerer) error {
	src := &sources{health: map[string]func() error{}, lastPass: map[string]func() time.Time{}}
	type named struct {
		lease string
		w     watcher
	}
	var ws []named
	for _, m := range cfg.Sources.IMAP {
		c := imapSettings(m, cfg.HTTP.MaxDocumentBytes.Int64())
		c.Bus, c.Intake, c.Logger, c.Registerer = s.bus, in, s.log, reg
		w, err := imap.New(ctx, c)
		if err != nil {
			return fmt.Errorf("sources.imap %s: %w", m.Name, err)
		}
		ws = append(ws, named{"imap." + m.Name, w})
	}
	for _, f := range cfg.Sources.WebDAV {
		wc, err := webdavSettings(f, cfg.HTTP.MaxDocumentBytes.Int64())
		if err != nil {
			return fmt.Errorf("sources.webdav %s: %w", f.Name, err)
		}
		wc.Bus, wc.Intake, wc.Logger, wc.Registerer = s.bus, in, s.log, reg
		w, err := webdav.New(ctx, wc)
		if err != nil {
			return fmt.Errorf("sources.webdav %s: %w", f.Name, err)
		}
		ws = append(ws, named{"webdav." + f.Name, w})
	}
	if len(ws) == 0 {
		return nil
	}
	leases, err := lease.New(ctx, lease.Config{Bus: s.bus, Owner: s.live.Self(), Logger: s.log})
	if err != nil {
		return err
	}
	for _, n := range ws {
		src.health[n.lease], src.lastPass[n.lease] = n.w.Health, n.w.LastPass
	}
	s.sources = src
	// The watchers stop with the service: their work in hand is cancelled (it is redone after a
	// restart: a mail or file counts as taken only once its documents are announced).
	s.add("sources", func(ctx context.Context) error {
		var wg sync.WaitGroup
		for _, n := range ws {
			wg.Go(func() {
				leases.Run(ctx, n.lease, func(ctx context.Context) {
					if err := n.w.Run(ctx); err != nil && ctx.Err() == nil {
						s.log.Error("source stopped", "source", n.lease, "err", err)
					}
				})
			})
		}
		wg.Wait()
		return nil
	})
	return nil
}

// ready fails when a source needs a person: a mailbox whose OAuth consent must be renewed.
// Sources that are merely reconnecting, or watched by another instance, do not make the service
// unready: it still takes uploads and callbacks.
func (src *sources) ready() error {
	if src == nil {
		return nil
	}
	for name, h := range src.health {
		if err := h(); errors.Is(err, imap.ErrReconsent) {
			return fmt.Errorf("source %s: %w", name, err)
		}
	}
	return nil
}

// imapSettings is a mailbox's configuration as its watcher reads it (without the service's
// parts: bus, intake, logger).
func imapSettings(m config.IMAPSource, maxDocumentBytes int64) imap.Config {
	c := imap.Config{
		Name: m.Name, Host: m.Host, Port: m.Port, TLS: m.TLS, Username: m.Username, Password: m.Password,
		Mailbox: m.Mailbox, Vendors: m.Vendor, Route: m.Route,
		PollInterval: m.PollInterval.Std(), CatchUpInterval: m.CatchUpInterval.Std(), IdleRestart: m.IdleRestart.Std(),
		After:       imap.After{Action: m.After.Action},
		IncludeBody: m.IncludeBody, IncludeEML: m.IncludeEML,
		Limits: mimewalk.Limits{MaxDepth: m.Limits.MaxDepth, MaxParts: m.Limits.MaxParts,
			MaxMessageBytes: m.Limits.MaxMessageBytes.Int64(), MaxPartBytes: m.Limits.MaxPartBytes.Int64()},
		MaxDocumentBytes: maxDocumentBytes,
	}
	switch m.After.Action {
	case "move":
		c.After.Folder = m.After.Target
	case "flag":
		c.After.Keyword = m.After.Target
	}
	if o := m.OAuth2; len(o.TokenCommand) > 0 || o.TokenFile != "" || o.RefreshToken != "" {
		c.OAuth2 = &imap.OAuth2{TokenCommand: o.TokenCommand, TokenFile: o.TokenFile, TokenURL: o.TokenURL,
			ClientID: o.ClientID, ClientSecret: o.ClientSecret, Scopes: o.Scopes, RefreshToken: o.RefreshToken}
	}
	f := m.Filters
	re := func(s string) *regexp.Regexp {
		r, err := regexp.Compile(s)
		if s == "" || err != nil {
			return nil // a bad one is reported by the configuration's checks
		}
		return r
	}
	c.Filters = imap.Filters{From: re(f.From), To: re(f.To), Subject: re(f.Subject), Filenames: f.Filename,
		ContentTypes: f.ContentTypes, MinSize: f.MinSize.Int64(), MaxSize: f.MaxSize.Int64(), UnseenOnly: f.UnseenOnly}
	if f.Since != "" {
		c.Filters.Since, _ = time.Parse("2006-01-02", f.Since)
	}
	return c
}

// webdavSettings is a folder's configuration as its watcher reads it (without the service's
// parts).
func webdavSettings(f config.WebDAVSource, maxDocumentBytes int64) (webdav.Config, error) {
	c := webdav.Config{
		Name: f.Name, URL: f.URL, Username: f.Username, Password: f.Password, BearerToken: f.BearerToken,
		Recursive: f.Recursive, Include: f.Include, Exclude: f.Exclude,
		PollInterval: f.PollInterval.Std(), MinAge: f.MinAge.Std(), Vendors: f.Vendor, Route: f.Route,
		After: f.After.Action, MoveTo: f.After.Target, MoveFailed: f.MoveFailed, ReingestOnChange: f.ReingestOnChange,
		MaxDocumentBytes: maxDocumentBytes,
	}
	if f.TLS.CAFile != "" || f.TLS.InsecureSkipVerify {
		tc := &tls.Config{InsecureSkipVerify: f.TLS.InsecureSkipVerify} //nolint:gosec // the user asked for it
		if f.TLS.CAFile != "" {
			pem, err := os.ReadFile(f.TLS.CAFile)
			if err != nil {
				return c, fmt.Errorf("tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return c, fmt.Errorf("tls.ca_file %s holds no PEM certificate", f.TLS.CAFile)
			}
		}
		c.TLSConfig = tc
	}
	return c, nil
}
