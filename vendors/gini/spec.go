package gini

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/gini/ginisim"
)

// Settings are Gini's keys under vendors.gini: Basic client credentials with user_identifier (a
// backend), or username/password for a user token from token_url.
type Settings struct {
	vendors.Common `yaml:",inline"`
	TokenURL       string `yaml:"token_url"`
	ClientID       string `yaml:"client_id"`
	ClientSecret   string `yaml:"client_secret"`
	UserIdentifier string `yaml:"user_identifier"`
	Username       string `yaml:"username"`
	Password       string `yaml:"password"`
	FetchLayout    bool   `yaml:"fetch_layout"` // text from the layout endpoint
	// Accept is the media type of every API call: it pins the API version (Gini's documents:
	// application/vnd.gini.v1+json).
	Accept  string `yaml:"accept"`
	DocType string `yaml:"doc_type"`
	// ListNewestFirst: the account's document list is known to come newest first, so that a
	// crashed submission can be ruled out without reading the whole list.
	ListNewestFirst bool `yaml:"list_newest_first"`
}

// Validate checks the production credentials and that one way to authenticate is chosen.
func (s *Settings) Validate(report config.Report) {
	s.Require(report, map[string]string{"client_id": s.ClientID, "client_secret": s.ClientSecret})
	if !strings.HasPrefix(s.Accept, "application/") {
		report("accept", "%q is not a media type like application/vnd.gini.v1+json", s.Accept)
	}
	if !s.Enabled || s.Sandbox {
		return
	}
	if (s.UserIdentifier == "") == (s.Username == "") {
		report("", "set either user_identifier (Basic client credentials, for a backend) or username and password (a user token), not both and not neither")
	}
	if s.Username != "" && s.Password == "" {
		report("password", "is required with username")
	}
}

// Spec makes Gini known to ingest.
func Spec() vendors.Spec {
	return vendors.Spec{
		Name: name,
		NewConfig: func() vendors.Config {
			// The layout gives the document's text: completed events carry it unless turned off.
			return &Settings{Common: vendors.DefaultCommon(DefaultBaseURL), TokenURL: DefaultTokenURL, FetchLayout: true, Accept: DefaultAccept}
		},
		New: func(_ context.Context, cfg vendors.Config, env vendors.Env) (vendors.Vendor, error) {
			s := cfg.(*Settings)
			gc := Config{
				BaseURL: s.BaseURL, ClientID: s.ClientID, ClientSecret: s.ClientSecret, UserIdentifier: s.UserIdentifier,
				TokenURL: s.TokenURL, Username: s.Username, Password: s.Password, DocType: s.DocType, FetchLayout: s.FetchLayout, Accept: s.Accept,
				ListNewestFirst: s.ListNewestFirst,
				Timeout:         s.Timeout.Std(), RateLimit: s.RateLimit, Concurrency: s.Concurrency, Logger: env.Logger,
			}
			if s.Sandbox {
				const id, secret, user = "sandbox-client", "sandbox-secret", "sandbox-user"
				sim := ginisim.New(ginisim.Config{ClientID: id, ClientSecret: secret, PendingPolls: s.SandboxPendingPolls})
				if env.StateDir != "" {
					// Documents in flight when ingest stops are still at the sandbox when it
					// starts again, as they would be at Gini.
					if err := sim.KeepState(filepath.Join(env.StateDir, "documents.jsonl")); err != nil {
						return nil, err
					}
					env.OnStop(func() { _ = sim.CloseState() })
				}
				url, err := env.Serve(sim)
				if err != nil {
					return nil, err
				}
				// Backend mode: Basic client credentials and a user identifier.
				gc.BaseURL, gc.ClientID, gc.ClientSecret, gc.UserIdentifier = url, id, secret, user
				gc.Username, gc.Password = "", ""
			}
			return New(gc)
		},
	}
}
