package laigo

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/laigo/laigosim"
)

// Settings are Laigo's keys under vendors.laigo.
type Settings struct {
	vendors.Common `yaml:",inline"`
	TokenURL       string   `yaml:"token_url"`
	ClientID       string   `yaml:"client_id"`
	ClientSecret   string   `yaml:"client_secret"`
	OutputFormats  []string `yaml:"output_formats"`
	LanguageHint   string   `yaml:"language_hint"`
	FetchZIP       bool     `yaml:"fetch_zip"` // keep Laigo's ZIP (searchable PDF + text) as an artifact
	// TokenAuth is how the client credentials reach the token endpoint: "form" (in the body, as
	// Laigo's docs site's curl does) or "basic" (HTTP Basic, as its smartICR page says) [I].
	TokenAuth string `yaml:"token_auth"`
	// UploadPath and ResultPath are the API's paths under base_url [I]: Laigo's pages write
	// "/api/api/…" in places, taken for a typo.
	UploadPath string `yaml:"upload_path"`
	ResultPath string `yaml:"result_path"`
}

// Validate checks the production credentials.
func (s *Settings) Validate(report config.Report) {
	s.Require(report, map[string]string{"client_id": s.ClientID, "client_secret": s.ClientSecret, "token_url": s.TokenURL})
	if s.TokenAuth != "form" && s.TokenAuth != "basic" {
		report("token_auth", "%q is not one of form, basic", s.TokenAuth)
	}
	for key, p := range map[string]string{"upload_path": s.UploadPath, "result_path": s.ResultPath} {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# ") {
			report(key, "%q must be a path starting with / (no query)", p)
		}
	}
}

// Spec makes Laigo known to ingest.
func Spec() vendors.Spec {
	return vendors.Spec{
		Name: Name,
		NewConfig: func() vendors.Config {
			c := vendors.DefaultCommon("https://use.laigo.io")
			c.RateLimit = 1 // documented: 1 request per second
			return &Settings{Common: c, TokenURL: DefaultTokenURL, OutputFormats: []string{"PDF", "TEXT"}, FetchZIP: true,
				TokenAuth: "form", UploadPath: DefaultUploadPath, ResultPath: DefaultResultPath}
		},
		New: func(_ context.Context, cfg vendors.Config, env vendors.Env) (vendors.Vendor, error) {
			s := cfg.(*Settings)
			lc := Config{
				BaseURL: s.BaseURL, TokenURL: s.TokenURL, ClientID: s.ClientID, ClientSecret: s.ClientSecret,
				OutputFormats: s.OutputFormats, LanguageHint: s.LanguageHint, FetchZIP: s.FetchZIP,
				TokenBasicAuth: s.TokenAuth == "basic", UploadPath: s.UploadPath, ResultPath: s.ResultPath,
				Timeout: s.Timeout.Std(), RateLimit: s.RateLimit, Concurrency: s.Concurrency,
			}
			if lc.RateLimit == 0 {
				lc.RateLimit = -1 // our 0 means "no limit"; the client's 0 means "Laigo's documented 1/s"
			}
			if s.Sandbox {
				const id, secret = "sandbox-client", "sandbox-secret"
				sim := laigosim.New(laigosim.Config{ClientID: id, ClientSecret: secret, PendingPolls: s.SandboxPendingPolls,
					UploadPath: s.UploadPath, ResultPath: s.ResultPath})
				if env.StateDir != "" {
					if err := sim.KeepState(filepath.Join(env.StateDir, "jobs.jsonl")); err != nil {
						return nil, err
					}
					env.OnStop(func() { _ = sim.CloseState() })
				}
				url, err := env.Serve(sim)
				if err != nil {
					return nil, err
				}
				lc.BaseURL, lc.TokenURL, lc.ClientID, lc.ClientSecret = url, url+laigosim.TokenPath, id, secret
			}
			return New(lc)
		},
	}
}
