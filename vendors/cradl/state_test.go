package cradl_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/vendors/cradl"
	"github.com/ingest-dev/ingest/vendors/cradl/cradlsim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

// restartable serves the simulator of the moment at one URL, so that a client that lives
// through a restart of its simulator (its access token with it) can be tested too. Each
// simulator keeps its state in the same journal.
type restartable struct {
	t    *testing.T
	path string
	cfg  cradlsim.Config
	srv  *httptest.Server
	sim  atomic.Pointer[cradlsim.Server]
	smtp string // the SMTP receiver of the simulator of the moment
	stop func() // stops it
	// unauthorized counts the 401 answers, whichever simulator gave them.
	unauthorized atomic.Int32
}

func newRestartable(t *testing.T, edit func(*cradlsim.Config)) *restartable {
	t.Helper()
	r := &restartable{t: t, path: filepath.Join(t.TempDir(), "cradl", "state.jsonl"), cfg: simConfig()}
	if edit != nil {
		edit(&r.cfg)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.sim.Load().ServeHTTP(&statusCounter{ResponseWriter: w, r: r}, req)
	}))
	t.Cleanup(r.srv.Close)
	t.Cleanup(func() {
		if r.stop != nil {
			r.stop()
		}
		if sim := r.sim.Load(); sim != nil {
			_ = sim.CloseState()
		}
	})
	r.restart()
	return r
}

type statusCounter struct {
	http.ResponseWriter
	r *restartable
}

func (s *statusCounter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		s.r.unauthorized.Add(1)
	}
	s.ResponseWriter.WriteHeader(code)
}

