package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"time"
)

// Vendors configures the document-AI vendors. Every vendor runs in sandbox by default: an
// in-process simulator of its API, so that a fresh install works end to end without accounts.
// Going to production is credentials plus sandbox: false.
type Vendors struct {
	Laigo    Laigo    `yaml:"laigo"`
	Gini     Gini     `yaml:"gini"`
	Allspark Allspark `yaml:"allspark"`
	DocuMine DocuMine `yaml:"documine"`
	Cradl    Cradl    `yaml:"cradl"`
}

// VendorCommon are the keys every vendor has.
type VendorCommon struct {
	Enabled bool `yaml:"enabled"`
	// Sandbox starts the vendor's simulator in-process and sends documents there.
	Sandbox bool `yaml:"sandbox"`
	// BaseURL is the API root the documented paths are appended to.
	BaseURL     string   `yaml:"base_url"`
	Timeout     Duration `yaml:"timeout"`     // one request, upload included
	RateLimit   float64  `yaml:"rate_limit"`  // requests per second; 0 = unlimited
	Concurrency int      `yaml:"concurrency"` // requests in flight; 0 = unlimited
	Poll        Poll     `yaml:"poll"`
	// SandboxPendingPolls is how many status checks the simulator answers "not yet".
	SandboxPendingPolls int `yaml:"sandbox_pending_polls"`
}

// Poll says how a vendor is asked whether it is done.
type Poll struct {
	Initial  Duration `yaml:"initial"`  // first delay after "not yet", doubling
	Max      Duration `yaml:"max"`      // delay cap
	Deadline Duration `yaml:"deadline"` // give up this long after submission
}

// Laigo smartICR.
type Laigo struct {
	VendorCommon  `yaml:",inline"`
	TokenURL      string   `yaml:"token_url"`
	ClientID      string   `yaml:"client_id"`
	ClientSecret  string   `yaml:"client_secret"`
	OutputFormats []string `yaml:"output_formats"`
	LanguageHint  string   `yaml:"language_hint"`
	FetchZIP      bool     `yaml:"fetch_zip"` // keep Laigo's ZIP (searchable PDF + text) as an artifact
}

// Gini: Basic client credentials with user_identifier (a backend), or username/password for a
// user token from token_url.
type Gini struct {
	VendorCommon   `yaml:",inline"`
	TokenURL       string `yaml:"token_url"`
	ClientID       string `yaml:"client_id"`
	ClientSecret   string `yaml:"client_secret"`
	UserIdentifier string `yaml:"user_identifier"`
	Username       string `yaml:"username"`
	Password       string `yaml:"password"`
	FetchLayout    bool   `yaml:"fetch_layout"` // text from the layout endpoint
	DocType        string `yaml:"doc_type"`
	// ListNewestFirst: the account's document list is known to come newest first, so that a
	// crashed submission can be ruled out without reading the whole list.
	ListNewestFirst bool `yaml:"list_newest_first"`
}

// Callback configures a vendor that calls us back when it is done.
type Callback struct {
	// CallbackToken enables POST /v1/callbacks/<vendor>/<token>: the secret in the URL given to
	// the vendor (at least 16 characters; use ${ENV}).
	CallbackToken string `yaml:"callback_token"`
	// CallbackAllowCIDRs, when set, are the only addresses callbacks are taken from.
	CallbackAllowCIDRs []string `yaml:"callback_allow_cidrs"`
	// CallbackPollAfter: with callbacks on, a submission is polled only if no callback settled
	// it within this time (polling is the safety net for a lost callback).
	CallbackPollAfter Duration `yaml:"callback_poll_after"`
}

func (c Callback) validate(vendor string, bad func(key, format string, args ...any)) {
	if c.CallbackToken != "" && len(c.CallbackToken) < 16 {
		bad(vendor+".callback_token", "is %d characters; use at least 16 (for example: openssl rand -hex 24)", len(c.CallbackToken))
	}
	for i, cidr := range c.CallbackAllowCIDRs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			bad(fmt.Sprintf("%s.callback_allow_cidrs[%d]", vendor, i), "%q is not an address range like 203.0.113.0/24", cidr)
		}
	}
	if c.CallbackPollAfter < 0 {
		bad(vendor+".callback_poll_after", "must not be negative")
	}
}

