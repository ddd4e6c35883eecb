package service

import (
	"fmt"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors/catalog"
)

// Check runs every check that serve runs before it starts anything — the configuration's own
// keys, each vendor's section as its vendor reads it, each mailbox and folder as its watcher
// reads it — and returns every problem at once, each with its line (*config.Problems), or nil.
// It changes nothing and starts nothing: `ingest config check` is this.
func Check(cfg config.Config) error {
	_, err := check(cfg)
	return err
}

func check(cfg config.Config) (*catalog.Plan, error) {
	plan, problems := catalog.Configure(cfg.Vendors)
	report := config.Collect(&problems)
	cfg.Routes = routes(cfg, plan)
	cfg.Validate(plan.Enabled(), report)
	for i, m := range cfg.Sources.IMAP {
		imapSettings(m, cfg.HTTP.MaxDocumentBytes.Int64()).Check(config.Under(fmt.Sprintf("sources.imap[%d]", i), report))
	}
	for i, f := range cfg.Sources.WebDAV {
		key := fmt.Sprintf("sources.webdav[%d]", i)
		wc, err := webdavSettings(f, cfg.HTTP.MaxDocumentBytes.Int64())
		if err != nil {
			report(key+".tls", "%v", err)
		}
		wc.Check(config.Under(key, report))
	}
	return plan, cfg.Problems(problems)
}

// routes are the configured routes, or the catalog's default when the configuration sets none.
func routes(cfg config.Config, plan *catalog.Plan) []config.Route {
	if cfg.Routes == nil {
		return plan.DefaultRoutes()
	}
	return cfg.Routes
}
