package imap

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/adapters/imap/mimewalk"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/intake"
)

// TLS modes.
const (
	TLSImplicit = "implicit" // port 993
	TLSStartTLS = "starttls" // port 143, upgraded before login
	TLSNone     = "none"     // plaintext: tests against a server on the loopback interface only
)

// Post-actions: what happens to a mail once every one of its documents is announced.
const (
	ActionSeen   = "seen"   // set \Seen (the default)
	ActionMove   = "move"   // move to After.Folder (created when missing)
	ActionFlag   = "flag"   // set the keyword After.Keyword
	ActionDelete = "delete" // set \Deleted and expunge that mail only
	ActionNone   = "none"   // leave it as it is; the checkpoint alone remembers it
)

// RejectedKeyword marks a mail that could not be processed (over the MIME limits, malformed): it
// stays in the mailbox, unread, for someone to look at, and the watcher moves on past it.
const RejectedKeyword = "$IngestRejected"

// Config configures one watched mailbox.
type Config struct {
	// Name is the source's name: events say source {kind: imap, name: Name}; it keys the
	// checkpoint, the metrics and the lease. 1-64 of a-z, 0-9, _ and -.
	Name string
	Host string
	Port int    // default 993 (implicit TLS), 143 otherwise
	TLS  string // TLSImplicit (default), TLSStartTLS or TLSNone
	// TLSConfig is for private CAs and tests; nil uses the system roots and Host as server name.
	TLSConfig *tls.Config

	Username string
	Password string  // for LOGIN; ignored when OAuth2 is set
	OAuth2   *OAuth2 // XOAUTH2 or OAUTHBEARER, whichever the server offers

	Mailbox string   // default INBOX
	Vendors []string // go into each received event (intake.Origin)
	Route   string

	PollInterval    time.Duration // between polls when the server has no IDLE; default 1m
	CatchUpInterval time.Duration // a full pass even while IDLE reports nothing; default 15m
	IdleRestart     time.Duration // IDLE is re-issued this often (checks the link); default 9m, < 29m
	// NoIdle polls even where the server offers IDLE (for servers or proxies whose IDLE is
	// unreliable).
	NoIdle bool

	After   After
	Filters Filters

	IncludeBody bool // the mail's text body parts become documents too
	IncludeEML  bool // the whole message (.eml) becomes a document too
	Limits      mimewalk.Limits
	// MaxDocumentBytes caps each document (an attachment, the .eml); default 64 MiB.
	MaxDocumentBytes int64

	Bus        *events.Bus
	Intake     *intake.Intake
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
}

// OAuth2 says where access tokens come from. Exactly one of TokenCommand, TokenFile or TokenURL
// (the refresh-token flow) is set.
type OAuth2 struct {
	// TokenCommand is run (argv, no shell) before each connection; its stdout is the token.
	TokenCommand []string
	// TokenFile is read before each connection (something else keeps it fresh).
	TokenFile string

	// The refresh-token flow. RefreshToken is the one obtained at consent; providers that rotate
	// refresh tokens (Microsoft) hand out a new one on every use, which is kept in a KV bucket at
	// once and used from then on. Putting a different RefreshToken here (after a re-consent)
	// replaces the kept one.
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
	RefreshToken string
	// HTTPClient for the token endpoint (proxies, private CAs); nil: http.DefaultClient.
	HTTPClient *http.Client
}

// After is the post-action.
type After struct {
	Action  string // ActionSeen (default), ActionMove, ActionFlag, ActionDelete, ActionNone
	Folder  string // for move
	Keyword string // for flag, e.g. $Ingested
}

// Filters choose the mails and parts to ingest. A mail that fails a mail filter, or none of whose
// parts passes the part filters, is left untouched (no post-action); the checkpoint moves past it
// all the same.
type Filters struct {
	From, To, Subject *regexp.Regexp // matched against the decoded header (To also against Cc)
	Filenames         []string       // globs on the attachment's file name, case-insensitive
	ContentTypes      []string       // globs on the sniffed type, e.g. application/pdf, image/*
	MinSize, MaxSize  int64          // the whole message (RFC822.SIZE); 0 = no bound
	UnseenOnly        bool
	Since             time.Time // arrival (INTERNALDATE) on or after
}

const (
	defaultMaxDocumentBytes = 64 << 20
	maxIdleRestart          = 29 * time.Minute // RFC 2177: servers may drop an IDLE after 30 minutes
)

