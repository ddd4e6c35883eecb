package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
)

// Cookies. Both are HttpOnly, SameSite=Strict and scoped to /ui; Secure when the request came
// over TLS.
const (
	sessionCookie = "ingest_session"
	// loginCookie carries the sign-in form's CSRF token (double submit: the form must send the
	// same value), so that another site cannot sign a browser in to its own key.
	loginCookie = "ingest_login_csrf"
	csrfField   = "csrf"
	csrfHeader  = "X-CSRF-Token"
	// maxForm bounds what a console form post may send: a key, a token, a vendor name.
	maxForm = 16 << 10
)

// session is a signed-in browser, stored under the digest of its cookie: what the bucket holds
// cannot be replayed as a cookie.
type session struct {
	CSRF    string    `json:"csrf"`
	Client  string    `json:"client"` // digest prefix of the API key it was opened with
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	key     string
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// storeKey is the bucket key of a cookie value: its SHA-256, in hex (a valid KV key).
func storeKey(cookie string) string {
	sum := sha256.Sum256([]byte(cookie))
	return hex.EncodeToString(sum[:])
}

// validCookie is the shape randomToken gives: anything else is not looked up.
func validCookie(v string) bool {
	if len(v) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil
}

func (c *Console) cookie(ec echo.Context, name, value string, maxAge int) {
	ec.SetCookie(&http.Cookie{Name: name, Value: value, Path: "/ui", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: ec.Request().TLS != nil})
}

// lookup returns the request's session, or nil when it has none that is valid now. An error
// means the store could not be asked.
func (c *Console) lookup(ec echo.Context) (*session, error) {
	ck, err := ec.Cookie(sessionCookie)
	if err != nil || !validCookie(ck.Value) {
		return nil, nil
	}
	key := storeKey(ck.Value)
	e, err := c.sessions.Get(ec.Request().Context(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s session
	if json.Unmarshal(e.Value(), &s) != nil || s.CSRF == "" {
		return nil, nil
	}
	if !c.cfg.Now().Before(s.Expires) {
		_ = c.sessions.Delete(context.WithoutCancel(ec.Request().Context()), key)
		return nil, nil
	}
	s.key = key
	return &s, nil
}

// withSession runs h for a signed-in browser. Without a session a page request is sent to the
// sign-in page (and back afterwards); anything else gets 401.
func (c *Console) withSession(h func(echo.Context, *session) error, isPage bool) echo.HandlerFunc {
	return func(ec echo.Context) error {
		s, err := c.lookup(ec)
		if err != nil {
			c.log.Warn("console session store not reachable", "err", err)
			if isPage {
				return c.render(ec, http.StatusServiceUnavailable, "error", &view{Title: "Unavailable",
					Error: "The session store (NATS) does not answer; try again in a moment."})
			}
			return problem(http.StatusServiceUnavailable, "the session store (NATS) does not answer; try again in a moment")
		}
		if s == nil {
			if isPage && ec.Request().Method == http.MethodGet {
				return ec.Redirect(http.StatusSeeOther, "/ui/login?next="+url.QueryEscape(ec.Request().URL.RequestURI()))
			}
			return problem(http.StatusUnauthorized, "sign in to the console first (/ui/login)")
		}
		return h(ec, s)
	}
}

// csrf checks the session's token on a request that may change something (anything but GET and
// HEAD): from the form field or the X-CSRF-Token header, compared in constant time. A post from
// another origin is refused whatever it carries.
func (c *Console) csrf(h func(echo.Context, *session) error) func(echo.Context, *session) error {
	return func(ec echo.Context, s *session) error {
		if m := ec.Request().Method; m == http.MethodGet || m == http.MethodHead {
			return h(ec, s)
		}
		if !sameOrigin(ec.Request()) {
			return problem(http.StatusForbidden, "this form was posted from another site")
		}
		if err := parseForm(ec); err != nil {
			return problem(http.StatusBadRequest, "%v", err)
		}
		got := ec.Request().Header.Get(csrfHeader)
		if got == "" {
			got = ec.Request().PostForm.Get(csrfField)
		}
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) != 1 {
			return problem(http.StatusForbidden, "the form's security token is missing or out of date; reload the page and try again")
		}
		return h(ec, s)
	}
}

// sameOrigin: a browser says where a post comes from in Origin; when it does, it must be here.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// parseForm reads a URL-encoded form of at most maxForm bytes.
func parseForm(ec echo.Context) error {
	r := ec.Request()
	if r.PostForm != nil {
		return nil
	}
	ct := r.Header.Get(echo.HeaderContentType)
	if ct != "" && !strings.HasPrefix(ct, echo.MIMEApplicationForm) {
		r.PostForm = url.Values{}
		return errors.New("console forms are sent as application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(ec.Response(), r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		r.PostForm = url.Values{}
		return errors.New("the form could not be read (too large or malformed)")
	}
	return nil
}

// nextPage is where to go after signing in: a console path, never another site.
func nextPage(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "/ui//") || strings.ContainsAny(next, "\\\r\n") ||
		len(next) > 2048 {
		return "/ui/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" || strings.HasPrefix(u.Path, "/ui/login") {
		return "/ui/"
	}
	return next
}

func (c *Console) loginPage(ec echo.Context) error {
	if s, err := c.lookup(ec); err == nil && s != nil {
		return ec.Redirect(http.StatusSeeOther, nextPage(ec.QueryParam("next")))
	}
	return c.showLogin(ec, http.StatusOK, "")
}

// showLogin renders the sign-in form with a fresh CSRF cookie.
func (c *Console) showLogin(ec echo.Context, status int, msg string) error {
	token := randomToken()
	c.cookie(ec, loginCookie, token, 3600)
	return c.render(ec, status, "login", &view{Title: "Sign in", CSRF: token, Error: msg,
		Data: nextPage(ec.QueryParam("next"))})
}

func (c *Console) login(ec echo.Context) error {
	if !sameOrigin(ec.Request()) {
		return problem(http.StatusForbidden, "this form was posted from another site")
	}
	if err := parseForm(ec); err != nil {
		return problem(http.StatusBadRequest, "%v", err)
	}
	form := ec.Request().PostForm
	ck, err := ec.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(form.Get(csrfField))) != 1 {
		return problem(http.StatusForbidden, "the sign-in form's security token is missing or out of date; open /ui/login again")
	}
	addr := ec.RealIP()
	if wait := c.guesses.wait(addr); wait > 0 {
		secs := int(math.Ceil(wait.Seconds()))
		ec.Response().Header().Set("Retry-After", strconv.Itoa(secs))
		return c.showLogin(ec, http.StatusTooManyRequests,
			fmt.Sprintf("Too many wrong keys from your address: try again in %d seconds.", secs))
	}
	client, ok := c.keys.Match(strings.TrimSpace(form.Get("key")))
	if !ok {
		c.guesses.wrong(addr)
		c.log.Warn("console sign-in with a wrong API key", "remote", addr)
		return c.showLogin(ec, http.StatusUnauthorized, "That is not a valid API key.")
	}
	token := randomToken()
	now := c.cfg.Now()
	s := session{CSRF: randomToken(), Client: client, Created: now.UTC(), Expires: now.Add(c.cfg.SessionTTL).UTC()}
	body, _ := json.Marshal(s)
	if _, err := c.sessions.Create(ec.Request().Context(), storeKey(token), body); err != nil {
		c.log.Warn("console session not stored", "err", err)
		return c.render(ec, http.StatusServiceUnavailable, "error", &view{Title: "Unavailable",
			Error: "The session store (NATS) does not answer; try again in a moment."})
	}
	c.cookie(ec, sessionCookie, token, int(c.cfg.SessionTTL/time.Second))
	c.cookie(ec, loginCookie, "", -1)
	c.log.Info("console sign-in", "client", client, "remote", ec.RealIP())
	return ec.Redirect(http.StatusSeeOther, nextPage(form.Get("next")))
}

func (c *Console) logout(ec echo.Context, s *session) error {
	if err := c.sessions.Delete(ec.Request().Context(), s.key); err != nil {
		c.log.Warn("console session not deleted", "err", err)
	}
	c.cookie(ec, sessionCookie, "", -1)
	return ec.Redirect(http.StatusSeeOther, "/ui/login")
}
