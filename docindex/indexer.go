package docindex

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/events"
)

// Run keeps the index in step with the stream until ctx ends. It reads with an ordered consumer
// of its own (every instance needs every event; a shared durable would split them between
// instances) from the sequence after the last one the database holds, so a restart neither
// skips nor repeats. Trouble with NATS is retried; Run returns nil when ctx ends.
func (ix *Index) Run(ctx context.Context) error {
	pause := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := ix.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		ix.log.Warn("the document index stopped following the stream; trying again", "retry_in", pause.String(), "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		pause = min(pause*2, 10*time.Second)
	}
	return nil
}

// follow reads the stream from where the index is until ctx ends or reading fails.
func (ix *Index) follow(ctx context.Context) error {
	start, err := ix.startSeq(ctx)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{ix.bus.Names().DocumentSubjects()}, // one subject: NATS 2.9
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if start > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	cons, err := ix.bus.JetStream().OrderedConsumer(ctx, ix.bus.Names().Stream(), cfg)
	if err != nil {
		return fmt.Errorf("read the event stream: %w", err)
	}
	if info := cons.CachedInfo(); info != nil {
		ix.noteBehind(info.NumPending, 0)
	}
	it, err := events.Messages(ctx, cons, jetstream.PullMaxMessages(2*ix.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("read the event stream: %w", err)
	}
	defer it.Stop()
	// The iterator blocks; a reader goroutine turns it into a channel so that a batch can end on
	// a timer. done ends the reader when follow returns for any reason (Stop makes Next return).
	msgs := make(chan jetstream.Msg)
	failed := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				failed <- err
				return
			}
			select {
			case msgs <- m:
			case <-done:
				return
			}
		}
	}()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		batch, ok := ix.collect(ctx, msgs)
		if len(batch) > 0 {
			if err := ix.commit(ctx, batch); err != nil {
				return err
			}
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read the event stream: %w", <-failed)
		}
	}
}

// startSeq is the first stream sequence to read. When the stream no longer holds the events
// after the stored position (they aged out, or the stream was recreated), the index starts over.
func (ix *Index) startSeq(ctx context.Context) (uint64, error) {
	stored := ix.prog.seq.Load()
	if stored == 0 {
		return 1, nil
	}
	st, err := ix.streamInfo(ctx)
	if err != nil {
		return 0, err
	}
	if st.FirstSeq > stored+1 || st.LastSeq < stored {
		ix.log.Warn("the stream no longer holds the events after the document index's position; rebuilding the index",
			"index_seq", stored, "stream_first", st.FirstSeq, "stream_last", st.LastSeq)
		if err := ix.reset(ctx); err != nil {
			return 0, err
		}
		return 1, nil
	}
	return stored + 1, nil
}

// collect takes one batch: the first message whenever it comes, then more until the batch is
// full, BatchWait has passed, or the stream has nothing more right now. ok is false when no
// more messages will come.
func (ix *Index) collect(ctx context.Context, msgs <-chan jetstream.Msg) (batch []jetstream.Msg, ok bool) {
	var first jetstream.Msg
	select {
	case first, ok = <-msgs:
		if !ok {
			return nil, false
		}
	case <-ctx.Done():
		return nil, false
	}
	batch = append(batch, first)
	timer := time.NewTimer(ix.cfg.BatchWait)
	defer timer.Stop()
	// Caught up with the stream, the next events are those being published now: a document's
	// received, submitted and completed come milliseconds apart, and under load dozens a
	// millisecond. Waiting a little for them makes one transaction of many instead of one each
	// (a transaction costs far more than an event), at the price of lists that lag by it.
	var linger <-chan time.Time
	caughtUp := func(m jetstream.Msg) {
		if linger == nil && pendingAfter(m) == 0 {
			linger = time.After(min(lingerFor, ix.cfg.BatchWait))
		}
	}
	caughtUp(first)
	for len(batch) < ix.cfg.BatchSize {
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch, false
			}
			batch = append(batch, m)
			caughtUp(m)
		case <-linger:
			return batch, true
		case <-timer.C:
			return batch, true
		case <-ctx.Done():
			return batch, false
		}
	}
	return batch, true
}

// lingerFor is how long a batch waits for more events once the index has caught up.
const lingerFor = 10 * time.Millisecond

// pendingAfter is how many messages the stream had for the consumer after m (unknown: 1).
func pendingAfter(m jetstream.Msg) uint64 {
	md, err := m.Metadata()
	if err != nil {
		return 1
	}
	return md.NumPending
}

