package documine

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/documine/documinesim"
)

// Settings are DocuMine's keys under vendors.documine. Its request shapes after login are not
// public: API holds them, with guessed defaults, to be corrected from the customer's OpenAPI file.
type Settings struct {
	vendors.Common    `yaml:",inline"`
	TokenURL          string `yaml:"token_url"`
	ClientID          string `yaml:"client_id"`
	ClientSecret      string `yaml:"client_secret"`
	Username          string `yaml:"username"`
	Password          string `yaml:"password"`
	Tenant            string `yaml:"tenant"`
	DossierTemplateID string `yaml:"dossier_template_id"`
	DossierID         string `yaml:"dossier_id"`
	API               API    `yaml:"api"`
}

// Validate checks the request shapes, and the production credentials and dossier.
func (s *Settings) Validate(report config.Report) {
	for _, p := range s.API.problems() {
		report("api."+p.key, "%s", p.msg)
	}
	s.Require(report, map[string]string{
		"client_id": s.ClientID, "username": s.Username, "password": s.Password,
		"tenant": s.Tenant, "dossier_template_id": s.DossierTemplateID, "dossier_id": s.DossierID,
	})
}

// Spec makes DocuMine known to ingest.
func Spec() vendors.Spec {
	return vendors.Spec{
		Name: vendorName,
		NewConfig: func() vendors.Config {
			return &Settings{Common: vendors.DefaultCommon(""), API: DefaultAPI()}
		},
		New: func(_ context.Context, cfg vendors.Config, env vendors.Env) (vendors.Vendor, error) {
			s := cfg.(*Settings)
			dc := Config{
				BaseURL: s.BaseURL, TokenURL: s.TokenURL, ClientID: s.ClientID, ClientSecret: s.ClientSecret,
				Username: s.Username, Password: s.Password, Tenant: s.Tenant,
				DossierTemplateID: s.DossierTemplateID, DossierID: s.DossierID,
				API:     s.API,
				Timeout: s.Timeout.Std(), RateLimit: s.RateLimit, Concurrency: s.Concurrency,
			}
			if s.Sandbox {
				const (
					client, secret, user, password = "sandbox-client", "sandbox-secret", "sandbox-user", "sandbox-password"
					tenant, template, dossier      = "sandbox", "sandbox-template", "sandbox-dossier"
				)
				// The simulator serves the configured shapes, so that sandbox mode tries them.
				sim, err := documinesim.New(documinesim.Config{
					ClientID: client, ClientSecret: secret, Tenant: tenant,
					DossierTemplateID: template, DossierID: dossier,
					Users: map[string]string{user: password}, PendingPolls: s.SandboxPendingPolls,
					API: SandboxAPI(s.API),
				})
				if err != nil {
					return nil, fmt.Errorf("sandbox: %w", err)
				}
				if env.StateDir != "" {
					// The dossier's files and result packages outlive a restart, as at DocuMine.
					if err := sim.KeepState(filepath.Join(env.StateDir, "dossier.jsonl")); err != nil {
						return nil, fmt.Errorf("sandbox: %w", err)
					}
					env.OnStop(func() { _ = sim.CloseState() })
				}
				url, err := env.Serve(sim)
				if err != nil {
					return nil, err
				}
				dc = Config{BaseURL: url, ClientID: client, ClientSecret: secret, Username: user, Password: password,
					Tenant: tenant, DossierTemplateID: template, DossierID: dossier, API: s.API,
					Timeout: dc.Timeout, RateLimit: dc.RateLimit, Concurrency: dc.Concurrency}
			}
			return New(dc)
		},
	}
}

// SandboxAPI is the simulator's shape for a's: the same methods and paths, the first of each list
// of keys and values where the simulator writes one, and the document's text where a reads it.
func SandboxAPI(a API) documinesim.API {
	first := func(vs []string) string {
		if len(vs) == 0 {
			return ""
		}
		return vs[0]
	}
	statuses := func(s StatusShape) documinesim.Statuses {
		return documinesim.Statuses{Field: s.Field, PendingValues: s.PendingValues, DoneValue: first(s.DoneValues),
			FailedValue: first(s.FailedValues), ErrorKey: first(s.ErrorKeys)}
	}
	p := a.Package
	out := documinesim.API{
		UploadMethod: a.Upload.Method, UploadPath: a.Upload.Path, FileField: a.Upload.FileField, IDKey: first(a.Upload.IDKeys),
		StatusMethod: a.Status.Method, StatusPath: a.Status.Path, Status: statuses(a.Status),
		ListMethod: a.List.Method, ListPath: a.List.Path,
		ComponentsMethod: a.Components.Method, ComponentsPath: a.Components.Path, TextKey: a.Components.TextKey,
		Package: documinesim.PackageAPI{
			CreateMethod: p.Create.Method, CreatePath: p.Create.Path, IDKey: first(p.Create.IDKeys),
			StatusMethod: p.Status.Method, StatusPath: p.Status.Path, Status: statuses(p.Status),
			DownloadMethod: p.Download.Method, DownloadPath: p.Download.Path, TextEntries: p.Download.TextFiles != "",
			DeleteMethod: p.Delete.Method, DeletePath: p.Delete.Path,
		},
	}
	if a.ResultMode == ResultPackage {
		out.TextKey = p.Download.TextKey
	}
	return out
}
