// Package catalog is the registry of the vendors this build knows, and the one place that turns
// the configuration's vendor sections into clients. A vendor in sandbox mode gets its simulator
// started in-process on a loopback port, and its client pointed there with the simulator's
// credentials: the same client code runs in sandbox and in production.
//
// Adding a vendor: write its package (client, simulator, tests, and a Spec with its settings),
// then add its Spec to Specs below. Nothing else names a vendor.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/allspark"
	"github.com/ingest-dev/ingest/vendors/cradl"
	"github.com/ingest-dev/ingest/vendors/documine"
	"github.com/ingest-dev/ingest/vendors/gini"
	"github.com/ingest-dev/ingest/vendors/laigo"
)

// Specs are the vendors this build knows, in the order the documentation lists them.
func Specs() []vendors.Spec {
	return []vendors.Spec{laigo.Spec(), gini.Spec(), allspark.Spec(), documine.Spec(), cradl.Spec()}
}

// defaultVendor takes every document when the configuration sets no routes.
func defaultVendor() string { return gini.Spec().Name }

// DefaultRoutes are the routes of a configuration that sets none: everything to the default
// vendor, when it is enabled.
func (p *Plan) DefaultRoutes() []config.Route {
	if s := p.settings[defaultVendor()]; s != nil && s.Base().Enabled {
		return []config.Route{{Name: "default", Vendors: []string{defaultVendor()}}}
	}
	return []config.Route{}
}

// Plan is the vendors' configuration: every known vendor's settings, from its section or its
// defaults, decoded and checked.
type Plan struct {
	specs    []vendors.Spec
	settings map[string]vendors.Config
}

// Configure decodes each vendor's section over its defaults and checks it. It reports every
// problem (unknown vendors, unknown keys, wrong types, values the vendor refuses) under the key
// vendors.<name>…, and never fails: a Plan with problems is only good for reporting them.
func Configure(sections map[string]config.Section) (*Plan, []config.Problem) {
	p := &Plan{specs: Specs(), settings: map[string]vendors.Config{}}
	var problems []config.Problem
	report := config.Collect(&problems)
	known := map[string]bool{}
	for _, s := range p.specs {
		known[s.Name] = true
		cfg := s.NewConfig()
		key := "vendors." + s.Name
		if sec, ok := sections[s.Name]; ok {
			problems = append(problems, sec.Decode(cfg, key)...)
		}
		r := config.Under(key, report)
		cfg.Base().Check(r)
		if cb, ok := cfg.(vendors.CallbackConfig); ok {
			cb.CallbackSettings().Check(r)
		}
		if cfg.Base().Enabled {
			cfg.Validate(r)
		}
		p.settings[s.Name] = cfg
	}
	for name := range sections {
		if !known[name] {
			report("vendors."+name, "there is no vendor %q (known: %s)", name, strings.Join(p.names(), ", "))
		}
	}
	return p, problems
}

func (p *Plan) names() []string {
	var out []string
	for _, s := range p.specs {
		out = append(out, s.Name)
	}
	return out
}

// Enabled lists the enabled vendors.
func (p *Plan) Enabled() []string {
	var out []string
	for _, s := range p.specs {
		if p.settings[s.Name].Base().Enabled {
			out = append(out, s.Name)
		}
	}
	return out
}

// Settings are a vendor's settings (nil for a vendor this build does not know).
func (p *Plan) Settings(name string) vendors.Config { return p.settings[name] }

// Catalog is the set of enabled vendors, running.
type Catalog struct {
	Vendors map[string]vendors.Vendor
	Poll    map[string]vendors.PollSettings
	// Callbacks are the callback settings of the enabled vendors that call back, with a token.
	Callbacks map[string]*vendors.Callbacks
	// Sandboxes are the simulators' base URLs by vendor (sandbox mode only).
	Sandboxes map[string]string
	servers   []*http.Server
	stops     []func()
}

// BuildConfig is what Build needs besides the plan.
type BuildConfig struct {
	Logger *slog.Logger
	// PublicURL is where this service is reached (sandbox simulators that call back call there).
	PublicURL string
	// StateDir, when set, keeps each sandbox simulator's records in StateDir/<vendor>, so that a
	// sandbox outlives a restart.
	StateDir string
}

// Build makes a client for every enabled vendor of plan, starting simulators for those in sandbox
// mode. plan must have had no problems.
func Build(ctx context.Context, plan *Plan, bc BuildConfig) (_ *Catalog, err error) {
	log := bc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{Vendors: map[string]vendors.Vendor{}, Poll: map[string]vendors.PollSettings{},
		Callbacks: map[string]*vendors.Callbacks{}, Sandboxes: map[string]string{}}
	defer func() {
		if err != nil {
			c.Close(ctx)
		}
	}()
	for _, spec := range plan.specs {
		cfg := plan.settings[spec.Name]
		base := cfg.Base()
		if !base.Enabled {
			continue
		}
		env := vendors.Env{
			Logger: log,
			Serve: func(h http.Handler) (string, error) {
				url, err := c.serve(h)
				if err != nil {
					return "", fmt.Errorf("start the sandbox simulator: %w", err)
				}
				c.Sandboxes[spec.Name] = url
				log.Warn(fmt.Sprintf("vendor %s runs in SANDBOX mode: documents go to an in-process simulator at %s, not to the real service", spec.Name, url),
					"vendor", spec.Name, "simulator", url)
				return url, nil
			},
			OnStop:    func(f func()) { c.stops = append(c.stops, f) },
			PublicURL: bc.PublicURL,
		}
		if bc.StateDir != "" {
			env.StateDir = filepath.Join(bc.StateDir, spec.Name)
		}
		v, err := spec.New(ctx, cfg, env)
		if err != nil {
			return nil, fmt.Errorf("vendors.%s: %w", spec.Name, err)
		}
		c.Vendors[spec.Name] = v
		poll := base.PollSettings()
		if cb, ok := cfg.(vendors.CallbackConfig); ok && cb.CallbackSettings().CallbackToken != "" {
			if _, ok := v.(vendors.CallbackVendor); !ok {
				return nil, fmt.Errorf("vendors.%s: this vendor does not call back", spec.Name)
			}
			c.Callbacks[spec.Name] = cb.CallbackSettings()
			// Polling is the safety net for a lost callback: it waits for the callback first.
			poll.CallbackGrace = cb.CallbackSettings().CallbackPollAfter.Std()
		}
		c.Poll[spec.Name] = poll
	}
	return c, nil
}

// Names are the running vendors' names, sorted.
func (c *Catalog) Names() []string {
	var out []string
	for n := range c.Vendors {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// serve runs h on a loopback port and returns its base URL.
func (c *Catalog) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("sandbox simulator stopped", "err", err)
		}
	}()
	c.servers = append(c.servers, srv)
	return "http://" + ln.Addr().String(), nil
}

// Close stops the sandbox simulators.
func (c *Catalog) Close(ctx context.Context) {
	for _, s := range c.servers {
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
	}
	c.servers = nil
	for _, stop := range c.stops {
		stop()
	}
	c.stops = nil
}
