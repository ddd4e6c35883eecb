package allsparksim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/vendors/allspark/allsparksim"
)

// post uploads from any goroutine (env.call stops the test, which only the test's own goroutine
// may do) and returns the new case id, 0 on failure.
func (e *env) post(name string) int {
	body, ct := form(e.t, name, pdf, "")
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/cases/direct-upload/", body)
	req.Header.Set("API-KEY", key)
	req.Header.Set("Content-Type", ct)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Error(err)
		return 0
	}
	defer res.Body.Close()
	var out struct {
		CaseID int `json:"case_id"`
	}
	_ = json.NewDecoder(res.Body).Decode(&out)
	return out.CaseID
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// The journal and the callbacks stop in either order, with callbacks and requests still coming
// (go test -race), and once CloseState returns nothing more is written: later changes live in
// memory only. Stopped callbacks first, every case is in the journal.
func TestCloseStateAndCloseInEitherOrder(t *testing.T) {
	for _, stateFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("CloseState first %v", stateFirst), func(t *testing.T) {
			receiver := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			t.Cleanup(receiver.Close)
			path := filepath.Join(t.TempDir(), "cases.jsonl")
			e := newEnv(t, allsparksim.Config{CallbackURL: receiver.URL, CallbackAfter: time.Millisecond})
			if err := e.sim.KeepState(path); err != nil {
				t.Fatal(err)
			}
			const n = 8
			ids := make(chan int, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { ids <- e.post(fmt.Sprintf("%d.pdf", i)) })
			}
			var kept int64
			if stateFirst {
				// While uploads arrive and their callbacks complete them.
				wg.Go(func() {
					if err := e.sim.CloseState(); err != nil {
						t.Error(err)
					}
				})
				wg.Wait()
				kept = size(t, path)
				e.sim.Close() // callbacks still pending complete in memory
			} else {
				wg.Wait() // the service shuts its simulators' HTTP down before it stops them
				e.sim.Close()
				if err := e.sim.CloseState(); err != nil {
					t.Fatal(err)
				}
				kept = size(t, path)
			}
			close(ids)
			for id := range ids {
				e.getCase(id)
			}
			e.post("after.pdf")
			if got := size(t, path); got != kept {
				t.Fatalf("the journal grew from %d to %d bytes after CloseState", kept, got)
			}

			again := newEnv(t, allsparksim.Config{})
			if err := again.sim.KeepState(path); err != nil {
				t.Fatal(err)
			}
			defer again.sim.CloseState()
			if stateFirst {
				return // which uploads were journaled is up to the scheduler
			}
			for id := 1; id <= n; id++ {
				if _, ok := again.sim.Status(fmt.Sprint(id)); !ok {
					t.Errorf("case %d, uploaded before the stop, is not in the journal", id)
				}
			}
		})
	}
}

func TestKeepStateRefusals(t *testing.T) {
	dir := t.TempDir()
	sim := allsparksim.New(allsparksim.Config{})
	if err := sim.KeepState(filepath.Join(dir, "cases.jsonl")); err != nil {
		t.Fatal(err)
	}
	defer sim.CloseState()
	// A second journal would compact a file the first still appends to.
	if err := sim.KeepState(filepath.Join(dir, "cases.jsonl")); err == nil || !strings.Contains(err.Error(), "already kept") {
		t.Errorf("second KeepState: %v", err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := allsparksim.New(allsparksim.Config{}).KeepState(filepath.Join(notDir, "cases.jsonl"))
	if err == nil || !strings.Contains(err.Error(), "sandbox state") {
		t.Errorf("KeepState under a file: %v, want an error about the sandbox state", err)
	}
}
