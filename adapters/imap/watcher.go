// Package imap watches an IMAP mailbox and turns the attachments of new mail into documents:
// each is stored and announced through intake, and only once every document of a mail has its
// PubAck does the mail get its post-action (seen, moved, flagged, deleted) and the mailbox's
// checkpoint move past it.
//
// Exactly once rests on three things: a checkpoint per mailbox (UIDVALIDITY and the last UID
// done) in a KV bucket, document ids derived from account/mailbox/UIDVALIDITY/UID/part (a mail
// fetched again after a crash yields the same ids, which intake and JetStream recognise), and a
// record of every announced content by Message-ID and SHA-256, which keeps a rescan after a
// UIDVALIDITY change from announcing anything again.
package imap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Watcher watches one mailbox.
type Watcher struct {
	cfg        Config
	log        *slog.Logger
	metrics    *metrics
	store      *store
	tokens     tokenSource // nil: LOGIN with the password
	searchPlan searchPlan
	// searchMode is what the server's SEARCH has shown it takes; kept across reconnections.
	// Only Run's goroutine touches it.
	searchMode searchMode
	// identityLocks keep two mails with one Message-ID from being deduplicated at the same time
	// (lockIdentity).
	identityLocks [16]sync.Mutex

	mu       sync.Mutex
	health   error           // nil while a session runs well
	lastPass time.Time       // when the mailbox was last looked through to its end
	lastLog  string          // the last connection problem logged, so a retry loop logs it once
	onceKeys map[string]bool // warnings given once per process
}

// New checks cfg and provisions the KV buckets (checkpoints, ingested contents, OAuth tokens).
func New(ctx context.Context, cfg Config) (*Watcher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		cfg:        cfg,
		log:        cfg.Logger.With("source", "imap/"+cfg.Name, "mailbox", cfg.Mailbox),
		searchPlan: newSearchPlan(cfg.Filters),
		health:     errors.New("not connected yet"),
		onceKeys:   map[string]bool{},
	}
	if w.metrics, err = newMetrics(cfg.Registerer, cfg.Name); err != nil {
		return nil, err
	}
	if w.store, err = openStore(ctx, cfg.Bus, cfg.Name, cfg.Username+"@"+cfg.Host, cfg.Mailbox); err != nil {
		return nil, err
	}
	if cfg.OAuth2 != nil {
		if w.tokens, err = newTokenSource(ctx, cfg, w.log); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Backoff between connection attempts: from a second, doubling, to five minutes; back to a second
// once a connection got as far as watching the mailbox.
const (
	backoffMin = time.Second
	backoffMax = 5 * time.Minute
)

// Run watches the mailbox until ctx ends, reconnecting with backoff for ever. It returns nil when
// ctx ends; every other problem is logged (once per change), counted and shown by Health.
func (w *Watcher) Run(ctx context.Context) error {
	delay := backoffMin
	failures := 0
	for {
		err := w.runSession(ctx, func() {
			w.up(failures)
			failures, delay = 0, backoffMin
		})
		if ctx.Err() != nil {
			w.log.Info("stopped watching the mailbox")
			return nil
		}
		failures++
		w.metrics.pollErrors.Inc()
		w.down(err, delay)
		select {
		case <-ctx.Done():
			w.log.Info("stopped watching the mailbox")
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, backoffMax)
		w.metrics.reconnects.Inc()
	}
}

// Health is nil while the watcher is connected with the mailbox selected; otherwise the reason,
// which wraps ErrReconsent when the OAuth refresh token was refused.
func (w *Watcher) Health() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.health
}

// LastPass is when the mailbox was last looked through to its end (zero: not yet, by this
// process): with IDLE the server says when there is mail, so this is the last time there was
// something to look at or a catch-up pass was due.
func (w *Watcher) LastPass() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastPass
}

func (w *Watcher) passed() {
	w.mu.Lock()
	w.lastPass = time.Now()
	w.mu.Unlock()
}

func (w *Watcher) up(failures int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.health == nil {
		return
	}
	if failures > 0 {
		w.log.Info("connected again; watching the mailbox", "failed_attempts", failures)
	} else {
		w.log.Info("connected; watching the mailbox", "host", w.cfg.Host, "user", w.cfg.Username)
	}
	w.health, w.lastLog = nil, ""
}

// down records a failed session. The same problem again is logged at debug level only, so a
// server that is away for a day leaves one warning, not thousands.
func (w *Watcher) down(err error, retryIn time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.health = fmt.Errorf("imap source %s: %w", w.cfg.Name, err)
	level, msg := slog.LevelWarn, "mailbox connection failed; retrying with backoff"
	if errors.Is(err, ErrReconsent) {
		level, msg = slog.LevelError, "OAuth re-consent needed: the identity provider refused the refresh token; no mail is read until a new refresh token is configured"
	}
	if err.Error() == w.lastLog {
		level = slog.LevelDebug
	}
	w.lastLog = err.Error()
	w.log.Log(context.Background(), level, msg, "err", err, "retry_in", retryIn)
}

func (w *Watcher) warnOnce(key, msg string, args ...any) {
	if w.first(key) {
		w.log.Warn(msg, args...)
	}
}

func (w *Watcher) infoOnce(key, msg string, args ...any) {
	if w.first(key) {
		w.log.Info(msg, args...)
	}
}

func (w *Watcher) first(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.onceKeys[key] {
		return false
	}
	w.onceKeys[key] = true
	return true
}
