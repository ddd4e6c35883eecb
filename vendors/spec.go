package vendors

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/ingest-dev/ingest/config"
)

// Spec is everything ingest knows of one vendor outside the vendor's own package: its name, its
// configuration section and how to build its client. Each vendor package exports one; the
// catalog lists them. Adding a vendor is a new package with a Spec and one line in the catalog.
type Spec struct {
	// Name is the vendor's key under vendors:, in subjects and in events.
	Name string
	// NewConfig returns the vendor's configuration with every default filled in: a pointer to a
	// struct with yaml tags that embeds Common (and Callbacks, for a vendor that calls back).
	NewConfig func() Config
	// New builds the client for a valid configuration. In sandbox mode it starts the vendor's
	// simulator through env first and points the client at it, with the simulator's credentials.
	New func(ctx context.Context, cfg Config, env Env) (Vendor, error)
}

// Config is one vendor's configuration section.
type Config interface {
	// Base are the keys every vendor has.
	Base() *Common
	// Validate reports what is wrong with the vendor's own keys (those of Common and Callbacks are
	// checked by ingest), keys relative to the section: "client_id", "smtp.host".
	Validate(report config.Report)
}

// CallbackConfig is implemented by the configurations of vendors that call back.
type CallbackConfig interface {
	CallbackSettings() *Callbacks
}

// Env is what a Spec's New may use of the running service.
type Env struct {
	Logger *slog.Logger
	// Serve runs a sandbox simulator on a loopback port until the service stops and returns its
	// base URL.
	Serve func(h http.Handler) (baseURL string, err error)
	// OnStop registers a function to run when the service stops (a simulator's SMTP receiver).
	OnStop func(func())
	// PublicURL is where this service is reached (scheme and host): a sandbox simulator that
	// calls back builds its callback URL on it.
	PublicURL string
	// StateDir is where the vendor's sandbox simulator keeps its records (data_dir/sandbox/<vendor>),
	// so that documents in flight are still known to it after a restart; "" keeps them in memory.
	StateDir string
}

// Common are the keys every vendor has.
type Common struct {
	Enabled bool `yaml:"enabled"`
	// Sandbox starts the vendor's simulator in-process and sends documents there.
	Sandbox bool `yaml:"sandbox"`
	// BaseURL is the API root the documented paths are appended to.
	BaseURL     string          `yaml:"base_url"`
	Timeout     config.Duration `yaml:"timeout"`     // one request, upload included
	RateLimit   float64         `yaml:"rate_limit"`  // requests per second; 0 = unlimited
	Concurrency int             `yaml:"concurrency"` // requests in flight; 0 = unlimited
	Poll        Poll            `yaml:"poll"`
	// SandboxPendingPolls is how many status checks the simulator answers "not yet".
	SandboxPendingPolls int `yaml:"sandbox_pending_polls"`
}

// Poll says how a vendor is asked whether it is done.
type Poll struct {
	Initial  config.Duration `yaml:"initial"`  // first delay after "not yet", doubling
	Max      config.Duration `yaml:"max"`      // delay cap
	Deadline config.Duration `yaml:"deadline"` // give up this long after submission
}

// DefaultCommon is every vendor's default: enabled, in sandbox, at baseURL.
func DefaultCommon(baseURL string) Common {
	return Common{
		Enabled: true, Sandbox: true, BaseURL: baseURL,
		Timeout: config.Duration(5 * time.Minute), Concurrency: 4,
		Poll: Poll{Initial: config.Duration(time.Second), Max: config.Duration(time.Minute),
			Deadline: config.Duration(24 * time.Hour)},
		SandboxPendingPolls: 1,
	}
}

// Base makes Common (embedded in a vendor's configuration) satisfy half of Config.
func (c *Common) Base() *Common { return c }

// Check reports problems of the common keys.
func (c *Common) Check(report config.Report) {
	if !c.Enabled {
		return
	}
	if !c.Sandbox {
		if u, err := url.Parse(c.BaseURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			report("base_url", "%q is not an http(s) URL", c.BaseURL)
		}
	}
	if c.Timeout <= 0 {
		report("timeout", "must be positive")
	}
	if c.RateLimit < 0 || c.Concurrency < 0 {
		report("", "rate_limit and concurrency must not be negative")
	}
	if c.Poll.Initial <= 0 || c.Poll.Max < c.Poll.Initial || c.Poll.Deadline < c.Poll.Max {
		report("poll", "want 0 < initial ≤ max ≤ deadline")
	}
	if c.SandboxPendingPolls < 0 {
		report("sandbox_pending_polls", "must not be negative")
	}
}

