package simkit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Store keeps a simulator's records on disk, so that a sandbox outlives the process that runs it:
// a document in flight when ingest stops is still known to its simulator when ingest starts
// again, as it would be at the real vendor.
//
// It is a journal of JSON lines, {"k": key, "v": record} (a null record deletes), appended as the
// simulator changes a record and replayed when it starts; the replay is then written back
// compacted, keeping the newest MaxRecords. A write reaches the operating system before Put
// returns (no fsync: a killed process loses nothing, a crashed machine may lose the last
// records, which for a sandbox is fine).
type Store struct {
	path string
	max  int

	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

// DefaultMaxRecords bounds a store: a sandbox used for months keeps its most recent records.
const DefaultMaxRecords = 20000

type storeLine struct {
	K string          `json:"k"`
	V json.RawMessage `json:"v"`
}

// OpenStore opens (creating) the journal at path and returns it with the records it holds, by
// key, and their keys from oldest to newest change. max <= 0 takes DefaultMaxRecords.
func OpenStore(path string, max int) (*Store, map[string]json.RawMessage, []string, error) {
	if max <= 0 {
		max = DefaultMaxRecords
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, nil, nil, fmt.Errorf("sandbox state: %w", err)
	}
	records, order, err := replay(path)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(order) > max {
		for _, k := range order[:len(order)-max] {
			delete(records, k)
		}
		order = order[len(order)-max:]
	}
	// Written back compacted: the journal starts each run as long as its records.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sandbox state: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, k := range order {
		if err := enc.Encode(storeLine{K: k, V: records[k]}); err != nil {
			f.Close()
			return nil, nil, nil, fmt.Errorf("sandbox state: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("sandbox state: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, nil, nil, fmt.Errorf("sandbox state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, nil, nil, fmt.Errorf("sandbox state: %w", err)
	}
	f, err = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sandbox state: %w", err)
	}
	return &Store{path: path, max: max, f: f, w: bufio.NewWriter(f)}, records, order, nil
}

// replay reads the journal: the last line of each key wins, a null value deletes. A torn last
// line (the process was killed while writing it) is ignored.
func replay(path string) (map[string]json.RawMessage, []string, error) {
	records := map[string]json.RawMessage{}
	var order []string
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return records, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox state: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	pos := map[string]int{}
	for sc.Scan() {
		var l storeLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.K == "" {
			continue
		}
		if i, ok := pos[l.K]; ok {
			order[i] = "" // moved to the end, or gone
			delete(pos, l.K)
		}
		if len(l.V) == 0 || string(l.V) == "null" {
			delete(records, l.K)
			continue
		}
		records[l.K] = l.V
		pos[l.K] = len(order)
		order = append(order, l.K)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("sandbox state %s: %w", path, err)
	}
	kept := order[:0]
	for _, k := range order {
		if k != "" {
			kept = append(kept, k)
		}
	}
	return records, kept, nil
}

// Put records v under key (a nil Store does nothing: a simulator without a state directory).
func (s *Store) Put(key string, v any) error {
	if s == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sandbox state %s: %w", key, err)
	}
	return s.write(storeLine{K: key, V: b})
}

// Delete forgets key.
func (s *Store) Delete(key string) error {
	if s == nil {
		return nil
	}
	return s.write(storeLine{K: key, V: json.RawMessage("null")})
}

func (s *Store) write(l storeLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("sandbox state: the store is closed")
	}
	s.w.Write(b)
	s.w.WriteByte('\n')
	return s.w.Flush()
}

// Close closes the journal.
func (s *Store) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := errors.Join(s.w.Flush(), s.f.Close())
	s.f = nil
	return err
}