// restart stops the simulator of the moment (its journal closed, its SMTP receiver stopped) and
// starts a new one on the same state: a new process, as far as the simulator can tell.
func (r *restartable) restart() *cradlsim.Server {
	r.t.Helper()
	if r.stop != nil {
		r.stop()
	}
	if old := r.sim.Load(); old != nil {
		if err := old.CloseState(); err != nil {
			r.t.Fatalf("CloseState: %v", err)
		}
	}
	sim, err := cradlsim.New(r.cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := sim.KeepState(r.path); err != nil {
		r.t.Fatalf("KeepState: %v", err)
	}
	if r.smtp, r.stop, err = sim.ListenSMTP("127.0.0.1:0"); err != nil {
		r.t.Fatal(err)
	}
	r.sim.Store(sim)
	return sim
}

// client is a new client of the simulator of the moment (its SMTP receiver too).
func (r *restartable) client(mode string) *cradl.Client {
	r.t.Helper()
	cfg := cradl.Config{BaseURL: r.srv.URL, TokenURL: r.srv.URL + "/oauth2/token",
		ClientID: clientID, ClientSecret: clientSecret, Mode: mode, ModelID: modelID, WorkflowID: workflowID,
		HTTPClient: r.srv.Client(), Timeout: 30 * time.Second}
	smtpAt(r.smtp, cradl.SMTPNone)(&cfg)
	c, err := cradl.New(cfg)
	if err != nil {
		r.t.Fatalf("cradl.New: %v", err)
	}
	return c
}

// A sandbox keeps its state across a restart, in each mode: a document in flight when the
// simulator stops is known to the one started on the same state, with its progress, and
// completes there with its own result. Access tokens are not kept: a client that outlived the
// restart is refused its token once, takes a new one and goes on.
func TestSimulatorStateSurvivesRestart(t *testing.T) {
	// reauthenticates checks that c, whose token the simulator of the moment never issued, is
	// refused once, takes one new token and then gets check's answer.
	reauthenticates := func(t *testing.T, r *restartable, check func() error) {
		t.Helper()
		sim, refused := r.sim.Load(), r.unauthorized.Load()
		if err := check(); err != nil {
			t.Fatalf("a client from before the restart: %v", err)
		}
		if n := r.unauthorized.Load() - refused; n != 1 {
			t.Errorf("%d answers 401, want 1 (the token from before the restart)", n)
		}
		if n := sim.Tokens.Issued(); n != 1 {
			t.Errorf("%d tokens issued after the restart, want 1 (re-authenticated)", n)
		}
	}

	t.Run("workflow", func(t *testing.T) {
		r := newRestartable(t, func(c *cradlsim.Config) { c.PendingPolls = 2 })
		old := r.client(cradl.ModeWorkflow)
		content := pdf("kept invoice")
		doc := must(document("doc-1", "Faktura 1.pdf", "application/pdf", content))
		ref, err := old.Submit(t.Context(), doc)
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		if p, err := old.Check(t.Context(), ref); err != nil || p.Done {
			t.Fatalf("first check: %+v %v; want pending", p, err)
		}
		want := r.sim.Load().Executions()[0]

		sim := r.restart()
		exs := sim.Executions()
		if len(exs) != 1 || exs[0].ExecutionID != ref || exs[0].Status != "running" || exs[0].Polls != 1 ||
			exs[0].Input["title"] != want.Input["title"] || exs[0].Input["documentId"] != want.Input["documentId"] ||
			!exs[0].StartTime.Equal(want.StartTime) {
			t.Fatalf("after the restart the executions are %+v, want %+v with its one poll", exs, want)
		}
		reauthenticates(t, r, func() error {
			p, err := old.Check(t.Context(), ref)
			if err == nil && p.Done {
				return fmt.Errorf("check %+v; want pending (one poll left)", p)
			}
			return err
		})

		c := r.client(cradl.ModeWorkflow) // and a new process's client
		if p, err := c.Check(t.Context(), ref); err != nil || !p.Done || p.Failed {
			t.Fatalf("check after the restart: %+v %v; want done", p, err)
		}
		res, err := c.Result(t.Context(), ref)
		if err != nil {
			t.Fatalf("Result: %v", err)
		}
		rec := simkit.RecogniseContent(doc.Filename, content)
		fs := fieldsByName(res.Fields)
		if fs["invoice_id"].Value != rec.InvoiceNumber || fs["line_items[0].amount"].Value != rec.Total {
			t.Errorf("result after the restart %+v, want invoice %s of %s", res.Fields, rec.InvoiceNumber, rec.Total)
		}
		if err := c.Finish(t.Context(), ref); err != nil {
			t.Fatalf("Finish: %v", err)
		}
		// The completion is kept too.
		if exs := r.restart().Executions(); len(exs) != 1 || exs[0].Status != "completed" || exs[0].Output == nil {
			t.Errorf("after a second restart: %+v, want the execution completed with its output", exs)
		}
	})

	t.Run("predictions", func(t *testing.T) {
		// The quota is kept: two pages before the restart, one after, then no more.
		r := newRestartable(t, func(c *cradlsim.Config) { c.MonthlyQuota = 3 })
		old := r.client(cradl.ModePredictions)
		// A first page whose total ends in 0 (as 5.10): served again as it was, not as 5.1.
		var first string
		for i := 0; ; i++ {
			first = fmt.Sprint("%PDF-1.7 page one ", i)
			if strings.HasSuffix(simkit.RecogniseContent("two.pdf", []byte(first)).Total, "0") {
				break
			}
		}
		content := []byte(first + "\fpage two\n%%EOF\n")
		doc := must(document("doc-2", "two.pdf", "application/pdf", content))
		ref, err := old.Submit(t.Context(), doc)
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		before, err := old.Result(t.Context(), ref)
		if err != nil {
			t.Fatalf("Result: %v", err)
		}
		ids := strings.Split(ref, ",")
		if len(ids) != 2 {
			t.Fatalf("ref %q, want two predictions", ref)
		}
		r.sim.Load().SetPredictionStatus(ids[0], "running", "")

		sim := r.restart()
		reauthenticates(t, r, func() error {
			p, err := old.Check(t.Context(), ref)
			if err == nil && p.Done {
				return fmt.Errorf("check %+v; want pending (a page still running)", p)
			}
			return err
		})
		sim.SetPredictionStatus(ids[0], "succeeded", "")
		c := r.client(cradl.ModePredictions)
		if p, err := c.Check(t.Context(), ref); err != nil || !p.Done || p.Failed {
			t.Fatalf("check after the restart: %+v %v; want done", p, err)
		}
		after, err := c.Result(t.Context(), ref)
		if err != nil {
			t.Fatalf("Result after the restart: %v", err)
		}
		if !bytes.Equal(after.Raw, before.Raw) {
			t.Errorf("the predictions changed in the restart:\nbefore %s\n after %s", before.Raw, after.Raw)
		}
		pages := cradlsim.Pages(content)
		for p := range 2 {
			rec := simkit.RecogniseContent(doc.Filename, pages[p])
			if got := fieldsByName(after.Fields[7*p : 7*p+7])["total_amount"].Value; got != rec.Total {
				t.Errorf("page %d total %q, want %q", p, got, rec.Total)
			}
		}
		if _, err := c.Submit(t.Context(), must(document("doc-3", "one.pdf", "application/pdf", pdf("one page")))); err != nil {
			t.Fatalf("Submit within the quota after the restart: %v", err)
		}
		_, err = c.Submit(t.Context(), must(document("doc-4", "late.pdf", "application/pdf", pdf("too late"))))
		if err == nil || !strings.Contains(err.Error(), "monthly quota") {
			t.Errorf("Submit past the quota = %v, want the monthly quota used up", err)
		}
	})

	t.Run("email", func(t *testing.T) {
		r := newRestartable(t, func(c *cradlsim.Config) { c.PendingPolls = 2 })
		old := r.client(cradl.ModeEmail)
		content := pdf("mailed and kept")
		doc := must(document("doc-5", "Rechnung 5.pdf", "application/pdf", content))
		ref, err := old.Submit(t.Context(), doc)
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		if p, err := old.Check(t.Context(), ref); err != nil || p.Done {
			t.Fatalf("first check: %+v %v; want pending", p, err)
		}

		r.restart()
		reauthenticates(t, r, func() error {
			p, err := old.Check(t.Context(), ref)
			if err == nil && p.Done {
				return fmt.Errorf("check %+v; want pending (one poll left)", p)
			}
			return err
		})
		c := r.client(cradl.ModeEmail)
		if p, err := c.Check(t.Context(), ref); err != nil || !p.Done || p.Failed {
			t.Fatalf("check after the restart: %+v %v; want the mailed document found and done", p, err)
		}
		res, err := c.Result(t.Context(), ref)
		if err != nil {
			t.Fatalf("Result: %v", err)
		}
		if got, want := fieldsByName(res.Fields)["invoice_id"].Value, simkit.RecogniseContent(doc.Filename, content).InvoiceNumber; got != want {
			t.Errorf("invoice_id after the restart %q, want %q", got, want)
		}
		if err := c.Finish(t.Context(), ref); err != nil {
			t.Errorf("Finish: %v", err)
		}
	})
}
