package imap_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	imapsrc "github.com/ingest-dev/ingest/adapters/imap"
	"github.com/ingest-dev/ingest/events/eventstest"
)

// oauthServer is the IMAP side: it takes only SASL mechanisms with bearer tokens, and only a
// token valid() approves.
type oauthServer struct {
	mechs []string
	valid func(token string) bool

	mu   sync.Mutex
	used []string // mechanisms of successful logins
}

func (o *oauthServer) wrap(s imapserver.SessionIMAP4rev2) imapserver.Session {
	return &oauthSession{SessionIMAP4rev2: s, o: o}
}

func (o *oauthServer) mechanismsUsed() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.used...)
}

type oauthSession struct {
	imapserver.SessionIMAP4rev2
	o *oauthServer
}

func (s *oauthSession) AuthenticateMechanisms() []string { return s.o.mechs }

func (s *oauthSession) Authenticate(mech string) (sasl.Server, error) {
	login := func(user, token string) error {
		if user != testUser || !s.o.valid(token) {
			return imapserver.ErrAuthFailed
		}
		s.o.mu.Lock()
		s.o.used = append(s.o.used, mech)
		s.o.mu.Unlock()
		return s.Login(testUser, testPass) // attaches the mailbox user to the session
	}
	switch mech {
	case "XOAUTH2":
		return &xoauth2Server{login: login}, nil
	case "OAUTHBEARER":
		return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if login(o.Username, o.Token) != nil {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		}), nil
	}
	return nil, &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "unsupported mechanism"}
}

// xoauth2Server answers like Gmail: a bad token gets a JSON challenge, the client's empty
// answer to it a NO.
type xoauth2Server struct {
	login  func(user, token string) error
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, imapserver.ErrAuthFailed
	}
	var user, token string
	for _, f := range strings.Split(string(resp), "\x01") {
		if v, ok := strings.CutPrefix(f, "user="); ok {
			user = v
		} else if v, ok := strings.CutPrefix(f, "auth=Bearer "); ok {
			token = v
		}
	}
	if err := x.login(user, token); err != nil {
		x.failed = true
		return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
	}
	return nil, true, nil
}

func TestOAuthTokenSourcesAndMechanisms(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("at-static\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		mechs    []string
		oauth    *imapsrc.OAuth2
		wantMech string
	}{
		{"token file, XOAUTH2 (Microsoft)", []string{"XOAUTH2"}, &imapsrc.OAuth2{TokenFile: tokenFile}, "XOAUTH2"},
		{"token command, OAUTHBEARER preferred", []string{"XOAUTH2", "OAUTHBEARER"}, &imapsrc.OAuth2{TokenCommand: []string{"echo", "at-static"}}, "OAUTHBEARER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			o := &oauthServer{mechs: tt.mechs, valid: func(tok string) bool { return tok == "at-static" }}
			srv := startMemServer(t, memOptions{wrap: o.wrap})
			srv.appendMail(t, "INBOX", simple("oauth"))
			cfg := e.config(srv.addr)
			cfg.Password, cfg.OAuth2 = "", tt.oauth
			start(t, cfg).waitHealthy(t)
			e.waitReceived(1, 10*time.Second)
			if used := o.mechanismsUsed(); len(used) == 0 || used[0] != tt.wantMech {
				t.Errorf("mechanisms used %v, want %s", used, tt.wantMech)
			}
		})
	}
}

func TestOAuthWrongTokenIsReportedByHealth(t *testing.T) {
	e := newEnv(t)
	o := &oauthServer{mechs: []string{"XOAUTH2"}, valid: func(tok string) bool { return tok == "right" }}
	srv := startMemServer(t, memOptions{wrap: o.wrap})
	cfg := e.config(srv.addr)
	cfg.Password, cfg.OAuth2 = "", &imapsrc.OAuth2{TokenCommand: []string{"echo", "wrong"}}
	waitHealthError(t, start(t, cfg), "authenticate as "+testUser)
}

// tokenEndpoint is an OAuth2 token endpoint that rotates refresh tokens like Microsoft's: each
// refresh hands out a new refresh token and the old one stops working.
type tokenEndpoint struct {
	*httptest.Server
	mu      sync.Mutex
	refresh string // the only refresh token that works
	access  string // the only access token the IMAP server takes
	issued  int
	revoked bool
}