func (ix *Index) noteBehind(pending uint64, applied uint64) {
	ix.prog.behind.Store(pending)
	ix.prog.applied.Add(applied)
	if pending == 0 {
		ix.prog.caughtUp.Store(true)
	}
}

// row is a document as the index holds it, with what was stored before this batch changed it.
type row struct {
	rowid   int64 // 0: not stored yet
	doc     events.Document
	oldText string
	oldKey  aggKey
	oldSort int64 // sort_at as stored
	dirty   bool
}

// aggKey is what a document is counted by in agg.
type aggKey struct {
	status, sourceKind, sourceName, route, vendors string
	hour                                           int64
}

func keyOf(d *events.Document) aggKey {
	return aggKey{string(d.Status), d.Source.Kind, d.Source.Name, d.Route, vendorsOf(d), hourOf(sortTime(d).UnixNano())}
}

// commit applies a batch of messages in one transaction, which also records the sequence of the
// last one: the rows and the position move together.
func (ix *Index) commit(ctx context.Context, batch []jetstream.Msg) error {
	tx, err := ix.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("write the document index: %w", err)
	}
	defer tx.Rollback()
	w := newWriter(ctx, tx, ix.stmts)
	rows := map[string]*row{}
	var last, applied uint64
	for _, m := range batch {
		var seq uint64
		if md, err := m.Metadata(); err == nil {
			seq = md.Sequence.Stream
			last = seq
		}
		ok, err := ix.applyMsg(ctx, w, rows, m.Data(), seq)
		if err != nil {
			return err
		}
		if ok {
			applied++
		}
	}
	stored := map[*row]int64{}
	for _, id := range slices.Sorted(maps.Keys(rows)) {
		if r := rows[id]; r.dirty {
			rowid, err := w.store(ctx, r)
			if err != nil {
				return err
			}
			stored[r] = rowid
		}
	}
	if err := w.flushCounts(ctx); err != nil {
		return err
	}
	if last > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = ? WHERE key = 'last_seq'`, int64(last)); err != nil {
			return fmt.Errorf("write the document index position: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("write the document index: %w", err)
	}
	// Only now are the rows what the database holds: kept for the documents' next events.
	for _, r := range rows {
		if rowid, ok := stored[r]; ok {
			r.rowid, r.dirty = rowid, false
			r.oldText, r.oldKey, r.oldSort = searchText(r.doc), keyOf(&r.doc), sortTime(&r.doc).UnixNano()
		}
		ix.recent.put(r)
	}
	if last > 0 {
		ix.prog.seq.Store(last)
	}
	ix.prog.read.Add(uint64(len(batch)))
	ix.noteBehind(pendingAfter(batch[len(batch)-1]), applied)
	return nil
}

// applyMsg folds one message into its document's row. Messages that are not valid events, or
// events no state could take, are skipped with a log line: the state store refuses them too,
// and holding the index back for them would help no one.
func (ix *Index) applyMsg(ctx context.Context, w *writer, rows map[string]*row, data []byte, seq uint64) (bool, error) {
	ev, err := events.Decode(data)
	if err != nil || !events.ValidDocumentID(ev.Subject) {
		ix.log.Warn("skipping a message on the document subjects that is not a valid event", "err", err)
		return false, nil
	}
	r := rows[ev.Subject]
	if r == nil {
		if r = ix.recent.take(ev.Subject); r == nil {
			if r, err = w.load(ctx, ev.Subject); err != nil {
				return false, err
			}
		}
		rows[ev.Subject] = r
	}
	changed, err := r.doc.Apply(ev, seq)
	if err != nil {
		ix.log.Warn("skipping an event the document state cannot take", "doc_id", ev.Subject, "event_id", ev.ID, "err", err)
		return false, nil
	}
	r.dirty = r.dirty || changed
	return changed, nil
}

// statements are the index's writes, prepared once on the database: a transaction takes them
// over (Tx.StmtContext) without preparing them again for every batch.
type statements struct {
	get, upsert, update, add, addHour, delText, addText *sql.Stmt
}

func prepareStatements(ctx context.Context, db *sql.DB) (*statements, error) {
	st := &statements{}
	for _, s := range []struct {
		p *(*sql.Stmt)
		q string
	}{
		{&st.get, `SELECT rowid, doc FROM docs WHERE id = ?`},
		{&st.upsert, `INSERT INTO docs (id, status, source_kind, source_name, route, vendors, sort_at, doc)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET status = excluded.status, source_kind = excluded.source_kind,
				source_name = excluded.source_name, route = excluded.route, vendors = excluded.vendors,
				sort_at = excluded.sort_at, doc = excluded.doc
			RETURNING rowid`},
		// Most changes after a document's first event are its status, vendors and history: an
		// UPDATE that names only those columns leaves the indexes on the others as they are
		// (SQLite rewrites the entries of every index on a column the SET names, changed or not).
		{&st.update, `UPDATE docs SET status = ?, vendors = ?, doc = ? WHERE rowid = ?`},
		{&st.add, `INSERT INTO agg (status, source_kind, source_name, route, vendors, n) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT DO UPDATE SET n = n + excluded.n`},
		{&st.addHour, `INSERT INTO agg_hour (status, source_kind, source_name, route, vendors, hour, n) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT DO UPDATE SET n = n + excluded.n`},
		{&st.delText, `DELETE FROM docs_text WHERE rowid = ?`},
		{&st.addText, `INSERT INTO docs_text (rowid, text) VALUES (?, ?)`},
	} {
		p, err := db.PrepareContext(ctx, s.q)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("prepare the document index writes: %w", err)
		}
		*s.p = p
	}
	return st, nil
}

func (st *statements) close() {
	for _, s := range []*sql.Stmt{st.get, st.upsert, st.update, st.add, st.addHour, st.delText, st.addText} {
		if s != nil {
			s.Close()
		}
	}
}

// writer holds one transaction's statements.
type writer struct {
	statements
	// counts are the batch's changes to the counts, written once per key at the end: a batch of
	// documents that all moved from submitted to completed is two writes, not four per document.
	counts map[aggKey]int
}

func newWriter(ctx context.Context, tx *sql.Tx, st *statements) *writer {
	w := &writer{counts: map[aggKey]int{}}
	w.get, w.upsert, w.update = tx.StmtContext(ctx, st.get), tx.StmtContext(ctx, st.upsert), tx.StmtContext(ctx, st.update)
	w.add, w.addHour = tx.StmtContext(ctx, st.add), tx.StmtContext(ctx, st.addHour)
	w.delText, w.addText = tx.StmtContext(ctx, st.delText), tx.StmtContext(ctx, st.addText)
	return w
}

// load reads a document's row, or starts a new one.
func (w *writer) load(ctx context.Context, id string) (*row, error) {
	r := &row{doc: events.Document{ID: id}}
	var body []byte
	err := w.get.QueryRowContext(ctx, id).Scan(&r.rowid, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read document %s from the index: %w", id, err)
	}
	if err := json.Unmarshal(body, &r.doc); err != nil {
		return nil, fmt.Errorf("document %s in the index is not valid JSON (delete the index to rebuild it): %w", id, err)
	}
	r.oldText, r.oldKey, r.oldSort = searchText(r.doc), keyOf(&r.doc), sortTime(&r.doc).UnixNano()
	return r, nil
}

// store writes a changed document: its row, and its vendors and search text where they changed.
// It returns the row's id.
func (w *writer) store(ctx context.Context, r *row) (int64, error) {
	d := &r.doc
	body, err := json.Marshal(d)
	if err != nil {
		return 0, fmt.Errorf("encode document %s for the index: %w", d.ID, err)
	}
	key, sortAt := keyOf(d), sortTime(d).UnixNano()
	rowid := r.rowid
	if rowid != 0 && sortAt == r.oldSort && key.sourceKind == r.oldKey.sourceKind && key.sourceName == r.oldKey.sourceName &&
		key.route == r.oldKey.route {
		if _, err := w.update.ExecContext(ctx, key.status, key.vendors, body, rowid); err != nil {
			return 0, fmt.Errorf("write document %s to the index: %w", d.ID, err)
		}
	} else if err := w.upsert.QueryRowContext(ctx, d.ID, key.status, key.sourceKind, key.sourceName, key.route, key.vendors,
		sortAt, body).Scan(&rowid); err != nil {
		return 0, fmt.Errorf("write document %s to the index: %w", d.ID, err)
	}
	if r.rowid == 0 || key != r.oldKey {
		w.count(r, key)
	}
	if text := searchText(*d); r.rowid == 0 || text != r.oldText {
		// A new row has no text to replace: rows are only ever removed all together (reset), with
		// their texts, so a rowid SQLite hands out again never has a text left behind.
		if r.rowid != 0 {
			if _, err := w.delText.ExecContext(ctx, rowid); err != nil {
				return 0, fmt.Errorf("write the search text of document %s to the index: %w", d.ID, err)
			}
		}
		if _, err := w.addText.ExecContext(ctx, rowid, text); err != nil {
			return 0, fmt.Errorf("write the search text of document %s to the index: %w", d.ID, err)
		}
	}
	return rowid, nil
}

// count moves the document from its old counts to its new ones (written by flushCounts).
func (w *writer) count(r *row, key aggKey) {
	if r.rowid != 0 {
		w.counts[r.oldKey]--
	}
	w.counts[key]++
}

// flushCounts writes the batch's count changes: per key of agg_hour, and summed over the hours
// for agg.
func (w *writer) flushCounts(ctx context.Context) error {
	total := map[aggKey]int{}
	for _, k := range slices.SortedFunc(maps.Keys(w.counts), compareKeys) {
		n := w.counts[k]
		if n == 0 {
			continue
		}
		if _, err := w.addHour.ExecContext(ctx, k.status, k.sourceKind, k.sourceName, k.route, k.vendors, k.hour, n); err != nil {
			return fmt.Errorf("count documents in the index: %w", err)
		}
		k.hour = 0
		total[k] += n
	}
	for _, k := range slices.SortedFunc(maps.Keys(total), compareKeys) {
		if n := total[k]; n != 0 {
			if _, err := w.add.ExecContext(ctx, k.status, k.sourceKind, k.sourceName, k.route, k.vendors, n); err != nil {
				return fmt.Errorf("count documents in the index: %w", err)
			}
		}
	}
	return nil
}

// compareKeys orders the count writes, so that every batch takes the rows in one order.
func compareKeys(a, b aggKey) int {
	return cmp.Or(cmp.Compare(a.status, b.status), cmp.Compare(a.sourceKind, b.sourceKind),
		cmp.Compare(a.sourceName, b.sourceName), cmp.Compare(a.route, b.route), cmp.Compare(a.vendors, b.vendors),
		cmp.Compare(a.hour, b.hour))
}

// sortTime orders documents newest first: when received, else (a rejected input) when first heard of.
func sortTime(d *events.Document) time.Time {
	if !d.ReceivedAt.IsZero() {
		return d.ReceivedAt
	}
	if len(d.History) > 0 {
		return d.History[0].Time // sorted by time
	}
	return d.UpdatedAt
}

// vendorsOf lists the vendors a document was sent to, or is to be sent to (chosen when received),
// as ",a,b," in name order: instr(vendors, ',gini,') finds one without a LIKE pattern.
func vendorsOf(d *events.Document) string {
	names := slices.Clone(d.Chosen)
	for name := range d.Vendors {
		names = append(names, name)
	}
	slices.Sort(names)
	return "," + strings.Join(slices.Compact(names), ",") + ","
}

// searchText is what q searches: the filename and the metadata values (mail subject and
// addresses, WebDAV path, the uploader's fields), one per line.
func searchText(d events.Document) string {
	var b strings.Builder
	b.WriteString(d.Filename)
	for _, k := range slices.Sorted(maps.Keys(d.Metadata)) {
		b.WriteByte('\n')
		b.WriteString(d.Metadata[k])
	}
	return b.String()
}

// recentRows keeps the rows the indexer committed last, as the database holds them, so that a
// document's next event (most come seconds after the last) is applied without reading its row
// back and decoding it. A batch takes the rows it works on out and puts them back only once it
// has committed: after a batch that failed, the database is read again. Only the indexer's
// goroutine uses it.
type recentRows struct {
	rows map[string]*row
	ring []string // insertion order, for eviction
	next int
}

// recentRowsKept is about the documents in flight at a few hundred a second (a few MiB).
const recentRowsKept = 2048

func newRecentRows(n int) *recentRows {
	return &recentRows{rows: make(map[string]*row, n), ring: make([]string, n)}
}

func (c *recentRows) take(id string) *row {
	r := c.rows[id]
	delete(c.rows, id)
	return r
}

func (c *recentRows) put(r *row) {
	id := r.doc.ID
	if _, ok := c.rows[id]; !ok {
		if old := c.ring[c.next]; old != "" {
			delete(c.rows, old) // may be a newer copy of old, put again since: only a read more
		}
		c.ring[c.next] = id
		c.next = (c.next + 1) % len(c.ring)
	}
	c.rows[id] = r
}

func (c *recentRows) clear() {
	clear(c.rows)
	clear(c.ring)
	c.next = 0
}
