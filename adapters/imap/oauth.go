package imap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"
)

// ErrReconsent says the identity provider refused the refresh token (revoked, expired, or an
// older one of a rotating provider): someone has to sign in again and configure the new refresh
// token. Health returns it (errors.Is) until that has happened.
var ErrReconsent = errors.New("the OAuth refresh token was refused; re-consent is needed: sign in again and put the new refresh token into the configuration")

// tokenSource yields an OAuth2 access token for the next login.
type tokenSource interface {
	token(ctx context.Context) (string, error)
	// invalidate drops a cached access token that the server refused.
	invalidate()
}

func newTokenSource(ctx context.Context, cfg Config, log *slog.Logger) (tokenSource, error) {
	o := cfg.OAuth2
	switch {
	case len(o.TokenCommand) > 0:
		return commandToken(o.TokenCommand), nil
	case o.TokenFile != "":
		return fileToken(o.TokenFile), nil
	}
	kv, err := keyValue(ctx, cfg.Bus, tokenBucket, "rotated OAuth refresh tokens of IMAP sources")
	if err != nil {
		return nil, err
	}
	seed := sha256.Sum256([]byte(o.RefreshToken))
	return &refresher{
		conf: oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret, Scopes: o.Scopes,
			Endpoint: oauth2.Endpoint{TokenURL: o.TokenURL}},
		http: o.HTTPClient, kv: kv, key: cfg.Name, seed: hex.EncodeToString(seed[:]), configured: o.RefreshToken,
		log: log,
	}, nil
}

// commandToken runs a command for each token (an `az account get-access-token`, a vault helper).
type commandToken []string

func (c commandToken) token(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c[0], c[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("oauth2 token command %s failed: %w: %s", c[0], err, firstLine(stderr.String()))
	}
	tok := strings.TrimSpace(string(out))
	if tok == "" {
		return "", fmt.Errorf("oauth2 token command %s printed no token", c[0])
	}
	return tok, nil
}

func (commandToken) invalidate() {}

// fileToken reads a file that something else keeps fresh.
type fileToken string

func (f fileToken) token(context.Context) (string, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return "", fmt.Errorf("read the oauth2 token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("the oauth2 token file %s is empty", f)
	}
	return tok, nil
}

func (fileToken) invalidate() {}

// refresher runs the refresh-token grant. Providers such as Microsoft rotate the refresh token on
// every use and revoke the old one, so the new one is written to the KV bucket before the access
// token is used: a restart after that picks it up instead of the configured, now dead, one.
type refresher struct {
	conf       oauth2.Config
	http       *http.Client // nil: http.DefaultClient
	kv         jetstream.KeyValue
	key        string
	seed       string // digest of the configured refresh token the kept ones descend from
	configured string
	log        *slog.Logger

	mu      sync.Mutex
	current string        // refresh token to use next; "" until loaded
	unsaved bool          // current is not in the bucket yet
	access  *oauth2.Token // cached access token
}

// keptToken is the bucket's record.
type keptToken struct {
	RefreshToken string    `json:"refresh_token"`
	Seed         string    `json:"seed"`
	UpdatedAt    time.Time `json:"updated_at"`
}

func (r *refresher) token(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.access != nil && time.Until(r.access.Expiry) > 2*time.Minute {
		return r.access.AccessToken, nil
	}
	if r.current == "" {
		if err := r.load(ctx); err != nil {
			return "", err
		}
	}
	if r.http != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, r.http)
	}
	tok, err := r.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: r.current}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && refused(re) {
			return "", fmt.Errorf("%w (the token endpoint said: %s)", ErrReconsent, describeRetrieveError(re))
		}
		return "", fmt.Errorf("refresh the oauth2 access token at %s: %w", r.conf.Endpoint.TokenURL, err)
	}
	if tok.RefreshToken != "" && tok.RefreshToken != r.current {
		r.current, r.unsaved = tok.RefreshToken, true
	}
	if r.unsaved {
		r.save(ctx)
	}
	r.access = tok
	return tok.AccessToken, nil
}

func (r *refresher) invalidate() {
	r.mu.Lock()
	r.access = nil
	r.mu.Unlock()
}

// load picks the refresh token to start from: the kept one, unless the configured one changed
// since (a re-consent).
func (r *refresher) load(ctx context.Context) error {
	r.current = r.configured
	e, err := r.kv.Get(ctx, r.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the kept oauth2 refresh token: %w", err)
	}
	var kept keptToken
	if err := json.Unmarshal(e.Value(), &kept); err != nil {
		r.log.Warn("the kept oauth2 refresh token is unreadable; using the configured one", "err", err)
		return nil
	}
	if kept.Seed == r.seed && kept.RefreshToken != "" {
		r.current = kept.RefreshToken
	} else {
		r.log.Info("the configured oauth2 refresh token changed (re-consent); using it instead of the kept one")
	}
	return nil
}

// save keeps the rotated refresh token. A failure is loud but not fatal: the token stays in memory
// and saving is tried again on the next refresh.
func (r *refresher) save(ctx context.Context) {
	body, _ := json.Marshal(keptToken{RefreshToken: r.current, Seed: r.seed, UpdatedAt: time.Now().UTC()})
	if _, err := r.kv.Put(context.WithoutCancel(ctx), r.key, body); err != nil {
		r.log.Error("could not keep the new oauth2 refresh token; the provider revoked the old one, so if this process stops before it is saved a re-consent will be needed", "err", err)
		return
	}
	r.unsaved = false
	r.log.Info("oauth2 refresh token rotated and kept")
}

// refused tells a refresh token the provider will never take again from a passing failure.
func refused(re *oauth2.RetrieveError) bool {
	switch re.ErrorCode {
	case "invalid_grant", "unauthorized_client", "invalid_client":
		return true
	}
	return re.ErrorCode == "" && re.Response != nil && (re.Response.StatusCode == 400 || re.Response.StatusCode == 401)
}

func describeRetrieveError(re *oauth2.RetrieveError) string {
	s := re.ErrorCode
	if re.ErrorDescription != "" {
		s += ": " + re.ErrorDescription
	}
	if s == "" && re.Response != nil {
		s = re.Response.Status
	}
	return firstLine(s)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
