package imap

import (
	"context"
	"crypto/tls"
	"fmt"
	"mime"
	"net"
	"strconv"
	"strings"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-sasl"
)

// dial connects and authenticates. Cancelling ctx closes the connection at any point (go-imap's
// commands do not take a context).
func (w *Watcher) dial(ctx context.Context, handler *imapclient.UnilateralDataHandler) (*imapclient.Client, error) {
	cfg := w.cfg
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	// go-imap sets no deadline between responses: a peer that vanished silently is found by TCP
	// keepalive (and by the periodic IDLE restart, which writes).
	d := net.Dialer{Timeout: 30 * time.Second, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: time.Minute, Interval: 15 * time.Second, Count: 4}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	opts := &imapclient.Options{
		UnilateralDataHandler: handler,
		// Only used for data we do not ask for (we fetch no ENVELOPE), but harmless.
		WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader},
	}
	tlsCfg := &tls.Config{}
	if cfg.TLSConfig != nil {
		tlsCfg = cfg.TLSConfig.Clone()
	}
	if tlsCfg.ServerName == "" {
		tlsCfg.ServerName = cfg.Host
	}
	var c *imapclient.Client
	switch cfg.TLS {
	case TLSImplicit:
		if tlsCfg.NextProtos == nil {
			tlsCfg.NextProtos = []string{"imap"}
		}
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS with %s: %w", addr, err)
		}
		c = imapclient.New(tc, opts)
	case TLSStartTLS:
		opts.TLSConfig = tlsCfg
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		c, err = imapclient.NewStartTLS(conn, opts)
		stop()
		if err != nil {
			return nil, fmt.Errorf("STARTTLS with %s: %w", addr, err)
		}
	default:
		c = imapclient.New(conn, opts)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	if err := w.login(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (w *Watcher) login(ctx context.Context, c *imapclient.Client) error {
	cfg := w.cfg
	if w.tokens == nil {
		if c.Caps().Has(goimap.CapLoginDisabled) {
			return fmt.Errorf("the server refuses LOGIN on this connection (LOGINDISABLED); use tls: implicit or starttls")
		}
		if err := c.Login(cfg.Username, cfg.Password).Wait(); err != nil {
			return fmt.Errorf("log in as %s: %w", cfg.Username, err)
		}
		return nil
	}
	tok, err := w.tokens.token(ctx)
	if err != nil {
		return err
	}
	caps := c.Caps()
	var mech sasl.Client
	switch {
	case caps.Has(goimap.AuthCap("OAUTHBEARER")):
		mech = sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: cfg.Username, Token: tok, Host: cfg.Host, Port: cfg.Port})
	case caps.Has(goimap.AuthCap("XOAUTH2")):
		mech = &xoauth2{user: cfg.Username, token: tok}
	default:
		return fmt.Errorf("the server offers neither XOAUTH2 nor OAUTHBEARER (it offers %s)", strings.Join(caps.AuthMechanisms(), ", "))
	}
	if err := c.Authenticate(mech); err != nil {
		// The token may have been revoked or expired early: fetch a fresh one next time.
		w.tokens.invalidate()
		return fmt.Errorf("authenticate as %s with an oauth2 token: %w", cfg.Username, err)
	}
	return nil
}

// xoauth2 is Google's and Microsoft's SASL mechanism, which go-sasl lacks.
type xoauth2 struct{ user, token string }

func (a *xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + a.user + "\x01auth=Bearer " + a.token + "\x01\x01"), nil
}

// Next answers the server's error challenge (a JSON status) with an empty response, so that the
// server ends the exchange with a tagged NO rather than leaving the command open.
func (a *xoauth2) Next([]byte) ([]byte, error) { return []byte{}, nil }