// Check reports every problem of c a person can fix in the configuration, under the key of
// sources.imap[i] it concerns, without filling anything in. The service runs it for `ingest config
// check` and before it starts anything; New runs it again.
func (c Config) Check(report config.Report) {
	if !events.ValidToken(c.Name) {
		report("name", "%q must be 1-64 characters of a-z, 0-9, _ and -", c.Name)
	}
	if c.Host == "" {
		report("host", "is required")
	}
	switch c.TLS {
	case "", TLSImplicit, TLSStartTLS:
	case TLSNone:
		if c.Host != "" && !isLoopback(c.Host) {
			report("tls", "none sends the password in clear text and is allowed only for a server on this machine (for tests), not %q", c.Host)
		}
	default:
		report("tls", "must be implicit, starttls or none, not %q", c.TLS)
	}
	if c.Port < 0 || c.Port > 65535 {
		report("port", "must be a port number, not %d", c.Port)
	}
	if c.Username == "" {
		report("username", "is required")
	}
	if c.OAuth2 != nil {
		c.OAuth2.check(config.Under("oauth2", report))
	} else if c.Password == "" {
		report("", "a password or oauth2 settings are required")
	}
	if c.IdleRestart >= maxIdleRestart {
		report("idle_restart", "must be under %s (servers drop an IDLE after 30 minutes), not %s", maxIdleRestart, c.IdleRestart)
	}
	mailbox := c.Mailbox
	if mailbox == "" {
		mailbox = "INBOX"
	}
	switch c.After.Action {
	case "", ActionSeen, ActionDelete, ActionNone:
	case ActionMove:
		if c.After.Folder == "" {
			report("after", "move needs a folder")
		} else if c.After.Folder == mailbox {
			report("after", "move to %q, the watched mailbox itself, would do nothing", c.After.Folder)
		}
	case ActionFlag:
		if !validKeyword(c.After.Keyword) {
			report("after", "flag needs a keyword of letters, digits and $_-. (e.g. $Ingested), not %q", c.After.Keyword)
		}
	default:
		report("after", "must be seen, move, flag, delete or none, not %q", c.After.Action)
	}
	for _, g := range append(append([]string(nil), c.Filters.Filenames...), c.Filters.ContentTypes...) {
		if _, err := path.Match(g, ""); err != nil {
			report("filters", "pattern %q is not a valid glob: %v", g, err)
		}
	}
	if c.Filters.MaxSize > 0 && c.Filters.MinSize > c.Filters.MaxSize {
		report("filters.max_size", "is below min_size (%d bytes)", c.Filters.MinSize)
	}
}

// withDefaults checks c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	var problems []config.Problem
	c.Check(config.Collect(&problems))
	if c.Bus == nil {
		problems = append(problems, config.Problem{Message: "a Bus is required"})
	}
	if c.Intake == nil {
		problems = append(problems, config.Problem{Message: "an Intake is required"})
	}
	if len(problems) > 0 {
		errs := make([]error, len(problems))
		for i, p := range problems {
			errs[i] = errors.New(p.String())
		}
		return c, fmt.Errorf("imap source %q: %w", c.Name, errors.Join(errs...))
	}
	if c.TLS == "" {
		c.TLS = TLSImplicit
	}
	if c.Port == 0 {
		c.Port = 143
		if c.TLS == TLSImplicit {
			c.Port = 993
		}
	}
	if c.Mailbox == "" {
		c.Mailbox = "INBOX"
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Minute
	}
	if c.CatchUpInterval <= 0 {
		c.CatchUpInterval = 15 * time.Minute
	}
	if c.IdleRestart <= 0 {
		c.IdleRestart = 9 * time.Minute
	}
	if c.After.Action == "" {
		c.After.Action = ActionSeen
	}
	if c.MaxDocumentBytes <= 0 {
		c.MaxDocumentBytes = defaultMaxDocumentBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func (o *OAuth2) check(report config.Report) {
	set := 0
	for _, s := range []bool{len(o.TokenCommand) > 0, o.TokenFile != "", o.TokenURL != ""} {
		if s {
			set++
		}
	}
	switch {
	case set != 1:
		report("", "needs exactly one of token_command, token_file or token_url")
	case o.TokenURL != "" && (o.ClientID == "" || o.RefreshToken == ""):
		report("", "with token_url needs client_id and refresh_token")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validKeyword: an IMAP flag keyword is an atom; we allow the conservative subset every server
// takes.
func validKeyword(k string) bool {
	if k == "" || len(k) > 64 || strings.HasPrefix(k, `\`) {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("$_-.", r)) {
			return false
		}
	}
	return true
}
