// Package docindex is a rebuildable, per-instance list index of documents: every document event
// of the stream folded into a local SQLite database (pure Go, modernc.org/sqlite), so that
// documents can be listed newest first, filtered, paged and counted without scanning the state
// bucket. The stream stays the source of truth: the database can be deleted at any time and is
// rebuilt from the stream; each instance keeps its own, fed by its own ordered consumer.
package docindex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/ingest-dev/ingest/events"
)

// schemaVersion changes whenever the tables, or what is derived into them, change: a database
// of another version is deleted and rebuilt from the stream, never migrated.
const schemaVersion = 1

// Config configures the index.
type Config struct {
	// Bus is the event backbone the index follows.
	Bus *events.Bus
	// Path is the database file (created with its directory).
	Path string
	// BatchSize and BatchWait bound one write transaction: events are applied together, up to
	// BatchSize of them or as many as arrive within BatchWait of the first (defaults 500, 50 ms).
	// Batches are what make catching up fast; the wait bounds how stale a list can be.
	BatchSize int
	BatchWait time.Duration
	// CacheKiB caps SQLite's page cache per connection (default 8192, i.e. 8 MiB); with
	// maxConns connections this bounds the index's memory.
	CacheKiB int
	Logger   *slog.Logger
	// Registerer receives the index's metrics (nil: not registered).
	Registerer prometheus.Registerer
}

// maxConns bounds the database connections: one writer and a few concurrent list requests
// (WAL lets readers go on while the indexer writes).
const maxConns = 4

// Index is the list index of one instance.
type Index struct {
	cfg   Config
	db    *sql.DB
	stmts *statements // the indexer's writes
	// recent are the rows the indexer committed last (only its goroutine touches them).
	recent *recentRows
	bus    *events.Bus
	log    *slog.Logger
	prog   progress
}

// progress is how far the index has come, read by list requests while the indexer writes.
type progress struct {
	seq      atomic.Uint64 // last stream sequence applied and committed
	behind   atomic.Uint64 // document events in the stream not applied yet (as last seen)
	caughtUp atomic.Bool   // the index has reached the stream's end at least once since start
	applied  atomic.Uint64 // events applied since start (new to their document)
	read     atomic.Uint64 // messages read from the stream since start
}