// Allspark (ikarus.ai).
type Allspark struct {
	VendorCommon   `yaml:",inline"`
	Callback       `yaml:",inline"`
	APIKey         string   `yaml:"api_key"`
	DocumentType   string   `yaml:"document_type"`
	DoneStatuses   []string `yaml:"done_statuses"`
	FailedStatuses []string `yaml:"failed_statuses"`
}

// Cradl (classic API). Mode predictions runs a model on each document; workflow starts a
// workflow execution; email mails the document to the workflow's address (an execution per
// attachment). Completion comes by webhook (callback_token, webhook_secret) or by polling.
type Cradl struct {
	VendorCommon  `yaml:",inline"`
	Callback      `yaml:",inline"`
	TokenURL      string `yaml:"token_url"`
	ClientID      string `yaml:"client_id"`
	ClientSecret  string `yaml:"client_secret"`
	Mode          string `yaml:"mode"`
	ModelID       string `yaml:"model_id"`
	WorkflowID    string `yaml:"workflow_id"`
	WorkflowEmail string `yaml:"workflow_email"`
	// WebhookSecret checks Cradl's signed webhooks; empty accepts unsigned (legacy) exports.
	WebhookSecret string `yaml:"webhook_secret"`
	SMTP          SMTP   `yaml:"smtp"`
}

// SMTP is the mail server the e-mail mode sends through.
type SMTP struct {
	Host     string `yaml:"host"`
	Port     int    `yaml:"port"` // 0: 587 for starttls, 465 for tls
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	From     string `yaml:"from"`
	TLS      string `yaml:"tls"` // starttls, tls (implicit) or none (never in production)
}

