package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// IMAPSource is one mailbox to watch.
type IMAPSource struct {
	Name     string     `yaml:"name"`
	Host     string     `yaml:"host"`
	Port     int        `yaml:"port"` // 0: 993 for implicit TLS, 143 otherwise
	TLS      string     `yaml:"tls"`  // implicit, starttls, none (tests only)
	Username string     `yaml:"username"`
	Password string     `yaml:"password"`
	OAuth2   IMAPOAuth2 `yaml:"oauth2"`
	Mailbox  string     `yaml:"mailbox"`
	Route    string     `yaml:"route"`
	Vendor   StringList `yaml:"vendor"` // one name or a list
	// PollInterval is for servers without IDLE; CatchUpInterval a full look even with IDLE;
	// IdleRestart re-issues IDLE before servers' 29-minute limit.
	PollInterval    Duration    `yaml:"poll_interval"`
	CatchUpInterval Duration    `yaml:"catch_up_interval"`
	IdleRestart     Duration    `yaml:"idle_restart"`
	After           After       `yaml:"after"`
	Filters         IMAPFilters `yaml:"filters"`
	IncludeBody     bool        `yaml:"include_body"` // the mail's text as a document too
	IncludeEML      bool        `yaml:"include_eml"`  // the whole .eml as a document too
	Limits          MailLimits  `yaml:"limits"`
}

// IMAPOAuth2 gets XOAUTH2/OAUTHBEARER tokens (Gmail, Microsoft 365): from a command, a file, or a
// refresh token that the service keeps rotating.
type IMAPOAuth2 struct {
	TokenCommand []string `yaml:"token_command"` // argv, no shell: [helper, --account, x]; stdout is the token
	TokenFile    string   `yaml:"token_file"`    // re-read before each login
	TokenURL     string   `yaml:"token_url"`
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret"`
	RefreshToken string   `yaml:"refresh_token"` // the first one; rotated ones are kept in KV
	Scopes       []string `yaml:"scopes"`
}

func (o IMAPOAuth2) set() bool {
	return len(o.TokenCommand) > 0 || o.TokenFile != "" || o.RefreshToken != ""
}

// IMAPFilters choose the mails (and attachments) to take; a mail that matches nothing is left
// untouched.
type IMAPFilters struct {
	From         string     `yaml:"from"`    // regular expression
	To           string     `yaml:"to"`      // regular expression
	Subject      string     `yaml:"subject"` // regular expression
	Filename     StringList `yaml:"filename"`
	ContentTypes []string   `yaml:"content_types"` // sniffed types, globs: application/pdf, image/*
	MinSize      ByteSize   `yaml:"min_size"`
	MaxSize      ByteSize   `yaml:"max_size"`
	UnseenOnly   bool       `yaml:"unseen_only"`
	Since        string     `yaml:"since"` // YYYY-MM-DD
}

// MailLimits guard against hostile mail; a mail over them becomes a rejected event.
type MailLimits struct {
	MaxDepth        int      `yaml:"max_depth"`
	MaxParts        int      `yaml:"max_parts"`
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
	MaxPartBytes    ByteSize `yaml:"max_part_bytes"`
}

// WebDAVSource is one folder to watch.
type WebDAVSource struct {
	Name             string     `yaml:"name"`
	URL              string     `yaml:"url"`
	Username         string     `yaml:"username"`
	Password         string     `yaml:"password"`
	BearerToken      string     `yaml:"bearer_token"`
	Recursive        bool       `yaml:"recursive"`
	Include          []string   `yaml:"include"`
	Exclude          []string   `yaml:"exclude"`
	PollInterval     Duration   `yaml:"poll_interval"`
	MinAge           Duration   `yaml:"min_age"`
	Route            string     `yaml:"route"`
	Vendor           StringList `yaml:"vendor"`
	After            After      `yaml:"after"`       // move: processed/ (default), delete, keep
	MoveFailed       string     `yaml:"move_failed"` // e.g. failed/
	ReingestOnChange bool       `yaml:"reingest_on_change"`
	TLS              SourceTLS  `yaml:"tls"`
}