// Require reports each of keys that is empty, for a vendor going to production.
func (c *Common) Require(report config.Report, keys map[string]string) {
	if !c.Enabled || c.Sandbox {
		return
	}
	for k, v := range keys {
		if v == "" {
			report(k, "is required when sandbox is false (use ${ENV_VAR} to keep it out of the file)")
		}
	}
}

// PollSettings are the poller's settings for the vendor.
func (c *Common) PollSettings() PollSettings {
	return PollSettings{Initial: c.Poll.Initial.Std(), Max: c.Poll.Max.Std(), Deadline: c.Poll.Deadline.Std()}
}

// Callbacks are the keys of a vendor that calls back when it is done.
type Callbacks struct {
	// CallbackToken enables POST /v1/callbacks/<vendor>/<token>: the secret in the URL given to
	// the vendor (random, at least 128 bits: ingest config gen-token; use ${ENV}).
	CallbackToken string `yaml:"callback_token"`
	// CallbackAllowCIDRs, when set, are the only addresses callbacks are taken from.
	CallbackAllowCIDRs []string `yaml:"callback_allow_cidrs"`
	// CallbackPollAfter: with callbacks on, a submission is polled only if no callback settled
	// it within this time (polling is the safety net for a lost callback).
	CallbackPollAfter config.Duration `yaml:"callback_poll_after"`
}

// DefaultCallbacks: off, and polled after 2 minutes when on: a missed callback costs minutes,
// not a quarter hour, and a callback that came settles the document long before.
func DefaultCallbacks() Callbacks {
	return Callbacks{CallbackAllowCIDRs: []string{}, CallbackPollAfter: config.Duration(2 * time.Minute)}
}

// CallbackSettings makes Callbacks (embedded) satisfy CallbackConfig.
func (c *Callbacks) CallbackSettings() *Callbacks { return c }

// Check reports problems of the callback keys.
func (c *Callbacks) Check(report config.Report) {
	if c.CallbackToken != "" {
		if weak := config.WeakToken(c.CallbackToken); weak != "" {
			report("callback_token", "%s", weak)
		}
	}
	for i, cidr := range c.CallbackAllowCIDRs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			report(fmt.Sprintf("callback_allow_cidrs[%d]", i), "%q is not an address range like 203.0.113.0/24", cidr)
		}
	}
	if c.CallbackPollAfter < 0 {
		report("callback_poll_after", "must not be negative")
	}
}

// AllowList parses CallbackAllowCIDRs (valid after Check).
func (c *Callbacks) AllowList() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.CallbackAllowCIDRs {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// CallbackVerifier is implemented by clients that check a callback's signature before anything
// else is done with it (signed webhooks). It decides from the request, the body and our
// public URL; nonce, when not empty, is remembered to refuse a replay.
type CallbackVerifier interface {
	VerifyCallback(r *http.Request, publicURL string, body []byte, now time.Time) (nonce string, err error)
}

// CallbackPrechecker is implemented by verifiers that can refuse a callback from its headers
// alone (no signature at all, a timestamp outside the window), so that its body is never read.
// A callback it lets through is still verified whole.
type CallbackPrechecker interface {
	PrecheckCallback(h http.Header, now time.Time) error
}

// PollSettings say how one vendor is polled.
type PollSettings struct {
	Initial  time.Duration // first delay after "not yet" (default 1 s), doubling
	Max      time.Duration // delay cap (default 1 min)
	Deadline time.Duration // give up this long after submission (default 24 h)
	// CallbackGrace: a vendor that calls back is first asked this long after submission; zero
	// for vendors that do not call back.
	CallbackGrace time.Duration
}

// WithDefaults fills what is zero: 1 s, 1 min, 24 h.
func (p PollSettings) WithDefaults() PollSettings {
	if p.Initial <= 0 {
		p.Initial = time.Second
	}
	if p.Max <= 0 {
		p.Max = time.Minute
	}
	if p.Deadline <= 0 {
		p.Deadline = 24 * time.Hour
	}
	return p
}