// DocuMine. Its paths are not public; each is a template ({templateId}, {dossierId}, {fileId}).
type DocuMine struct {
	VendorCommon      `yaml:",inline"`
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

func common(baseURL string) VendorCommon {
	return VendorCommon{
		Enabled: true, Sandbox: true, BaseURL: baseURL,
		Timeout: Duration(5 * time.Minute), Concurrency: 4,
		Poll:                Poll{Initial: Duration(time.Second), Max: Duration(time.Minute), Deadline: Duration(24 * time.Hour)},
		SandboxPendingPolls: 1,
	}
}

func defaultVendors() Vendors {
	laigo := common("https://use.laigo.io")
	laigo.RateLimit = 1 // documented: 1 request per second
	return Vendors{
		Laigo: Laigo{VendorCommon: laigo,
			TokenURL:      "https://account.laigo.io/realms/SmartTools/protocol/openid-connect/token",
			OutputFormats: []string{"PDF", "TEXT"}, FetchZIP: true},
		Gini: Gini{VendorCommon: common("https://api.gini.net"), TokenURL: "https://user.gini.net/oauth/token"},
		Allspark: Allspark{VendorCommon: common("https://api-prod.ikarus.ai/api/v1"), DoneStatuses: []string{"completed"}, FailedStatuses: []string{"failed", "error"},
			Callback: Callback{CallbackAllowCIDRs: []string{}, CallbackPollAfter: Duration(15 * time.Minute)}},
		DocuMine: DocuMine{VendorCommon: common("")},
		Cradl: Cradl{VendorCommon: common("https://api.lucidtech.ai/v1"), TokenURL: "https://auth.lucidtech.ai/oauth2/token",
			Mode: "workflow", Callback: Callback{CallbackAllowCIDRs: []string{}, CallbackPollAfter: Duration(15 * time.Minute)},
			SMTP: SMTP{TLS: "starttls"}},
	}
}

// Enabled lists the names of the enabled vendors.
func (v Vendors) Enabled() []string {
	var out []string
	for _, c := range []struct {
		name string
		on   bool
	}{{"laigo", v.Laigo.Enabled}, {"gini", v.Gini.Enabled}, {"allspark", v.Allspark.Enabled}, {"documine", v.DocuMine.Enabled}, {"cradl", v.Cradl.Enabled}} {
		if c.on {
			out = append(out, c.name)
		}
	}
	return out
}

func (v Vendors) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("vendors.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	// need reports missing credentials of a vendor going to production.
	need := func(vendor string, c VendorCommon, keys map[string]string) {
		if !c.Enabled || c.Sandbox {
			return
		}
		for k, val := range keys {
			if val == "" {
				bad(vendor+"."+k, "is required when sandbox is false (use ${ENV_VAR} to keep it out of the file)")
			}
		}
	}
	for name, c := range map[string]VendorCommon{"laigo": v.Laigo.VendorCommon, "gini": v.Gini.VendorCommon, "allspark": v.Allspark.VendorCommon, "documine": v.DocuMine.VendorCommon, "cradl": v.Cradl.VendorCommon} {
		if !c.Enabled {
			continue
		}
		if !c.Sandbox {
			if u, err := url.Parse(c.BaseURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
				bad(name+".base_url", "%q is not an http(s) URL", c.BaseURL)
			}
		}
		if c.Timeout <= 0 {
			bad(name+".timeout", "must be positive")
		}
		if c.RateLimit < 0 || c.Concurrency < 0 {
			bad(name, "rate_limit and concurrency must not be negative")
		}
		if c.Poll.Initial <= 0 || c.Poll.Max < c.Poll.Initial || c.Poll.Deadline < c.Poll.Max {
			bad(name+".poll", "want 0 < initial ≤ max ≤ deadline")
		}
		if c.SandboxPendingPolls < 0 {
			bad(name+".sandbox_pending_polls", "must not be negative")
		}
	}
	need("laigo", v.Laigo.VendorCommon, map[string]string{"client_id": v.Laigo.ClientID, "client_secret": v.Laigo.ClientSecret, "token_url": v.Laigo.TokenURL})
	need("gini", v.Gini.VendorCommon, map[string]string{"client_id": v.Gini.ClientID, "client_secret": v.Gini.ClientSecret})
	if g := v.Gini; g.Enabled && !g.Sandbox && (g.UserIdentifier == "") == (g.Username == "") {
		bad("gini", "set either user_identifier (Basic client credentials, for a backend) or username and password (a user token), not both and not neither")
	}
	if g := v.Gini; g.Enabled && !g.Sandbox && g.Username != "" && g.Password == "" {
		bad("gini.password", "is required with username")
	}
	v.Allspark.Callback.validate("allspark", bad)
	need("allspark", v.Allspark.VendorCommon, map[string]string{"api_key": v.Allspark.APIKey})
	need("documine", v.DocuMine.VendorCommon, map[string]string{
		"client_id": v.DocuMine.ClientID, "username": v.DocuMine.Username, "password": v.DocuMine.Password,
		"tenant": v.DocuMine.Tenant, "dossier_template_id": v.DocuMine.DossierTemplateID, "dossier_id": v.DocuMine.DossierID,
	})
	c := v.Cradl
	c.Callback.validate("cradl", bad)
	if c.WebhookSecret != "" && c.CallbackToken == "" {
		bad("cradl.webhook_secret", "needs callback_token (the webhook URL is /v1/callbacks/cradl/<callback_token>)")
	}
	switch c.Mode {
	case "predictions", "workflow", "email":
	default:
		bad("cradl.mode", "%q is not one of predictions, workflow, email", c.Mode)
	}
	switch c.SMTP.TLS {
	case "starttls", "tls", "none":
	default:
		bad("cradl.smtp.tls", "%q is not one of starttls, tls, none", c.SMTP.TLS)
	}
	if c.Enabled && !c.Sandbox {
		need("cradl", c.VendorCommon, map[string]string{"client_id": c.ClientID, "client_secret": c.ClientSecret, "token_url": c.TokenURL})
		switch c.Mode {
		case "predictions":
			need("cradl", c.VendorCommon, map[string]string{"model_id": c.ModelID})
		case "workflow":
			need("cradl", c.VendorCommon, map[string]string{"workflow_id": c.WorkflowID})
		case "email":
			need("cradl", c.VendorCommon, map[string]string{"workflow_id": c.WorkflowID, "smtp.host": c.SMTP.Host, "smtp.from": c.SMTP.From})
		}
	}
	return errs
}