// SourceTLS configures TLS to a source server.
type SourceTLS struct {
	CAFile             string `yaml:"ca_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// StringList is one string or a list of them.
type StringList []string

// UnmarshalYAML takes "a", "a, b" or [a, b].
func (s *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*s = nil
		for _, v := range strings.Split(n.Value, ",") {
			if v = strings.TrimSpace(v); v != "" {
				*s = append(*s, v)
			}
		}
		return nil
	case yaml.SequenceNode:
		var out []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a name or a list of names", c.Line)}}
			}
			out = append(out, c.Value)
		}
		*s = out
		return nil
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a name or a list of names", n.Line)}}
}

// After is what happens to a source item once its documents are safe: a word (seen, delete,
// keep, none) or one key with an argument ({move: Done}, {flag: $Ingested}).
type After struct {
	Action string // seen, move, flag, delete, keep, none
	Target string // the folder (move) or keyword (flag)
}

// UnmarshalYAML reads both forms.
func (a *After) UnmarshalYAML(n *yaml.Node) error {
	fail := func(format string, args ...any) error {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Sprintf(format, args...))}}
	}
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Value {
		case "seen", "delete", "keep", "none":
			*a = After{Action: n.Value}
			return nil
		}
		return fail("%q is not one of seen, delete, keep, none, {move: FOLDER}, {flag: KEYWORD}", n.Value)
	case yaml.MappingNode:
		if len(n.Content) != 2 || n.Content[1].Kind != yaml.ScalarNode {
			return fail("want one key: {move: FOLDER} or {flag: KEYWORD}")
		}
		k, v := n.Content[0].Value, strings.TrimSpace(n.Content[1].Value)
		if k != "move" && k != "flag" {
			return fail("unknown key %q (want move or flag)", k)
		}
		if v == "" {
			return fail("%s needs a value", k)
		}
		*a = After{Action: k, Target: v}
		return nil
	}
	return fail("want a word or {move: FOLDER}")
}

// MarshalYAML writes After back in the form it is read.
func (a After) MarshalYAML() (any, error) {
	if a.Target == "" {
		return a.Action, nil
	}
	return map[string]string{a.Action: a.Target}, nil
}

// DefaultIMAPSource is a mailbox's configuration before its keys are read: port 0 means 993 with
// implicit TLS and 143 otherwise.
func DefaultIMAPSource() IMAPSource {
	return IMAPSource{TLS: "implicit", Mailbox: "INBOX", After: After{Action: "seen"},
		PollInterval: Duration(time.Minute), CatchUpInterval: Duration(15 * time.Minute), IdleRestart: Duration(9 * time.Minute)}
}

// UnmarshalYAML reads a mailbox over its defaults.
func (s *IMAPSource) UnmarshalYAML(n *yaml.Node) error {
	type plain IMAPSource
	p := plain(DefaultIMAPSource())
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = IMAPSource(p)
	return nil
}

// DefaultWebDAVSource is a folder's configuration before its keys are read.
func DefaultWebDAVSource() WebDAVSource {
	return WebDAVSource{PollInterval: Duration(30 * time.Second), MinAge: Duration(10 * time.Second),
		After: After{Action: "move", Target: "processed/"}}
}

// UnmarshalYAML reads a folder over its defaults.
func (s *WebDAVSource) UnmarshalYAML(n *yaml.Node) error {
	type plain WebDAVSource
	p := plain(DefaultWebDAVSource())
	if err := n.Decode(&p); err != nil {
		return err
	}
	*s = WebDAVSource(p)
	return nil
}

// validateSources reports the problems of the sources this package can see (names, shapes,
// routing); each source's component checks the rest.
func (c *Config) validateSources(enabled []string, bad Report) {
	names := map[string]bool{}
	unique := func(key, kind, name string) {
		if !validNamespace(name) {
			bad(key+".name", "%q must be 1-32 characters of a-z, 0-9, _ or -, starting with a letter", name)
		}
		if names[kind+"/"+name] {
			bad(key+".name", "%q is used twice", name)
		}
		names[kind+"/"+name] = true
	}
	for i := range c.Sources.IMAP {
		s := &c.Sources.IMAP[i]
		key := fmt.Sprintf("sources.imap[%d]", i)
		unique(key, "imap", s.Name)
		if s.OAuth2.RefreshToken != "" && (s.OAuth2.TokenURL == "" || s.OAuth2.ClientID == "") {
			bad(key+".oauth2", "refresh_token needs token_url and client_id")
		}
		if s.Password != "" && s.OAuth2.set() {
			bad(key, "set either password or oauth2 (token_command, token_file or refresh_token), not both")
		}
		for field, re := range map[string]string{"from": s.Filters.From, "to": s.Filters.To, "subject": s.Filters.Subject} {
			if _, err := regexp.Compile(re); err != nil {
				bad(key+".filters."+field, "%q is not a regular expression: %v", re, err)
			}
		}
		if s.Filters.Since != "" {
			if _, err := time.Parse("2006-01-02", s.Filters.Since); err != nil {
				bad(key+".filters.since", "%q is not a date like 2026-01-31", s.Filters.Since)
			}
		}
		c.checkRouting(key, s.Route, s.Vendor, enabled, bad)
	}
	for i := range c.Sources.WebDAV {
		s := &c.Sources.WebDAV[i]
		key := fmt.Sprintf("sources.webdav[%d]", i)
		unique(key, "webdav", s.Name)
		if s.Password != "" && s.Username == "" {
			bad(key+".username", "is required with password")
		}
		if s.MinAge < 0 || s.PollInterval < Duration(time.Second) {
			bad(key, "poll_interval must be at least 1s and min_age not negative")
		}
		c.checkRouting(key, s.Route, s.Vendor, enabled, bad)
	}
}

// checkRouting makes sure a source's route or vendors exist.
func (c *Config) checkRouting(key, route string, vendors []string, enabled []string, bad Report) {
	for _, v := range vendors {
		found := false
		for _, e := range enabled {
			found = found || e == v
		}
		if !found {
			bad(key+".vendor", "vendor %q is not enabled (enabled: %s)", v, strings.Join(enabled, ", "))
		}
	}
	if route == "" {
		return
	}
	for _, r := range c.Routes {
		if r.Name == route {
			return
		}
	}
	bad(key+".route", "there is no route %q", route)
}
