package allspark

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/allspark/allsparksim"
)

// Settings are Allspark's keys under vendors.allspark.
type Settings struct {
	vendors.Common    `yaml:",inline"`
	vendors.Callbacks `yaml:",inline"`
	APIKey            string   `yaml:"api_key"`
	DocumentType      string   `yaml:"document_type"`
	DoneStatuses      []string `yaml:"done_statuses"`
	FailedStatuses    []string `yaml:"failed_statuses"`
	// UploadPath is the direct upload under base_url: Allspark's document shows both
	// /cases/direct-upload/ and /direct-upload/.
	UploadPath string `yaml:"upload_path"`
}

// Validate checks the production key and that no status is both done and failed.
func (s *Settings) Validate(report config.Report) {
	s.Require(report, map[string]string{"api_key": s.APIKey})
	if !strings.HasPrefix(s.UploadPath, "/") || strings.ContainsAny(s.UploadPath, "?# ") {
		report("upload_path", "%q must be a path starting with / (no query)", s.UploadPath)
	}
	for _, d := range s.DoneStatuses {
		if hasStatus(s.FailedStatuses, d) {
			report("done_statuses", "%q is also one of failed_statuses", d)
		}
	}
}

// Spec makes Allspark known to ingest.
func Spec() vendors.Spec {
	return vendors.Spec{
		Name: Name,
		NewConfig: func() vendors.Config {
			return &Settings{Common: vendors.DefaultCommon(DefaultBaseURL), Callbacks: vendors.DefaultCallbacks(),
				DoneStatuses: []string{"completed"}, FailedStatuses: []string{"failed", "error"}, UploadPath: DefaultUploadPath}
		},
		New: func(_ context.Context, cfg vendors.Config, env vendors.Env) (vendors.Vendor, error) {
			s := cfg.(*Settings)
			ac := Config{
				BaseURL: s.BaseURL, APIKey: s.APIKey, DocumentType: s.DocumentType,
				DoneStatuses: s.DoneStatuses, FailedStatuses: s.FailedStatuses, FetchOCR: true, UploadPath: s.UploadPath,
				Timeout: s.Timeout.Std(), RateLimit: s.RateLimit, Concurrency: s.Concurrency,
			}
			if s.Sandbox {
				const key = "sandbox-api-key"
				sc := allsparksim.Config{APIKey: key, PendingPolls: s.SandboxPendingPolls, UploadPath: s.UploadPath}
				if s.CallbackToken != "" && env.PublicURL != "" {
					// As Allspark does once a callback URL is set in its console: the case
					// completes on its own and is announced to us.
					sc.CallbackURL = env.PublicURL + "/v1/callbacks/" + Name + "/" + s.CallbackToken
					sc.CallbackAfter = 200 * time.Millisecond
				}
				sim := allsparksim.New(sc)
				if env.StateDir != "" {
					if err := sim.KeepState(filepath.Join(env.StateDir, "cases.jsonl")); err != nil {
						return nil, err
					}
				}
				// Callbacks stop first, so that completions under way are journaled before
				// the journal closes.
				stop := func() {
					sim.Close()
					_ = sim.CloseState()
				}
				url, err := env.Serve(sim)
				if err != nil {
					stop()
					return nil, err
				}
				if env.OnStop != nil {
					env.OnStop(stop)
				}
				ac.BaseURL, ac.APIKey = url+allsparksim.Prefix, key
			}
			return New(ac)
		},
	}
}
