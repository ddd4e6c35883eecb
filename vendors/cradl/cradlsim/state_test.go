package cradlsim_test

import (
	"bytes"
	"encoding/base64"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/ingest-dev/ingest/vendors/cradl/cradlsim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

// keptFixture is a fixture whose simulator keeps its state at path.
func keptFixture(t *testing.T, path string) *fixture {
	t.Helper()
	sim, err := cradlsim.New(cradlsim.Config{ClientID: cid, ClientSecret: csecret, WorkflowID: wid, WorkflowEmail: wmail,
		ModelID: "model-1", MonthlyQuota: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.KeepState(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.CloseState() })
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	f := &fixture{t: t, sim: sim, srv: srv}
	f.tok, _ = f.token(url.Values{"grant_type": {"client_credentials"}}, true).json(t)["access_token"].(string)
	return f
}

// What the client-level restart test cannot reach: a fileUrl created before a restart takes its
// PUT after it, a prediction is served byte for byte as before, and the journal holds what was
// read in a document, not the document.
func TestStateKeepsFileURLsNotBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.jsonl")
	f := keptFixture(t, path)
	big := append([]byte("%PDF-1.7 "), bytes.Repeat([]byte("scanned page "), 20000)...) // 260 kB
	inline := f.api("POST", "/documents", map[string]any{"content": base64.StdEncoding.EncodeToString(big),
		"contentType": "application/pdf", "name": "big.pdf"}).json(t)
	pending := f.api("POST", "/documents", map[string]any{"contentType": "application/pdf", "name": "later.pdf"}).json(t)
	fileURL, _ := url.Parse(pending["fileUrl"].(string))
	pred := f.api("POST", "/predictions", map[string]any{"documentId": inline["documentId"], "modelId": "model-1"})
	if pred.status != 200 {
		t.Fatalf("prediction: %d %s", pred.status, pred.body)
	}
	if st, err := os.Stat(path); err != nil || st.Size() > 8<<10 {
		t.Fatalf("the journal is %v bytes (%v): the document's bytes went into it", st.Size(), err)
	}
	_ = f.sim.CloseState()

	f = keptFixture(t, path) // a new process, on another port
	if a := f.api("GET", "/predictions/"+pred.json(t)["predictionId"].(string), nil); a.status != 200 || !bytes.Equal(a.body, pred.body) {
		t.Errorf("prediction after the restart %d %s\nwant %s", a.status, a.body, pred.body)
	}
	later := []byte("%PDF-1.7 put after the restart")
	if a := f.api("PUT", f.srv.URL+fileURL.Path, later); a.status != 200 {
		t.Fatalf("PUT to a fileUrl from before the restart: %d %s", a.status, a.body)
	}
	a := f.api("POST", "/predictions", map[string]any{"documentId": pending["documentId"], "modelId": "model-1"})
	if a.status != 200 {
		t.Fatalf("prediction of the PUT document: %d %s", a.status, a.body)
	}
	rec := simkit.RecogniseContent("later.pdf", later)
	if first := a.json(t)["predictions"].([]any)[0].(map[string]any); first["value"] != rec.InvoiceNumber {
		t.Errorf("prediction of the PUT document %v, want %s", first, rec.InvoiceNumber)
	}
	// One prediction before the restart, one after: the quota of two is used up.
	if a := f.api("POST", "/predictions", map[string]any{"documentId": inline["documentId"], "modelId": "model-1"}); a.status != 429 {
		t.Errorf("a third prediction: %d %s, want 429 (the quota kept)", a.status, a.body)
	}
}