// Open opens (creating or rebuilding as needed) the database; Run keeps it in step.
func Open(ctx context.Context, cfg Config) (*Index, error) {
	if cfg.Bus == nil || cfg.Path == "" {
		return nil, errors.New("docindex: a Bus and a database path are required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 500
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = 50 * time.Millisecond
	}
	if cfg.CacheKiB <= 0 {
		cfg.CacheKiB = 8 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ix := &Index{cfg: cfg, bus: cfg.Bus, log: cfg.Logger.With("component", "docindex"), recent: newRecentRows(recentRowsKept)}
	if err := ix.register(cfg.Registerer); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o750); err != nil {
		return nil, fmt.Errorf("create the document index directory: %w", err)
	}
	db, err := ix.openDB(ctx)
	if err != nil {
		return nil, err
	}
	ix.db = db
	seq, err := ix.storedSeq(ctx)
	if err == nil {
		ix.stmts, err = prepareStatements(ctx, db)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	ix.prog.seq.Store(seq)
	return ix, nil
}

// openDB opens the file and makes sure it holds this version's schema; any other database there
// is deleted first (it is only ever a copy of the stream).
func (ix *Index) openDB(ctx context.Context) (*sql.DB, error) {
	db, err := ix.connect()
	if err != nil {
		return nil, err
	}
	v, err := userVersion(ctx, db)
	if err == nil && (v == schemaVersion || v == 0) {
		if err = createSchema(ctx, db); err == nil {
			return db, nil
		}
	}
	db.Close()
	ix.log.Warn("the document index has another schema or cannot be read; rebuilding it from the stream", "path", ix.cfg.Path, "version", v, "err", err)
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(ix.cfg.Path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("delete the old document index: %w", err)
		}
	}
	if db, err = ix.connect(); err != nil {
		return nil, err
	}
	if err := createSchema(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func (ix *Index) connect() (*sql.DB, error) {
	q := url.Values{}
	// WAL: list requests read while the indexer writes. synchronous=NORMAL: a power cut may lose
	// the last transactions, which the stream gives again (the sequence is in the same
	// transaction as the rows). _txlock=immediate: the writer takes its lock at BEGIN, so it
	// never fails half-way on a lock a reader upgraded.
	for _, p := range []string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(5000)",
		"cache_size(-" + strconv.Itoa(ix.cfg.CacheKiB) + ")", "temp_store(MEMORY)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+ix.cfg.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open the document index %s: %w", ix.cfg.Path, err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	return db, nil
}

func userVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the document index: %w", err)
	}
	return v, nil
}

// The tables. docs has one row per document with the columns lists filter and sort on, and the
// document itself as JSON (a page is answered from the index alone); vendors is the set of
// vendors the document went (or is to go) to, written ",gini,laigo,", so that one column answers
// the vendor filter and the vendor counts without a join. agg keeps the documents counted by
// everything but time and text (agg_hour: and the hour), so the counts of the common lists (no since/until/q) are a
// look-up rather than a scan of every document. docs_text holds the words q searches (FTS5 with
// the trigram tokenizer: substring matches, case-insensitive, from an index).
const schema = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
	rowid       INTEGER PRIMARY KEY,
	id          TEXT NOT NULL UNIQUE,
	status      TEXT NOT NULL,
	source_kind TEXT NOT NULL,
	source_name TEXT NOT NULL,
	route       TEXT NOT NULL,
	vendors     TEXT NOT NULL,
	sort_at     INTEGER NOT NULL, -- received_at (else the first event's time), Unix ns
	doc         BLOB NOT NULL     -- the events.Document, JSON
);
CREATE INDEX IF NOT EXISTS docs_newest ON docs (sort_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS docs_status ON docs (status, sort_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS docs_source ON docs (source_kind, source_name, sort_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS docs_route ON docs (route, sort_at DESC, id DESC);
-- Covers the counts of a time range: they read this index alone, not the documents.
CREATE INDEX IF NOT EXISTS docs_time_counts ON docs (sort_at, status, vendors, source_kind, source_name, route);
CREATE TABLE IF NOT EXISTS agg (
	status      TEXT NOT NULL,
	source_kind TEXT NOT NULL,
	source_name TEXT NOT NULL,
	route       TEXT NOT NULL,
	vendors     TEXT NOT NULL,
	n           INTEGER NOT NULL,
	PRIMARY KEY (status, source_kind, source_name, route, vendors)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_hour (
	hour        INTEGER NOT NULL, -- sort_at's hour since 1970
	status      TEXT NOT NULL,
	source_kind TEXT NOT NULL,
	source_name TEXT NOT NULL,
	route       TEXT NOT NULL,
	vendors     TEXT NOT NULL,
	n           INTEGER NOT NULL,
	PRIMARY KEY (hour, status, source_kind, source_name, route, vendors)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS docs_text USING fts5(text, tokenize='trigram');
INSERT OR IGNORE INTO meta (key, value) VALUES ('last_seq', 0);
`

func createSchema(ctx context.Context, db *sql.DB) error {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create the document index tables (does this SQLite build have FTS5?): %w", err)
	}
	if _, err := db.ExecContext(ctx, `PRAGMA user_version = `+strconv.Itoa(schemaVersion)); err != nil {
		return fmt.Errorf("mark the document index schema: %w", err)
	}
	return nil
}

func (ix *Index) storedSeq(ctx context.Context) (uint64, error) {
	var seq int64
	if err := ix.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'last_seq'`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("read the document index position: %w", err)
	}
	return uint64(seq), nil
}

// reset empties the index, to be filled again from the stream's start.
func (ix *Index) reset(ctx context.Context) error {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("empty the document index: %w", err)
	}
	defer tx.Rollback()
	for _, q := range []string{`DELETE FROM docs`, `DELETE FROM agg`, `DELETE FROM agg_hour`, `DELETE FROM docs_text`,
		`UPDATE meta SET value = 0 WHERE key = 'last_seq'`} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("empty the document index: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("empty the document index: %w", err)
	}
	ix.recent.clear()
	ix.prog.seq.Store(0)
	ix.prog.caughtUp.Store(false)
	return nil
}

// register exports the progress as gauges read at scrape time (no state of their own).
func (ix *Index) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ingest_index_behind_events", Help: "Document events in the stream the list index has not applied yet.",
		}, func() float64 { return float64(ix.prog.behind.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ingest_index_sequence", Help: "Stream sequence of the last event the list index applied.",
		}, func() float64 { return float64(ix.prog.seq.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "ingest_index_applied_total", Help: "Events the list index applied (new to their document) since the start.",
		}, func() float64 { return float64(ix.prog.applied.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register the document index metrics: %w", err)
		}
	}
	return nil
}

// Close closes the database. Run must have returned.
func (ix *Index) Close() error {
	ix.stmts.close()
	return ix.db.Close()
}

// Progress says how far the index is behind the stream.
type Progress struct {
	// CaughtUp: the index has reached the end of the stream since it started (and follows it,
	// BatchWait behind at most, as long as Behind is 0).
	CaughtUp bool `json:"caught_up"`
	// Behind is how many document events the stream had that the index had not applied, when
	// it last looked.
	Behind uint64 `json:"behind"`
	// Sequence is the stream sequence of the last event applied.
	Sequence uint64 `json:"sequence"`
}

// Progress returns how far the index is.
func (ix *Index) Progress() Progress {
	return Progress{CaughtUp: ix.prog.caughtUp.Load() && ix.prog.behind.Load() == 0,
		Behind: ix.prog.behind.Load(), Sequence: ix.prog.seq.Load()}
}

// streamInfo returns the event stream's state.
func (ix *Index) streamInfo(ctx context.Context) (jetstream.StreamState, error) {
	s, err := ix.bus.JetStream().Stream(ctx, ix.bus.Names().Stream())
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("open the event stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("read the event stream's state: %w", err)
	}
	return info.State, nil
}
