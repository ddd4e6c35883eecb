package vendors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Tokens caches an OAuth2 access token and renews it before it expires. After a 401 a caller
// invalidates the token it used, so the next call fetches a new one.
type Tokens struct {
	vendor string
	fetch  func(ctx context.Context, prev *oauth2.Token) (*oauth2.Token, error)
	early  time.Duration
	now    func() time.Time

	mu  sync.Mutex
	tok *oauth2.Token
}

// OAuthConfig describes a token endpoint and the client's credentials.
type OAuthConfig struct {
	Vendor       string
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string
	// AuthStyle: how client credentials travel. oauth2.AuthStyleInParams (form body: Keycloak as
	// as most vendors document it) or oauth2.AuthStyleInHeader (Basic).
	AuthStyle oauth2.AuthStyle
	// EndpointParams are extra form values (an "audience").
	EndpointParams map[string][]string
	// HTTP is the client for token requests (the sandbox's, a test's); http.DefaultClient if nil.
	HTTP *http.Client
	// RenewBefore is how long before expiry a token is renewed; 30 s by default.
	RenewBefore time.Duration
}

func (c OAuthConfig) ctx(ctx context.Context) context.Context {
	if c.HTTP != nil {
		return context.WithValue(ctx, oauth2.HTTPClient, c.HTTP)
	}
	return ctx
}

func newTokens(c OAuthConfig, fetch func(ctx context.Context, prev *oauth2.Token) (*oauth2.Token, error)) *Tokens {
	if c.RenewBefore == 0 {
		c.RenewBefore = 30 * time.Second
	}
	return &Tokens{vendor: c.Vendor, fetch: fetch, early: c.RenewBefore, now: time.Now}
}

// ClientCredentials gets tokens with the client_credentials grant. There is no refresh token in
// this grant: a new token is simply requested.
func ClientCredentials(c OAuthConfig) *Tokens {
	cc := &clientcredentials.Config{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: c.TokenURL,
		Scopes: c.Scopes, AuthStyle: c.AuthStyle, EndpointParams: c.EndpointParams,
	}
	return newTokens(c, func(ctx context.Context, _ *oauth2.Token) (*oauth2.Token, error) {
		return cc.Token(c.ctx(ctx))
	})
}

// PasswordGrant logs in with the resource-owner password grant, renews with the refresh token
// while that is valid, and logs in again when it is not (refresh tokens that last 30 min).
func PasswordGrant(c OAuthConfig, username, password string) *Tokens {
	oc := &oauth2.Config{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, Scopes: c.Scopes,
		Endpoint: oauth2.Endpoint{TokenURL: c.TokenURL, AuthStyle: c.AuthStyle},
	}
	return newTokens(c, func(ctx context.Context, prev *oauth2.Token) (*oauth2.Token, error) {
		ctx = c.ctx(ctx)
		if prev != nil && prev.RefreshToken != "" {
			// An expired access token with its refresh token: oauth2 refreshes.
			tok, err := oc.TokenSource(ctx, &oauth2.Token{RefreshToken: prev.RefreshToken}).Token()
			if err == nil {
				return tok, nil
			}
			// A refused refresh (expired, revoked) is no reason to give up: log in again.
		}
		return oc.PasswordCredentialsToken(ctx, username, password)
	})
}

// StaticToken is a fixed bearer token (tests, or a vendor account that hands out long-lived ones).
func StaticToken(vendor, token string) *Tokens {
	return &Tokens{vendor: vendor, now: time.Now, fetch: func(context.Context, *oauth2.Token) (*oauth2.Token, error) {
		return &oauth2.Token{AccessToken: token}, nil
	}}
}

// Token returns a valid access token, fetching one when needed.
func (t *Tokens) Token(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != nil && t.tok.AccessToken != "" && (t.tok.Expiry.IsZero() || t.now().Add(t.early).Before(t.tok.Expiry)) {
		return t.tok.AccessToken, nil
	}
	tok, err := t.fetch(ctx, t.tok)
	if err != nil {
		return "", tokenError(t.vendor, err)
	}
	if tok.AccessToken == "" {
		return "", &Error{Vendor: t.vendor, Op: "token", Permanent: true, Message: "the token endpoint answered without an access_token"}
	}
	t.tok = tok
	return tok.AccessToken, nil
}

// Invalidate drops the token if it is still the one that was refused, keeping its refresh token.
func (t *Tokens) Invalidate(refused string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != nil && t.tok.AccessToken == refused {
		t.tok = &oauth2.Token{RefreshToken: t.tok.RefreshToken}
	}
}

func tokenError(vendor string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		e := &Error{Vendor: vendor, Op: "token", Status: re.Response.StatusCode, Err: err}
		e.Message = re.ErrorDescription
		if e.Message == "" {
			e.Message = re.ErrorCode
		}
		if e.Message == "" {
			e.Message = MessageOf(re.Body)
		}
		e.Message = "token request refused: " + e.Message
		s := re.Response.StatusCode
		e.Permanent = s != http.StatusTooManyRequests && s != http.StatusRequestTimeout && s < 500
		e.RetryAfter = ParseRetryAfter(re.Response.Header.Get("Retry-After"), time.Now())
		return e
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &Error{Vendor: vendor, Op: "token", Err: err, Message: fmt.Sprintf("token endpoint unreachable: %v", err)}
}
