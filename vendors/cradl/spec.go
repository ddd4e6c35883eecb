package cradl

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/cradl/cradlsim"
)

// Settings are Cradl's keys under vendors.cradl (classic API). Mode predictions runs a model on
// each document; workflow starts a workflow execution; email mails the document to the
// workflow's address (an execution per attachment). Completion comes by webhook (callback_token,
// webhook_secret) or by polling.
type Settings struct {
	vendors.Common    `yaml:",inline"`
	vendors.Callbacks `yaml:",inline"`
	TokenURL          string `yaml:"token_url"`
	ClientID          string `yaml:"client_id"`
	ClientSecret      string `yaml:"client_secret"`
	Mode              string `yaml:"mode"`
	ModelID           string `yaml:"model_id"`
	WorkflowID        string `yaml:"workflow_id"`
	WorkflowEmail     string `yaml:"workflow_email"`
	// WebhookSecret checks Cradl's signed webhooks; empty accepts unsigned (legacy) exports.
	WebhookSecret string `yaml:"webhook_secret"`
	// RequireSignedWebhooks (with a webhook_secret) refuses unsigned webhooks. Cradl's classic
	// workflow exports are never signed: turn it off to take them (on the secret URL alone).
	RequireSignedWebhooks bool         `yaml:"require_signed_webhooks"`
	SMTP                  SMTPSettings `yaml:"smtp"`
}

// SMTPSettings are the mail server the e-mail mode sends through.
type SMTPSettings struct {
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"` // 0: 587 for starttls, 465 for tls
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	From     string `yaml:"from"`
	TLS      string `yaml:"tls"` // starttls, tls (implicit) or none (never in production)
}

// Validate checks the mode and what it needs.
func (s *Settings) Validate(report config.Report) {
	if s.WebhookSecret != "" && s.CallbackToken == "" {
		report("webhook_secret", "needs callback_token (the webhook URL is /v1/callbacks/cradl/<callback_token>)")
	}
	switch s.Mode {
	case ModePredictions, ModeWorkflow, ModeEmail:
	default:
		report("mode", "%q is not one of predictions, workflow, email", s.Mode)
	}
	switch s.SMTP.TLS {
	case "starttls", "tls", "none":
	default:
		report("smtp.tls", "%q is not one of starttls, tls, none", s.SMTP.TLS)
	}
	s.Require(report, map[string]string{"client_id": s.ClientID, "client_secret": s.ClientSecret, "token_url": s.TokenURL})
	switch s.Mode {
	case ModePredictions:
		s.Require(report, map[string]string{"model_id": s.ModelID})
	case ModeWorkflow:
		s.Require(report, map[string]string{"workflow_id": s.WorkflowID})
	case ModeEmail:
		s.Require(report, map[string]string{"workflow_id": s.WorkflowID, "smtp.host": s.SMTP.Host, "smtp.from": s.SMTP.From})
	}
}

// Spec makes Cradl known to ingest.
func Spec() vendors.Spec {
	return vendors.Spec{
		Name: name,
		NewConfig: func() vendors.Config {
			return &Settings{Common: vendors.DefaultCommon(DefaultBaseURL), Callbacks: vendors.DefaultCallbacks(),
				TokenURL: DefaultTokenURL, Mode: ModeWorkflow, SMTP: SMTPSettings{TLS: "starttls"}, RequireSignedWebhooks: true}
		},
		New: func(_ context.Context, cfg vendors.Config, env vendors.Env) (vendors.Vendor, error) {
			s := cfg.(*Settings)
			cc := Config{
				BaseURL: s.BaseURL, TokenURL: s.TokenURL, ClientID: s.ClientID, ClientSecret: s.ClientSecret,
				Mode: s.Mode, ModelID: s.ModelID, WorkflowID: s.WorkflowID, WorkflowEmail: s.WorkflowEmail,
				SMTP: SMTPConfig{Host: s.SMTP.Host, Port: s.SMTP.Port, Username: s.SMTP.Username,
					Password: s.SMTP.Password, From: s.SMTP.From, TLS: s.SMTP.TLS},
				WebhookSecret: s.WebhookSecret, RequireSignedWebhooks: s.RequireSignedWebhooks,
				Timeout: s.Timeout.Std(), RateLimit: s.RateLimit, Concurrency: s.Concurrency, Logger: env.Logger,
			}
			if s.Sandbox {
				const (
					client, secret = "sandbox-client", "sandbox-secret"
					model          = "las:organization:cradl/las:model:invoice"
					workflow       = "las:workflow:sandbox"
					workflowEmail  = "workflow@sandbox.cradl.local"
				)
				sim, err := cradlsim.New(cradlsim.Config{
					ClientID: client, ClientSecret: secret, PendingPolls: s.SandboxPendingPolls,
					ModelID: model, WorkflowID: workflow, WorkflowEmail: workflowEmail,
				})
				if err != nil {
					return nil, fmt.Errorf("sandbox: %w", err)
				}
				if env.StateDir != "" {
					// Documents in flight are still known to the sandbox after a restart.
					if err := sim.KeepState(filepath.Join(env.StateDir, "state.jsonl")); err != nil {
						return nil, err // "sandbox state: …" already
					}
					env.OnStop(func() { _ = sim.CloseState() })
				}
				url, err := env.Serve(sim)
				if err != nil {
					return nil, err
				}
				cc.BaseURL, cc.TokenURL, cc.ClientID, cc.ClientSecret = url, url+"/oauth2/token", client, secret
				cc.ModelID, cc.WorkflowID, cc.WorkflowEmail = model, workflow, workflowEmail
				if s.Mode == ModeEmail {
					// The sandbox's mail goes to the simulator's own SMTP receiver, in clear on loopback.
					addr, stop, err := sim.ListenSMTP("127.0.0.1:0")
					if err != nil {
						return nil, fmt.Errorf("sandbox SMTP: %w", err)
					}
					env.OnStop(stop)
					host, port, _ := net.SplitHostPort(addr)
					p, _ := strconv.Atoi(port)
					cc.SMTP = SMTPConfig{Host: host, Port: p, From: "ingest@sandbox.local", TLS: "none"}
				}
			}
			return New(cc)
		},
	}
}
