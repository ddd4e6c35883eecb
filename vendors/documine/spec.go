package documine

import (
	"context"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/documine/documinesim"
)

// Settings are DocuMine's keys under vendors.documine. Its paths are not public; each is a
// template ({templateId}, {dossierId}, {fileId}).
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
	UploadPath        string `yaml:"upload_path"`
	StatusPath        string `yaml:"status_path"`
	ComponentsPath    string `yaml:"components_path"`
}

// Validate checks the production credentials and dossier.
func (s *Settings) Validate(report config.Report) {
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
			return &Settings{Common: vendors.DefaultCommon("")}
		},
		New: func(_ context.Context, cfg vendors.Config, env vendors.Env) (vendors.Vendor, error) {
			s := cfg.(*Settings)
			dc := Config{
				BaseURL: s.BaseURL, TokenURL: s.TokenURL, ClientID: s.ClientID, ClientSecret: s.ClientSecret,
				Username: s.Username, Password: s.Password, Tenant: s.Tenant,
				DossierTemplateID: s.DossierTemplateID, DossierID: s.DossierID,
				UploadPath: s.UploadPath, StatusPath: s.StatusPath, ComponentsPath: s.ComponentsPath,
				Timeout: s.Timeout.Std(), RateLimit: s.RateLimit, Concurrency: s.Concurrency,
			}
			if s.Sandbox {
				const (
					client, secret, user, password = "sandbox-client", "sandbox-secret", "sandbox-user", "sandbox-password"
					tenant, template, dossier      = "sandbox", "sandbox-template", "sandbox-dossier"
				)
				url, err := env.Serve(documinesim.New(documinesim.Config{
					ClientID: client, ClientSecret: secret, Tenant: tenant,
					DossierTemplateID: template, DossierID: dossier,
					Users: map[string]string{user: password}, PendingPolls: s.SandboxPendingPolls,
				}))
				if err != nil {
					return nil, err
				}
				dc = Config{BaseURL: url, ClientID: client, ClientSecret: secret, Username: user, Password: password,
					Tenant: tenant, DossierTemplateID: template, DossierID: dossier,
					Timeout: dc.Timeout, RateLimit: dc.RateLimit, Concurrency: dc.Concurrency}
			}
			return New(dc)
		},
	}
}