func newTokenEndpoint(t *testing.T, first string) *tokenEndpoint {
	te := &tokenEndpoint{refresh: first}
	te.Server = httptest.NewServer(http.HandlerFunc(te.serve))
	t.Cleanup(te.Close)
	return te
}

func (te *tokenEndpoint) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Form.Get("grant_type") != "refresh_token" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	te.mu.Lock()
	defer te.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if te.revoked || r.Form.Get("refresh_token") != te.refresh {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant",
			"error_description": "AADSTS70000: The provided value for the 'refresh_token' is not valid."})
		return
	}
	te.issued++
	te.refresh, te.access = fmt.Sprintf("rt-%d", te.issued), fmt.Sprintf("at-%d", te.issued)
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": te.access, "token_type": "Bearer",
		"expires_in": 3600, "refresh_token": te.refresh})
}

func (te *tokenEndpoint) validAccess(tok string) bool {
	te.mu.Lock()
	defer te.mu.Unlock()
	return tok != "" && tok == te.access
}

func (te *tokenEndpoint) set(f func(*tokenEndpoint)) {
	te.mu.Lock()
	defer te.mu.Unlock()
	f(te)
}

// TestOAuthRotatingRefreshToken: the refresh token the provider rotates is kept at once, so that
// a restarted watcher uses the new one (the configured one is dead by then); a refused refresh
// token shows as ErrReconsent in Health; a new refresh token in the configuration (re-consent)
// replaces the kept one.
func TestOAuthRotatingRefreshToken(t *testing.T) {
	e := newEnv(t)
	te := newTokenEndpoint(t, "rt-0")
	o := &oauthServer{mechs: []string{"XOAUTH2"}, valid: te.validAccess}
	srv := startMemServer(t, memOptions{wrap: o.wrap})
	cfg := e.config(srv.addr)
	cfg.Password = ""
	cfg.OAuth2 = &imapsrc.OAuth2{TokenURL: te.URL, ClientID: "app", ClientSecret: "s3cret", RefreshToken: "rt-0",
		Scopes: []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"}}

	kept := func() string {
		kv, err := e.bus.JetStream().KeyValue(context.Background(), e.bus.Names().Bucket("imap-oauth"))
		if err != nil {
			t.Fatal(err)
		}
		entry, err := kv.Get(context.Background(), cfg.Name)
		if err != nil {
			t.Fatalf("no refresh token kept: %v", err)
		}
		var v struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := json.Unmarshal(entry.Value(), &v); err != nil {
			t.Fatal(err)
		}
		return v.RefreshToken
	}

	// 1. rt-0 is used and rotated: rt-1 is kept.
	a := start(t, cfg)
	a.waitHealthy(t)
	a.stop()
	if got := kept(); got != "rt-1" {
		t.Fatalf("kept refresh token %q, want rt-1", got)
	}

	// 2. A restart with rt-0 still configured (dead now) works from the kept rt-1.
	srv.appendMail(t, "INBOX", simple("after-restart"))
	b := start(t, cfg)
	b.waitHealthy(t)
	e.waitReceived(1, 10*time.Second)
	b.stop()
	if got := kept(); got != "rt-2" {
		t.Fatalf("kept refresh token %q, want rt-2", got)
	}

	// 3. The provider refuses the refresh token: re-consent.
	te.set(func(te *tokenEndpoint) { te.revoked = true })
	c := start(t, cfg)
	eventstest.WaitFor(t, 10*time.Second, "Health to ask for re-consent", func() bool {
		return errors.Is(c.w.Health(), imapsrc.ErrReconsent)
	})
	if err := c.w.Health(); !strings.Contains(err.Error(), "invalid_grant") {
		t.Errorf("Health should carry the provider's answer: %v", err)
	}
	c.stop()

	// 4. After a re-consent, the new refresh token in the configuration replaces the kept one.
	te.set(func(te *tokenEndpoint) { te.revoked, te.refresh = false, "rt-fresh" })
	cfg.OAuth2.RefreshToken = "rt-fresh"
	d := start(t, cfg)
	d.waitHealthy(t)
	d.stop()
	if got := kept(); got != "rt-3" {
		t.Errorf("kept refresh token %q, want rt-3 (issued for rt-fresh)", got)
	}
}
