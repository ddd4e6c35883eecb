package service

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"time"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/console"
	"github.com/ingest-dev/ingest/internal/redact"
	"github.com/ingest-dev/ingest/vendors/catalog"
)

// startConsole opens the web console at /ui/ with what the service knows: the index, the
// document states, the sources and the vendors' settings.
func (s *Service) startConsole(ctx context.Context, cfg config.Config, plan *catalog.Plan, keys []string) error {
	// A watcher's error is shown on a page: no secret of the configuration in it.
	scrub := redact.New(slog.DiscardHandler, append(cfg.Secrets(), keys...))
	health, lastPass := map[string]func() error{}, map[string]func() time.Time{}
	if s.sources != nil {
		lastPass = s.sources.lastPass
		for k, h := range s.sources.health {
			health[k] = func() error {
				if err := h(); err != nil {
					return errors.New(scrub.String(err.Error()))
				}
				return nil
			}
		}
	}
	var srcs []console.Source
	if d := cfg.Sources.HTTPDrop; d.Enabled {
		srcs = append(srcs, console.Source{Kind: "http", Name: d.Name, Where: "POST /v1/documents"})
	}
	for _, m := range cfg.Sources.IMAP {
		key := "imap." + m.Name
		srcs = append(srcs, console.Source{Kind: "imap", Name: m.Name, Where: m.Username + "@" + m.Host + "/" + m.Mailbox,
			Lease: key, Health: health[key], LastPass: lastPass[key]})
	}
	for _, f := range cfg.Sources.WebDAV {
		key := "webdav." + f.Name
		srcs = append(srcs, console.Source{Kind: "webdav", Name: f.Name, Where: redactURL(f.URL), Lease: key, Health: health[key], LastPass: lastPass[key]})
	}
	var vs []console.Vendor
	for _, name := range s.catalog.Names() {
		b := plan.Settings(name).Base()
		v := console.Vendor{Name: name, Sandbox: b.Sandbox, BaseURL: redactURL(b.BaseURL), RateLimit: b.RateLimit,
			Concurrency: b.Concurrency, Timeout: b.Timeout.Std(), PollInitial: b.Poll.Initial.Std(), PollMax: b.Poll.Max.Std(),
			Deadline: b.Poll.Deadline.Std(), Callbacks: s.catalog.Callbacks[name] != nil}
		if u, ok := s.catalog.Sandboxes[name]; ok {
			v.BaseURL = u
		}
		vs = append(vs, v)
	}
	con, err := console.New(ctx, console.Config{
		Bus: s.bus, Index: s.index, APIKeys: keys, Enrich: s.dispatch.Enrich, Retry: s.retry,
		Sources: srcs, Vendors: vs, Self: s.live.Self(), Logger: s.log,
	})
	if err != nil {
		return err
	}
	con.Register(s.http.Echo())
	// Its event streams end when the service stops, not at the end of the HTTP drain time.
	s.add("console", con.Run)
	return nil
}

// redactURL is a folder URL without credentials or query.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not a URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
