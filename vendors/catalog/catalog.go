// Package catalog builds the configured vendors. A vendor in sandbox mode gets its simulator
// started in-process on a loopback port, and its client pointed there with the simulator's
// credentials: the same client code runs in sandbox and in production.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/allspark"
	"github.com/ingest-dev/ingest/vendors/allspark/allsparksim"
	"github.com/ingest-dev/ingest/vendors/cradl"
	"github.com/ingest-dev/ingest/vendors/cradl/cradlsim"
	"github.com/ingest-dev/ingest/vendors/documine"
	"github.com/ingest-dev/ingest/vendors/documine/documinesim"
	"github.com/ingest-dev/ingest/vendors/gini"
	"github.com/ingest-dev/ingest/vendors/gini/ginisim"
	"github.com/ingest-dev/ingest/vendors/laigo"
	"github.com/ingest-dev/ingest/vendors/laigo/laigosim"
)

// Catalog is the set of enabled vendors.
type Catalog struct {
	Vendors map[string]vendors.Vendor
	Poll    map[string]vendors.PollSettings
	// Sandboxes are the simulators' base URLs by vendor (sandbox mode only).
	Sandboxes map[string]string
	servers   []*http.Server
	closers   []func()
}

// Sandbox credentials: what the simulators accept and the clients send in sandbox mode.
const (
	sandboxClient   = "sandbox-client"
	sandboxSecret   = "sandbox-secret"
	sandboxUser     = "sandbox-user"
	sandboxPassword = "sandbox-password"
	sandboxAPIKey   = "sandbox-api-key"
	sandboxTenant   = "sandbox"
	sandboxTemplate = "sandbox-template"
	sandboxDossier  = "sandbox-dossier"
	sandboxModel    = "las:organization:cradl/las:model:invoice"
	sandboxWorkflow = "las:workflow:sandbox"
	// sandboxWorkflowEmail is the simulated workflow's address.
	sandboxWorkflowEmail = "workflow@sandbox.cradl.local"
)

