package cradlsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

// The state journal's keys: a record per document, prediction and execution, and one for the
// counters. Access tokens are not kept (a client refused its old token takes a new one, as
// after an expiry), nor are the Ledger, token requests, deliveries and mails: they are what
// tests observe of one run.
const (
	documentKey   = "document/"
	predictionKey = "prediction/"
	executionKey  = "execution/"
	countersKey   = "counters"
)

// storedDocument is a document as the state store keeps it: what was read in its bytes, not
// the bytes.
type storedDocument struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	ContentType string    `json:"contentType"`
	FileToken   string    `json:"fileToken,omitempty"`
	HasContent  bool      `json:"hasContent"`
	Created     time.Time `json:"created"`
	Read        reading   `json:"read"`
}

// storedPrediction is a prediction as the state store keeps it: its answer as it is served.
type storedPrediction struct {
	ID     string          `json:"id"`
	Answer json.RawMessage `json:"answer"`
}

// storedCounters are the id sequence (it orders executions started in the same instant) and
// the quota used.
type storedCounters struct {
	Seq  int `json:"seq"`
	Used int `json:"used"`
}

// KeepState keeps the simulator's state in the journal at path: the documents (with their
// fileUrls, so a PUT still pending finds its document), predictions, executions, the id
// sequence and the quota used that it holds are known again (a sandbox restarted with ingest
// still has the documents in flight), and every change is written there. Call it before
// serving.
func (s *Server) KeepState(path string) error {
	store, records, order, err := simkit.OpenStore(path, 0)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		_ = store.Close()
		return errors.New("cradlsim: KeepState was called twice; the state is kept in one journal")
	}
	for _, k := range order {
		s.load(k, records[k])
	}
	s.store = store
	return nil
}

// load puts one journal record back; s.mu is held. A record that does not read (written by
// another version of the simulator) is left out: the sandbox then does not know that one
// thing, as if it had been deleted there, rather than refusing to start.
func (s *Server) load(key string, raw json.RawMessage) {
	switch {
	case strings.HasPrefix(key, documentKey):
		var sd storedDocument
		if err := json.Unmarshal(raw, &sd); err != nil || sd.ID == "" {
			return
		}
		s.docs[sd.ID] = &document{id: sd.ID, name: sd.Name, contentType: sd.ContentType, fileToken: sd.FileToken,
			hasContent: sd.HasContent, created: sd.Created, read: sd.Read}
		if sd.FileToken != "" {
			s.files[sd.FileToken] = sd.ID
		}
	case strings.HasPrefix(key, predictionKey):
		var sp storedPrediction
		if err := json.Unmarshal(raw, &sp); err != nil || sp.ID == "" {
			return
		}
		// Numbers as they were written: a total of 5.10 is served as 5.10 again, not 5.1.
		dec := json.NewDecoder(bytes.NewReader(sp.Answer))
		dec.UseNumber()
		var answer map[string]any
		if err := dec.Decode(&answer); err != nil || answer == nil {
			return
		}
		s.predictions[sp.ID] = &prediction{answer: answer}
	case strings.HasPrefix(key, executionKey):
		var e Execution
		if err := json.Unmarshal(raw, &e); err != nil || e.ExecutionID == "" {
			return
		}
		s.executions[e.ExecutionID] = &e
	case key == countersKey:
		var c storedCounters
		if err := json.Unmarshal(raw, &c); err != nil {
			return
		}
		s.seq, s.used = c.Seq, c.Used
	}
}

// CloseState closes the journal KeepState opened.
func (s *Server) CloseState() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.Close()
}

// The keep helpers write a record to the journal; s.mu is held. A failed write is not the
// client's problem: the record lives on in memory.

func (s *Server) keepDocument(d *document) {
	_ = s.store.Put(documentKey+d.id, storedDocument{ID: d.id, Name: d.name, ContentType: d.contentType,
		FileToken: d.fileToken, HasContent: d.hasContent, Created: d.created, Read: d.read})
}

func (s *Server) keepPrediction(id string, p *prediction) {
	if s.store == nil {
		return // no need to marshal the answer
	}
	b, err := json.Marshal(p.answer)
	if err != nil {
		return
	}
	_ = s.store.Put(predictionKey+id, storedPrediction{ID: id, Answer: b})
}

func (s *Server) keepExecution(e *Execution) {
	_ = s.store.Put(executionKey+e.ExecutionID, e)
}

func (s *Server) keepCounters() {
	_ = s.store.Put(countersKey, storedCounters{Seq: s.seq, Used: s.used})
}