// Build makes a client for every enabled vendor, starting simulators for those in sandbox mode.
func Build(ctx context.Context, cfg config.Vendors, log *slog.Logger) (_ *Catalog, err error) {
	c := &Catalog{Vendors: map[string]vendors.Vendor{}, Poll: map[string]vendors.PollSettings{}, Sandboxes: map[string]string{}}
	defer func() {
		if err != nil {
			c.Close(ctx)
		}
	}()
	add := func(name string, common config.VendorCommon, v vendors.Vendor, err error) error {
		if err != nil {
			return fmt.Errorf("vendors.%s: %w", name, err)
		}
		c.Vendors[name] = v
		c.Poll[name] = vendors.PollSettings{Initial: common.Poll.Initial.Std(), Max: common.Poll.Max.Std(), Deadline: common.Poll.Deadline.Std()}
		return nil
	}
	sandbox := func(name string, h http.Handler) (string, error) {
		url, err := c.serve(h)
		if err != nil {
			return "", fmt.Errorf("vendors.%s: start the sandbox simulator: %w", name, err)
		}
		c.Sandboxes[name] = url
		log.Warn(fmt.Sprintf("vendor %s runs in SANDBOX mode: documents go to an in-process simulator at %s, not to the real service", name, url),
			"vendor", name, "simulator", url)
		return url, nil
	}

	if l := cfg.Laigo; l.Enabled {
		lc := laigo.Config{
			BaseURL: l.BaseURL, TokenURL: l.TokenURL, ClientID: l.ClientID, ClientSecret: l.ClientSecret,
			OutputFormats: l.OutputFormats, LanguageHint: l.LanguageHint, FetchZIP: l.FetchZIP,
			Timeout: l.Timeout.Std(), RateLimit: l.RateLimit, Concurrency: l.Concurrency,
		}
		if lc.RateLimit == 0 {
			lc.RateLimit = -1 // our 0 means "no limit"; the client's 0 means "Laigo's documented 1/s"
		}
		if l.Sandbox {
			url, err := sandbox("laigo", laigosim.New(laigosim.Config{ClientID: sandboxClient, ClientSecret: sandboxSecret, PendingPolls: l.SandboxPendingPolls}))
			if err != nil {
				return nil, err
			}
			lc.BaseURL, lc.TokenURL = url, url+"/realms/SmartTools/protocol/openid-connect/token"
			lc.ClientID, lc.ClientSecret = sandboxClient, sandboxSecret
		}
		v, err := laigo.New(lc)
		if err := add("laigo", l.VendorCommon, v, err); err != nil {
			return nil, err
		}
	}
	if g := cfg.Gini; g.Enabled {
		gc := gini.Config{
			BaseURL: g.BaseURL, ClientID: g.ClientID, ClientSecret: g.ClientSecret, UserIdentifier: g.UserIdentifier,
			TokenURL: g.TokenURL, Username: g.Username, Password: g.Password, DocType: g.DocType, FetchLayout: g.FetchLayout,
			ListNewestFirst: g.ListNewestFirst,
			Timeout:         g.Timeout.Std(), RateLimit: g.RateLimit, Concurrency: g.Concurrency, Logger: log,
		}
		if g.Sandbox {
			url, err := sandbox("gini", ginisim.New(ginisim.Config{ClientID: sandboxClient, ClientSecret: sandboxSecret, PendingPolls: g.SandboxPendingPolls}))
			if err != nil {
				return nil, err
			}
			// Backend mode: Basic client credentials and a user identifier.
			gc.BaseURL, gc.ClientID, gc.ClientSecret, gc.UserIdentifier = url, sandboxClient, sandboxSecret, sandboxUser
			gc.Username, gc.Password = "", ""
		}
		v, err := gini.New(gc)
		if err := add("gini", g.VendorCommon, v, err); err != nil {
			return nil, err
		}
	}
	if a := cfg.Allspark; a.Enabled {
		ac := allspark.Config{
			BaseURL: a.BaseURL, APIKey: a.APIKey, DocumentType: a.DocumentType,
			DoneStatuses: a.DoneStatuses, FailedStatuses: a.FailedStatuses, FetchOCR: true,
			Timeout: a.Timeout.Std(), RateLimit: a.RateLimit, Concurrency: a.Concurrency,
		}
		if a.Sandbox {
			url, err := sandbox("allspark", allsparksim.New(allsparksim.Config{APIKey: sandboxAPIKey, PendingPolls: a.SandboxPendingPolls}))
			if err != nil {
				return nil, err
			}
			ac.BaseURL, ac.APIKey = url+"/api/v1", sandboxAPIKey
		}
		v, err := allspark.New(ac)
		if err := add("allspark", a.VendorCommon, v, err); err != nil {
			return nil, err
		}
		if a.CallbackToken != "" {
			p := c.Poll["allspark"]
			p.CallbackGrace = a.CallbackPollAfter.Std()
			c.Poll["allspark"] = p
		}
	}
	if d := cfg.DocuMine; d.Enabled {
		dc := documine.Config{
			BaseURL: d.BaseURL, TokenURL: d.TokenURL, ClientID: d.ClientID, ClientSecret: d.ClientSecret,
			Username: d.Username, Password: d.Password, Tenant: d.Tenant,
			DossierTemplateID: d.DossierTemplateID, DossierID: d.DossierID,
			UploadPath: d.UploadPath, StatusPath: d.StatusPath, ComponentsPath: d.ComponentsPath,
			Timeout: d.Timeout.Std(), RateLimit: d.RateLimit, Concurrency: d.Concurrency,
		}
		if d.Sandbox {
			url, err := sandbox("documine", documinesim.New(documinesim.Config{
				ClientID: sandboxClient, ClientSecret: sandboxSecret, Tenant: sandboxTenant,
				DossierTemplateID: sandboxTemplate, DossierID: sandboxDossier,
				Users: map[string]string{sandboxUser: sandboxPassword}, PendingPolls: d.SandboxPendingPolls,
			}))
			if err != nil {
				return nil, err
			}
			dc.BaseURL, dc.TokenURL = url, ""
			dc.ClientID, dc.ClientSecret, dc.Username, dc.Password = sandboxClient, sandboxSecret, sandboxUser, sandboxPassword
			dc.Tenant, dc.DossierTemplateID, dc.DossierID = sandboxTenant, sandboxTemplate, sandboxDossier
			dc.UploadPath, dc.StatusPath, dc.ComponentsPath = "", "", ""
		}
		v, err := documine.New(dc)
		if err := add("documine", d.VendorCommon, v, err); err != nil {
			return nil, err
		}
	}
	if cr := cfg.Cradl; cr.Enabled {
		cc := cradl.Config{
			BaseURL: cr.BaseURL, TokenURL: cr.TokenURL, ClientID: cr.ClientID, ClientSecret: cr.ClientSecret,
			Mode: cr.Mode, ModelID: cr.ModelID, WorkflowID: cr.WorkflowID, WorkflowEmail: cr.WorkflowEmail,
			SMTP: cradl.SMTPConfig{Host: cr.SMTP.Host, Port: cr.SMTP.Port, Username: cr.SMTP.Username,
				Password: cr.SMTP.Password, From: cr.SMTP.From, TLS: cr.SMTP.TLS},
			Timeout: cr.Timeout.Std(), RateLimit: cr.RateLimit, Concurrency: cr.Concurrency, Logger: log,
		}
		if cr.Sandbox {
			sim, err := cradlsim.New(cradlsim.Config{
				ClientID: sandboxClient, ClientSecret: sandboxSecret, PendingPolls: cr.SandboxPendingPolls,
				ModelID: sandboxModel, WorkflowID: sandboxWorkflow, WorkflowEmail: sandboxWorkflowEmail,
			})
			if err != nil {
				return nil, fmt.Errorf("vendors.cradl: sandbox: %w", err)
			}
			url, err := sandbox("cradl", sim)
			if err != nil {
				return nil, err
			}
			cc.BaseURL, cc.TokenURL, cc.ClientID, cc.ClientSecret = url, url+"/oauth2/token", sandboxClient, sandboxSecret
			cc.ModelID, cc.WorkflowID, cc.WorkflowEmail = sandboxModel, sandboxWorkflow, sandboxWorkflowEmail
			if cr.Mode == "email" {
				// The sandbox's mail goes to the simulator's own SMTP receiver, in clear on loopback.
				addr, stop, err := sim.ListenSMTP("127.0.0.1:0")
				if err != nil {
					return nil, fmt.Errorf("vendors.cradl: sandbox SMTP: %w", err)
				}
				c.closers = append(c.closers, stop)
				host, port, _ := net.SplitHostPort(addr)
				p, _ := strconv.Atoi(port)
				cc.SMTP = cradl.SMTPConfig{Host: host, Port: p, From: "ingest@sandbox.local", TLS: "none"}
			}
		}
		v, err := cradl.New(cc)
		if err := add("cradl", cr.VendorCommon, v, err); err != nil {
			return nil, err
		}
		if cr.CallbackToken != "" {
			p := c.Poll["cradl"]
			p.CallbackGrace = cr.CallbackPollAfter.Std()
			c.Poll["cradl"] = p
		}
	}
	return c, nil
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
	for _, stop := range c.closers {
		stop()
	}
	c.closers = nil
}
