package cradl_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/cradl"
	"github.com/ingest-dev/ingest/vendors/cradl/cradlsim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

func TestNew(t *testing.T) {
	base := cradl.Config{ClientID: "id", ClientSecret: "secret"}
	smtpOK := cradl.SMTPConfig{Host: "smtp.example.com", From: "ingest@example.com"}
	tests := []struct {
		name string
		edit func(*cradl.Config)
		want string // part of the error; "" for none
	}{
		{"predictions", func(c *cradl.Config) { c.Mode, c.ModelID = "predictions", modelID }, ""},
		{"workflow", func(c *cradl.Config) { c.Mode, c.WorkflowID = "workflow", "w" }, ""},
		{"email", func(c *cradl.Config) { c.Mode, c.WorkflowID, c.SMTP = "email", "w", smtpOK }, ""},
		{"no mode", func(c *cradl.Config) {}, "no mode"},
		{"unknown mode", func(c *cradl.Config) { c.Mode = "agents" }, `unknown mode "agents"`},
		{"predictions without model", func(c *cradl.Config) { c.Mode = "predictions" }, "model id"},
		{"workflow without id", func(c *cradl.Config) { c.Mode = "workflow" }, "workflow id"},
		{"email without workflow", func(c *cradl.Config) { c.Mode, c.SMTP = "email", smtpOK }, "workflow id"},
		{"email without host", func(c *cradl.Config) {
			c.Mode, c.WorkflowID, c.SMTP = "email", "w", cradl.SMTPConfig{From: "a@b.c"}
		}, "SMTP host"},
		{"email without from", func(c *cradl.Config) {
			c.Mode, c.WorkflowID, c.SMTP = "email", "w", cradl.SMTPConfig{Host: "h"}
		}, "from address"},
		{"email bad TLS mode", func(c *cradl.Config) {
			c.Mode, c.WorkflowID, c.SMTP = "email", "w", smtpOK
			c.SMTP.TLS = "ssl"
		}, `unknown SMTP TLS mode "ssl"`},
		{"email bad workflow address", func(c *cradl.Config) {
			c.Mode, c.WorkflowID, c.SMTP, c.WorkflowEmail = "email", "w", smtpOK, "not an address"
		}, "workflow e-mail address"},
		{"password without user", func(c *cradl.Config) {
			c.Mode, c.WorkflowID, c.SMTP = "email", "w", smtpOK
			c.SMTP.Password = "pw"
		}, "without a username"},
		{"no secret", func(c *cradl.Config) { c.Mode, c.ModelID, c.ClientSecret = "predictions", modelID, "" }, "client secret"},
		{"relative base URL", func(c *cradl.Config) { c.Mode, c.ModelID, c.BaseURL = "predictions", modelID, "/v1" }, "base URL"},
		{"bad token URL", func(c *cradl.Config) { c.Mode, c.ModelID, c.TokenURL = "predictions", modelID, "ftp://x" }, "token URL"},
		{"bad auth style", func(c *cradl.Config) { c.Mode, c.ModelID, c.AuthStyle = "predictions", modelID, "jwt" }, "auth style"},
		{"negative rate", func(c *cradl.Config) { c.Mode, c.ModelID, c.RateLimit = "predictions", modelID, -1 }, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			c, err := cradl.New(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.Name() != "cradl" {
					t.Errorf("Name() = %q", c.Name())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestPredictions(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		pages   int
	}{
		{"one page", pdf("invoice"), 1},
		{"three pages", pdf("page one\fpage two\fpage three"), 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, nil)
			c := f.client(t, "predictions", nil)
			doc, opens := document("doc-1", "Rechnung.pdf", "application/pdf", tc.content)
			ref, err := c.Submit(ctx, doc)
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			ids := strings.Split(ref, ",")
			if len(ids) != tc.pages || !strings.HasPrefix(ids[0], "las:prediction:") {
				t.Fatalf("ref = %q, want %d prediction ids", ref, tc.pages)
			}
			if n := opens.Load(); n != 1 {
				t.Errorf("document opened %d times, want 1", n)
			}
			if n := f.rec.count(http.MethodPost, "/predictions"); n != tc.pages {
				t.Errorf("%d POST /predictions, want %d (one per nextPage)", n, tc.pages)
			}
			if p, err := c.Check(ctx, ref); err != nil || !p.Done || p.Failed {
				t.Fatalf("Check = %+v, %v; want done", p, err)
			}
			res, err := c.Result(ctx, ref)
			if err != nil {
				t.Fatalf("Result: %v", err)
			}
			if want := 7 * tc.pages; len(res.Fields) != want {
				t.Fatalf("%d fields, want %d: %+v", len(res.Fields), want, res.Fields)
			}
			pages := cradlsim.Pages(tc.content)
			for p := range tc.pages {
				rec := simkit.RecogniseContent(doc.Filename, pages[p])
				fs := res.Fields[7*p : 7*p+7]
				byName := fieldsByName(fs)
				id := byName["invoice_id"]
				if id.Value != rec.InvoiceNumber || id.Confidence == nil || *id.Confidence != 0.97 || id.Page == nil || *id.Page != p+1 {
					t.Errorf("page %d invoice_id = %+v, want %s at 0.97 on page %d", p, id, rec.InvoiceNumber, p+1)
				}
				if got := byName["total_amount"].Value; got != rec.Total {
					t.Errorf("total_amount = %q, want %q", got, rec.Total)
				}
				if got := byName["due_date"]; got.Value != "" || got.Confidence == nil {
					t.Errorf("due_date (null) = %+v, want empty with its confidence", got)
				}
				if got := byName["line_items[0].description"].Value; got != "Simulated service" {
					t.Errorf("line item description = %q", got)
				}
				if got := byName["line_items[0].amount"].Value; got != rec.Total {
					t.Errorf("line item amount = %q, want %q", got, rec.Total)
				}
			}
			var raw any
			if err := json.Unmarshal(res.Raw, &raw); err != nil {
				t.Fatalf("Raw is not JSON: %v", err)
			}
			if tc.pages == 1 {
				if m, _ := raw.(map[string]any); m["predictionId"] != ref {
					t.Errorf("Raw is not the prediction verbatim: %s", res.Raw)
				}
			} else if arr, _ := raw.([]any); len(arr) != tc.pages {
				t.Errorf("Raw is not the array of %d page predictions: %s", tc.pages, res.Raw)
			}
			if n := f.sim.Ledger.Count(doc.SHA256); n != 1 {
				t.Errorf("Cradl got the document %d times, want once", n)
			}
			// No Finish work for predictions, and a callback id is its own reference.
			if err := c.Finish(ctx, ref); err != nil {
				t.Errorf("Finish: %v", err)
			}
			if got, err := c.RefOf(ctx, ids[0]); err != nil || got != ids[0] {
				t.Errorf("RefOf = %q, %v", got, err)
			}
		})
	}
}

func TestPredictionStatus(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	c := f.client(t, "predictions", nil)
	ref, err := c.Submit(ctx, must(document("d", "a.pdf", "application/pdf", pdf("a"))))
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	f.sim.SetPredictionStatus(ref, "running", "")
	if p, err := c.Check(ctx, ref); err != nil || p.Done {
		t.Errorf("running: Check = %+v, %v; want pending", p, err)
	}
	f.sim.SetPredictionStatus(ref, "failed", "the document could not be read")
	p, err := c.Check(ctx, ref)
	if err != nil || !p.Done || !p.Failed || !strings.Contains(p.Error, "the document could not be read") {
		t.Errorf("failed: Check = %+v, %v; want failed with Cradl's error", p, err)
	}
}

func TestWorkflow(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, func(c *cradlsim.Config) { c.PendingPolls = 3 })
	c := f.client(t, "workflow", nil)
	content := pdf("workflow invoice")
	doc := must(document("doc-7", "Faktura 7.pdf", "application/pdf", content))
	ref, err := c.Submit(ctx, doc)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if !strings.HasPrefix(ref, "las:workflow-execution:") {
		t.Fatalf("ref = %q, want an execution id", ref)
	}
	exs := f.sim.Executions()
	if len(exs) != 1 || exs[0].Input["title"] != doc.Filename || !strings.HasPrefix(exs[0].Input["documentId"].(string), "las:document:") {
		t.Fatalf("executions = %+v, want one titled %q", exs, doc.Filename)
	}
	pending, _ := pollUntilDone(t, c, ref, 10)
	if pending != 3 {
		t.Errorf("%d pending checks, want 3", pending)
	}
	res, err := c.Result(ctx, ref)
	if err != nil {
		t.Fatalf("Result: %v", err)
	}
	rec := simkit.RecogniseContent(doc.Filename, content)
	fs := fieldsByName(res.Fields)
	if got := fs["invoice_id"]; got.Value != rec.InvoiceNumber || got.Confidence == nil || got.Page == nil || *got.Page != 1 {
		t.Errorf("invoice_id = %+v, want %s with confidence on page 1", got, rec.InvoiceNumber)
	}
	if got := fs["line_items[0].amount"]; got.Value != rec.Total {
		t.Errorf("line item from values = %+v, want %s", got, rec.Total)
	}
	if len(res.Fields) != 6 {
		t.Errorf("%d fields, want 4 validated + 2 line item cells: %+v", len(res.Fields), res.Fields)
	}
	var raw map[string]any
	if json.Unmarshal(res.Raw, &raw) != nil || raw["executionId"] != ref || raw["status"] != "succeeded" {
		t.Errorf("Raw is not the execution verbatim: %s", res.Raw)
	}
	if err := c.Finish(ctx, ref); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if st := f.sim.Executions()[0].Status; st != "completed" {
		t.Errorf("status after Finish = %q, want completed", st)
	}
	// A second Finish (a redelivered result) meets a completed execution: fine.
	if err := c.Finish(ctx, ref); err != nil {
		t.Errorf("second Finish: %v", err)
	}
	// Completed is done too.
	if p, err := c.Check(ctx, ref); err != nil || !p.Done {
		t.Errorf("Check after Finish = %+v, %v", p, err)
	}
	if n := f.rec.count(http.MethodPatch, "/workflows/"); n != 2 {
		t.Errorf("%d PATCHes, want 2", n)
	}
}

func TestWorkflowFailed(t *testing.T) {
	for _, status := range []string{"failed", "rejected", "error"} {
		t.Run(status, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, nil)
			c := f.client(t, "workflow", nil)
			ref, err := c.Submit(ctx, must(document("d", "a.pdf", "application/pdf", pdf("a"))))
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			f.sim.SetExecutionStatus(ref, status, "the model found no invoice")
			p, err := c.Check(ctx, ref)
			if err != nil || !p.Done || !p.Failed || !strings.Contains(p.Error, "the model found no invoice") || !strings.Contains(p.Error, status) {
				t.Errorf("Check = %+v, %v; want failed with Cradl's message", p, err)
			}
		})
	}
	t.Run("retry is pending", func(t *testing.T) {
		f := newFixture(t, nil)
		c := f.client(t, "workflow", nil)
		ref, err := c.Submit(t.Context(), must(document("d", "a.pdf", "application/pdf", pdf("a"))))
		if err != nil {
			t.Fatal(err)
		}
		f.sim.SetExecutionStatus(ref, "retry")
		if p, err := c.Check(t.Context(), ref); err != nil || p.Done {
			t.Errorf("Check = %+v, %v; want pending", p, err)
		}
	})
}

func TestEmail(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, func(c *cradlsim.Config) {
		c.PendingPolls = 2
		c.SMTPUsername, c.SMTPPassword = "mailer", "mail-pw"
	})
	// No WorkflowEmail: the address comes from GET /workflows/{id}.
	c := f.client(t, "email", func(c *cradl.Config) {
		f.smtp(t)(c)
		c.SMTP.Username, c.SMTP.Password = "mailer", "mail-pw"
	})
	content := pdf("mailed invoice")
	doc, opens := document("doc-1", "Rechnung März.pdf", "application/pdf", content)
	ref, err := c.Submit(ctx, doc)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if ref != "mail:doc-1" {
		t.Errorf("ref = %q, want mail:doc-1", ref)
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("document opened %d times, want 1", n)
	}
	// doc-12 after it: its execution is the newest, and finding doc-1 must not take
	// "ingest doc-12" for it.
	if _, err := c.Submit(ctx, must(document("doc-12", "other.pdf", "application/pdf", pdf("the other one")))); err != nil {
		t.Fatalf("Submit doc-12: %v", err)
	}
	mails := f.sim.Mails()
	if len(mails) != 2 {
		t.Fatalf("%d mails, want 2", len(mails))
	}
	m := mails[0]
	if m.Subject != "ingest doc-1" || m.To != workflowMail || m.From != "ingest@example.com" ||
		!strings.HasPrefix(m.MessageID, "<") || !strings.HasSuffix(m.MessageID, "@example.com>") ||
		len(m.Attachments) != 1 || m.Attachments[0] != doc.Filename {
		t.Errorf("mail = %+v", m)
	}
	if mails[1].MessageID == m.MessageID {
		t.Errorf("two mails share the Message-ID %s", m.MessageID)
	}
	if n := f.sim.Ledger.Count(doc.SHA256); n != 1 {
		t.Errorf("Cradl got the attachment %d times, want once (bytes intact)", n)
	}
	if n := f.rec.count(http.MethodGet, "/workflows/"+workflowID); n != 1 {
		t.Errorf("%d workflow look-ups, want 1 (the address is kept)", n)
	}

	pending, _ := pollUntilDone(t, c, ref, 10)
	if pending != 2 {
		t.Errorf("%d pending checks, want 2", pending)
	}
	res, err := c.Result(ctx, ref)
	if err != nil {
		t.Fatalf("Result: %v", err)
	}
	rec := simkit.RecogniseContent(doc.Filename, content)
	if got := fieldsByName(res.Fields)["invoice_id"].Value; got != rec.InvoiceNumber {
		t.Errorf("invoice_id = %q, want %q (of doc-1, not doc-12)", got, rec.InvoiceNumber)
	}
	if err := c.Finish(ctx, ref); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	for _, ex := range f.sim.Executions() {
		want := "running"
		if ex.ExecutionID == m.Executions[0] {
			want = "completed"
		}
		if ex.Status != want {
			t.Errorf("execution %s (%v) status %q, want %q", ex.ExecutionID, ex.Input["email"], ex.Status, want)
		}
	}
	// The export's executionId maps back to the mail reference.
	if got, err := c.RefOf(ctx, m.Executions[0]); err != nil || got != ref {
		t.Errorf("RefOf(execution) = %q, %v; want %q", got, err, ref)
	}
	// Not yet mailed: pending, not an error.
	if p, err := c.Check(ctx, "mail:doc-999"); err != nil || p.Done {
		t.Errorf("Check of an unknown mail = %+v, %v; want pending", p, err)
	}
	if _, err := c.Result(ctx, "mail:doc-999"); err == nil || vendors.IsPermanent(err) {
		t.Errorf("Result of an unknown mail = %v, want a transient error", err)
	}
	if _, err := c.Check(ctx, "las:workflow-execution:x"); !vendors.IsPermanent(err) {
		t.Errorf("Check of a non-mail reference = %v, want permanent", err)
	}
}

func TestEmailTLS(t *testing.T) {
	cert, roots := testCert(t)
	for _, mode := range []string{cradl.SMTPStartTLS, cradl.SMTPTLS} {
		t.Run(mode, func(t *testing.T) {
			f := newFixture(t, nil)
			addr, stop, err := f.sim.ListenSMTPTLS("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}}, mode == cradl.SMTPTLS)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			c := f.client(t, "email", func(c *cradl.Config) {
				smtpAt(addr, mode)(c)
				c.SMTP.TLSConfig = roots
				c.WorkflowEmail = workflowMail
			})
			doc := must(document("doc-tls", "a.png", "image/png", []byte("\x89PNG\r\n\x1a\nfake")))
			if _, err := c.Submit(t.Context(), doc); err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if n := f.sim.Ledger.Count(doc.SHA256); n != 1 {
				t.Errorf("%d attachments arrived, want 1", n)
			}
			// Without our roots the certificate is refused, and that will not mend itself.
			c2 := f.client(t, "email", func(c *cradl.Config) {
				smtpAt(addr, mode)(c)
				c.WorkflowEmail = workflowMail
			})
			ve := asVendorError(t, must2(c2.Submit(t.Context(), doc)))
			if !ve.Permanent || !ve.NotSent || !strings.Contains(ve.Message, "certificate") {
				t.Errorf("untrusted certificate: %+v", ve)
			}
		})
	}
}

func must2(_ string, err error) error { return err }

func TestEmailRefused(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*cradl.Config)
		doc     vendors.Document
		message string
		sent    bool // whether it got as far as the mail server
	}{
		{"other recipient", func(c *cradl.Config) { c.WorkflowEmail = "someone@else.example" },
			must(document("d1", "a.pdf", "application/pdf", pdf("a"))), "550", true},
		{"wrong SMTP password", func(c *cradl.Config) { c.SMTP.Username, c.SMTP.Password = "mailer", "wrong" },
			must(document("d2", "a.pdf", "application/pdf", pdf("a"))), "SMTP credentials", true},
		{"webp is no e-mail type", nil, must(document("d3", "a.webp", "image/webp", []byte("RIFF....WEBP"))), "image/webp", false},
		{"id with a space", nil, must(document("d 4", "a.pdf", "application/pdf", pdf("a"))), "one word", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *cradlsim.Config) { c.SMTPUsername, c.SMTPPassword = "mailer", "mail-pw" })
			c := f.client(t, "email", func(c *cradl.Config) {
				f.smtp(t)(c)
				c.SMTP.Username, c.SMTP.Password = "mailer", "mail-pw"
				c.WorkflowEmail = workflowMail
				if tc.edit != nil {
					tc.edit(c)
				}
			})
			_, err := c.Submit(t.Context(), tc.doc)
			ve := asVendorError(t, err)
			if !ve.Permanent || !ve.NotSent || !strings.Contains(ve.Message, tc.message) {
				t.Errorf("error = %+v, want permanent, not sent, with %q", ve, tc.message)
			}
			if len(f.sim.Mails()) != 0 || len(f.sim.Executions()) != 0 {
				t.Errorf("a mail got through: %+v", f.sim.Mails())
			}
		})
	}
}

func TestUploadPaths(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4_700_000/16) // > 4,687,500: fileUrl
	edge := make([]byte, 4_687_500)                               // exactly 6,250,000 base64 chars: inline
	copy(edge, "%PDF-1.4\n")
	tests := []struct {
		name    string
		content []byte
		put     bool
	}{
		{"small inline", pdf("small"), false},
		{"at the inline limit", edge, false},
		{"large through fileUrl", append([]byte("%PDF-1.7\n"), big...), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, nil)
			c := f.client(t, "workflow", nil)
			doc, opens := document("d", "big.pdf", "application/pdf", tc.content)
			if _, err := c.Submit(ctx, doc); err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if n := f.sim.Ledger.Count(doc.SHA256); n != 1 {
				t.Fatalf("Cradl holds %d intact copies, want 1", n)
			}
			if n := opens.Load(); n != 1 {
				t.Errorf("opened %d times, want 1", n)
			}
			var posts, puts []seen
			for _, s := range f.rec.all() {
				switch {
				case s.Method == http.MethodPost && s.Path == "/documents":
					posts = append(posts, s)
				case s.Method == http.MethodPut:
					puts = append(puts, s)
				}
			}
			if len(posts) != 1 {
				t.Fatalf("%d POST /documents, want 1", len(posts))
			}
			if !tc.put {
				if len(puts) != 0 {
					t.Errorf("an inline document was PUT too")
				}
				// The streamed JSON has a known length: no chunked upload.
				if posts[0].ContentLength <= int64(len(tc.content))*4/3 {
					t.Errorf("inline POST ContentLength %d", posts[0].ContentLength)
				}
				return
			}
			if posts[0].ContentLength > 1024 {
				t.Errorf("the fileUrl POST carried %d bytes, want only the metadata", posts[0].ContentLength)
			}
			if len(puts) != 1 || !strings.HasPrefix(puts[0].Path, "/files/") || puts[0].ContentLength != doc.Size ||
				!strings.HasPrefix(puts[0].Header.Get("Authorization"), "Bearer ") {
				t.Errorf("PUT = %+v, want the raw bytes with Content-Length and the Bearer token", puts)
			}
		})
	}
}

func TestRefusedBeforeUpload(t *testing.T) {
	tests := []struct {
		name, contentType string
		size              int64
		message           string
	}{
		{"text", "text/plain", 10, "does not take text/plain"},
		{"no type", "", 10, "no usable content type"},
		{"too large", "application/pdf", 64<<20 + 1, "at most"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			c := f.client(t, "predictions", nil)
			doc := must(document("d", "a.txt", tc.contentType, []byte("hello")))
			doc.Size = tc.size
			ref, err := c.Submit(t.Context(), doc)
			ve := asVendorError(t, err)
			if ref != "" || !ve.Permanent || !ve.NotSent || !strings.Contains(ve.Message, tc.message) {
				t.Errorf("Submit = %q, %+v; want a permanent refusal saying %q", ref, ve, tc.message)
			}
			if n := len(f.rec.all()); n != 0 {
				t.Errorf("%d requests were sent, want none", n)
			}
		})
	}
	// image/jpg is JPEG.
	f := newFixture(t, nil)
	if _, err := f.client(t, "predictions", nil).Submit(t.Context(), must(document("j", "a.jpg", "image/jpg", []byte("\xff\xd8\xffjpeg")))); err != nil {
		t.Errorf("image/jpg: %v", err)
	}
}

// hostRewrite sends every request to the simulator, whatever host it names: the client believes
// it talks to auth.cradl.ai.
type hostRewrite struct {
	to   *url.URL
	next http.RoundTripper
}

func (h hostRewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host, r.Host = h.to.Scheme, h.to.Host, ""
	return h.next.RoundTrip(r)
}

func TestTokenStyles(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(f *fixture, c *cradl.Config)
		style    string
		audience string
	}{
		{"Basic for any other host", func(*fixture, *cradl.Config) {}, "basic", ""},
		{"form for auth.cradl.ai", func(f *fixture, c *cradl.Config) {
			c.TokenURL = "https://auth.cradl.ai/oauth2/token"
			u, _ := url.Parse(f.srv.URL)
			c.HTTPClient = &http.Client{Transport: hostRewrite{to: u, next: f.rec}}
		}, "form", cradl.DefaultAudience},
		{"form forced", func(_ *fixture, c *cradl.Config) { c.AuthStyle = cradl.AuthForm }, "form", cradl.DefaultAudience},
		{"Basic forced", func(f *fixture, c *cradl.Config) {
			c.TokenURL, c.AuthStyle = "https://auth.cradl.ai/oauth2/token", cradl.AuthBasic
			u, _ := url.Parse(f.srv.URL)
			c.HTTPClient = &http.Client{Transport: hostRewrite{to: u, next: f.rec}}
		}, "basic", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			c := f.client(t, "workflow", func(c *cradl.Config) { tc.edit(f, c) })
			if _, err := c.Submit(t.Context(), must(document("d", "a.pdf", "application/pdf", pdf("a")))); err != nil {
				t.Fatalf("Submit: %v", err)
			}
			got := f.sim.TokenRequests()
			if len(got) != 1 || got[0].Style != tc.style || got[0].Audience != tc.audience {
				t.Errorf("token requests = %+v, want one %s with audience %q", got, tc.style, tc.audience)
			}
			for _, s := range f.rec.all() {
				if s.Path != "/oauth2/token" {
					continue
				}
				_, _, basic := (&http.Request{Header: s.Header}).BasicAuth()
				if basic != (tc.style == "basic") || (s.Form.Get("client_id") != "") == basic || s.Form.Get("grant_type") != "client_credentials" {
					t.Errorf("token request: Basic %v, form %v", basic, s.Form)
				}
			}
		})
	}
}

func TestExpiredToken(t *testing.T) {
	t.Run("mid-flow", func(t *testing.T) {
		ctx := t.Context()
		f := newFixture(t, nil)
		c := f.client(t, "workflow", nil)
		ref, err := c.Submit(ctx, must(document("d", "a.pdf", "application/pdf", pdf("a"))))
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		issued, gets := f.sim.Tokens.Issued(), f.sim.Requests("execution")
		f.sim.Tokens.ExpireAll()
		if _, err := c.Check(ctx, ref); err != nil {
			t.Fatalf("Check after expiry: %v", err)
		}
		if n := f.sim.Tokens.Issued() - issued; n != 1 {
			t.Errorf("%d new tokens, want 1", n)
		}
		if n := f.sim.Requests("execution") - gets; n != 2 {
			t.Errorf("%d execution requests, want 2 (refused, then retried)", n)
		}
	})
	t.Run("during the upload", func(t *testing.T) {
		ctx := t.Context()
		f := newFixture(t, nil)
		c := f.client(t, "predictions", nil)
		if _, err := c.Submit(ctx, must(document("d1", "a.pdf", "application/pdf", pdf("first")))); err != nil {
			t.Fatal(err)
		}
		f.sim.Tokens.ExpireAll()
		doc, opens := document("d2", "b.pdf", "application/pdf", pdf("second"))
		if _, err := c.Submit(ctx, doc); err != nil {
			t.Fatalf("Submit after expiry: %v", err)
		}
		if n := opens.Load(); n != 2 {
			t.Errorf("document opened %d times, want 2 (the refused upload, the retry)", n)
		}
		if n := f.sim.Ledger.Count(doc.SHA256); n != 1 {
			t.Errorf("Cradl holds %d copies, want 1", n)
		}
	})
	t.Run("refused twice", func(t *testing.T) {
		f := newFixture(t, nil)
		c := f.client(t, "workflow", nil)
		f.sim.Faults.Add("execution", simkit.Fault{Status: 401, Body: `{"message":"Unauthorized"}`, Times: 2})
		_, err := c.Check(t.Context(), "las:workflow-execution:x")
		if ve := asVendorError(t, err); ve.Status != 401 || !ve.Permanent {
			t.Errorf("error = %+v, want a permanent 401 after one retry", ve)
		}
		if n := f.sim.Requests("execution"); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
	})
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name       string
		op         string
		fault      simkit.Fault
		permanent  bool
		retryAfter time.Duration
		message    string
	}{
		{"403 Forbidden", "execution", simkit.Fault{Status: 403, Body: `{"message":"Forbidden"}`}, true, 0, "credentials refused"},
		{"429 Too Many Requests", "execution", simkit.Fault{Status: 429, Body: `{"message":"Too Many Requests"}`, RetryAfter: "3"}, false, 3 * time.Second, "rate limited"},
		{"429 Limit Exceeded", "execution", simkit.Fault{Status: 429, Body: `{"message":"Limit Exceeded"}`}, true, 0, "monthly quota"},
		{"503 with Retry-After", "execution", simkit.Fault{Status: 503, Body: `{"message":"Service Unavailable"}`, RetryAfter: "5"}, false, 5 * time.Second, "Service Unavailable"},
		{"500", "execution", simkit.Fault{Status: 500, Body: `{"message":"Internal server error"}`}, false, 0, "Internal server error"},
		{"415", "execution", simkit.Fault{Status: 415, Body: `{"message":"Unsupported Media Type"}`}, true, 0, "Unsupported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, nil)
			c := f.client(t, "workflow", nil)
			ref, err := c.Submit(ctx, must(document("d", "a.pdf", "application/pdf", pdf("a"))))
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			f.sim.Faults.Add(tc.op, tc.fault)
			_, err = c.Check(ctx, ref)
			ve := asVendorError(t, err)
			if ve.Permanent != tc.permanent || ve.Status != tc.fault.Status || vendors.RetryAfterOf(err) != tc.retryAfter ||
				!strings.Contains(ve.Message, tc.message) {
				t.Errorf("error = %+v, want permanent=%v status %d Retry-After %s message %q", ve, tc.permanent, tc.fault.Status, tc.retryAfter, tc.message)
			}
			// The fault was one answer; the next look works.
			if _, err := c.Check(ctx, ref); err != nil {
				t.Errorf("after the fault: %v", err)
			}
		})
	}
}

func TestQuotaAndCredentials(t *testing.T) {
	t.Run("monthly quota", func(t *testing.T) {
		f := newFixture(t, func(c *cradlsim.Config) { c.MonthlyQuota = 1 })
		c := f.client(t, "predictions", nil)
		if _, err := c.Submit(t.Context(), must(document("a", "a.pdf", "application/pdf", pdf("a")))); err != nil {
			t.Fatalf("first Submit: %v", err)
		}
		_, err := c.Submit(t.Context(), must(document("b", "b.pdf", "application/pdf", pdf("b"))))
		if ve := asVendorError(t, err); !ve.Permanent || ve.Status != 429 || !strings.Contains(ve.Message, "Limit Exceeded") {
			t.Errorf("over the quota: %+v, want a permanent 429", ve)
		}
	})
	t.Run("bad client secret", func(t *testing.T) {
		f := newFixture(t, nil)
		c := f.client(t, "workflow", func(c *cradl.Config) { c.ClientSecret = "wrong" })
		_, err := c.Submit(t.Context(), must(document("a", "a.pdf", "application/pdf", pdf("a"))))
		if ve := asVendorError(t, err); !ve.Permanent || ve.Status != 403 || ve.Op != "token" || !strings.Contains(ve.Message, "Forbidden") {
			t.Errorf("error = %+v, want a permanent token refusal", ve)
		}
	})
	t.Run("inline limit of the server", func(t *testing.T) {
		f := newFixture(t, func(c *cradlsim.Config) { c.MaxInlineBytes = 30 })
		_, err := f.client(t, "workflow", nil).Submit(t.Context(), must(document("a", "a.pdf", "application/pdf", pdf(strings.Repeat("x", 100)))))
		if ve := asVendorError(t, err); !ve.Permanent || ve.Status != 413 {
			t.Errorf("error = %+v, want a permanent 413", ve)
		}
	})
}

func TestUnknownExecution(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	c := f.client(t, "workflow", nil)
	const ref = "las:workflow-execution:00000000000000000000000000000000"
	_, errCheck := c.Check(ctx, ref)
	_, errResult := c.Result(ctx, ref)
	for name, err := range map[string]error{"Check": errCheck, "Result": errResult, "Finish": c.Finish(ctx, ref)} {
		if ve := asVendorError(t, err); ve.Status != 404 || !ve.Permanent || !strings.Contains(ve.Message, "not found") {
			t.Errorf("%s = %+v, want a permanent 404", name, ve)
		}
	}
	for _, bad := range []string{"", "..", "mail:doc-1"} {
		if _, err := c.Check(ctx, bad); !vendors.IsPermanent(err) {
			t.Errorf("Check(%q) = %v, want permanent", bad, err)
		}
	}
}

func TestMalformedAnswers(t *testing.T) {
	type call func(ctx context.Context, c *cradl.Client, ref string) error
	check := func(ctx context.Context, c *cradl.Client, ref string) error { _, err := c.Check(ctx, ref); return err }
	result := func(ctx context.Context, c *cradl.Client, ref string) error { _, err := c.Result(ctx, ref); return err }
	submit := func(ctx context.Context, c *cradl.Client, _ string) error {
		_, err := c.Submit(ctx, must(document("b", "b.pdf", "application/pdf", pdf("b"))))
		return err
	}
	tests := []struct {
		name, mode, op string
		fault          simkit.Fault
		call           call
		message        string
	}{
		{"upload without documentId", "workflow", "upload", simkit.Fault{Status: 200, Body: `{"contentType":"application/pdf"}`}, submit, "without a documentId"},
		{"upload answer not JSON", "workflow", "upload", simkit.Fault{Status: 200, Body: `<html>`, ContentType: "text/html"}, submit, "<html>"},
		{"execution without executionId", "workflow", "execution-start", simkit.Fault{Status: 200, Body: `{"status":"running"}`}, submit, "without an executionId"},
		{"prediction without predictionId", "predictions", "prediction", simkit.Fault{Status: 200, Body: `{"predictions":[]}`}, submit, "no usable predictionId"},
		{"nextPage going back", "predictions", "prediction", simkit.Fault{Status: 200, Body: `{"predictionId":"las:prediction:1","nextPage":-1}`}, submit, "does not move on"},
		{"status missing", "workflow", "execution", simkit.Fault{Status: 200, Body: `{"executionId":"x"}`}, check, "no status"},
		{"status not a string", "workflow", "execution", simkit.Fault{Status: 200, Body: `{"executionId":"x","status":3}`}, check, "unexpected answer"},
		{"output not an object", "workflow", "execution", simkit.Fault{Status: 200, Body: `{"executionId":"x","status":"succeeded","output":"done"}`}, result, "no output object"},
		{"output null", "workflow", "execution", simkit.Fault{Status: 200, Body: `{"executionId":"x","status":"succeeded","output":null}`}, result, "no output object"},
		{"predictions not a list", "predictions", "prediction-get", simkit.Fault{Status: 200, Body: `{"predictionId":"x","status":"succeeded","predictions":"many"}`}, result, "neither a list nor an object"},
		{"prediction without label", "predictions", "prediction-get", simkit.Fault{Status: 200, Body: `{"predictionId":"x","status":"succeeded","predictions":[{"value":"1"}]}`}, result, "no label"},
		{"prediction without status or predictions", "predictions", "prediction-get", simkit.Fault{Status: 200, Body: `{"predictionId":"x"}`}, check, "neither a status nor predictions"},
		{"list without executions", "email", "list", simkit.Fault{Status: 200, Body: `{"nextToken":null}`}, check, "no executions"},
		{"list executions not a list", "email", "list", simkit.Fault{Status: 200, Body: `{"executions":{}}`}, check, "unexpected answer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, nil)
			c := f.client(t, tc.mode, func(c *cradl.Config) {
				if tc.mode == "email" {
					f.smtp(t)(c)
				}
			})
			ref, err := c.Submit(ctx, must(document("a", "a.pdf", "application/pdf", pdf("a"))))
			if err != nil {
				t.Fatalf("Submit: %v", err)
			}
			f.sim.Faults.Add(tc.op, tc.fault)
			ve := asVendorError(t, tc.call(ctx, c, ref))
			if !ve.Permanent || !strings.Contains(ve.Message, tc.message) {
				t.Errorf("error = %+v, want permanent containing %q", ve, tc.message)
			}
		})
	}
}

func TestCallbackIDs(t *testing.T) {
	c, err := cradl.New(cradl.Config{ClientID: "i", ClientSecret: "s", Mode: "workflow", WorkflowID: "w"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body string
		want       []string
		err        string
	}{
		{"workflow export", `{"documentId":"las:document:1","values":{"a":"1"},"validatedPredictions":{},"predictions":[],
			"metadata":{"executionId":"las:workflow-execution:9","workflowId":"las:workflow:w"}}`, []string{"las:workflow-execution:9"}, ""},
		{"export without metadata", `{"documentId":"las:document:1","values":{}}`, []string{"las:document:1"}, ""},
		{"export, metadata without executionId", `{"documentId":"las:document:1","metadata":{"source":"x"}}`, []string{"las:document:1"}, ""},
		{"export, metadata null", `{"documentId":"las:document:1","metadata":null}`, []string{"las:document:1"}, ""},
		{"agent webhook", `{"output":{"g":[{"f":{"value":"1"}}]},"context":{"runId":"cradl:run:1","documentId":"cradl:document:2"}}`,
			[]string{"cradl:run:1", "cradl:document:2"}, ""},
		{"agent webhook, run only", `{"output":{},"context":{"runId":"cradl:run:1"}}`, []string{"cradl:run:1"}, ""},
		{"not JSON", `documentId=1`, nil, "not a JSON object"},
		{"an array", `[{"documentId":"1"}]`, nil, "not a JSON object"},
		{"null", `null`, nil, "not a JSON object"},
		{"empty object", `{}`, nil, "no documentId"},
		{"export, empty executionId", `{"documentId":"las:document:1","metadata":{"executionId":""}}`, []string{"las:document:1"}, ""},
		{"documentId a number", `{"documentId":42}`, nil, "documentId is not a string"},
		{"executionId a number", `{"documentId":"d","metadata":{"executionId":7}}`, nil, "executionId is not a string"},
		{"export documentId an object next to executionId", `{"documentId":{},"metadata":{"executionId":"e"}}`, nil, "documentId is not a string"},
		{"metadata a string", `{"documentId":"d","metadata":"x"}`, nil, "metadata is not an object"},
		{"context not an object", `{"context":"run"}`, nil, "context is not an object"},
		{"context without ids", `{"context":{"foo":"bar"}}`, nil, "no runId or documentId"},
		{"runId a list", `{"context":{"runId":["a"]}}`, nil, "runId is not a string"},
		{"empty ids", `{"context":{"runId":"","documentId":""}}`, nil, "no runId or documentId"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.CallbackIDs([]byte(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("CallbackIDs = %v, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("CallbackIDs = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestRefOf(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	c := f.client(t, "workflow", nil)
	ref, err := c.Submit(ctx, must(document("d", "a.pdf", "application/pdf", pdf("a"))))
	if err != nil {
		t.Fatal(err)
	}
	docID := f.sim.Executions()[0].Input["documentId"].(string)
	tests := []struct{ id, want string }{
		{ref, ref},
		{docID, ref},
		{"las:workflow-execution:ffffffffffffffffffffffffffffffff", ""},
		{"las:document:ffff", ""},
		{"cradl:run:1", ""},
		{"", ""},
	}
	for _, tc := range tests {
		got, err := c.RefOf(ctx, tc.id)
		if err != nil || got != tc.want {
			t.Errorf("RefOf(%q) = %q, %v; want %q", tc.id, got, err, tc.want)
		}
	}
	// An error other than 404 is an error, not "not ours".
	f.sim.Faults.Add("execution", simkit.Fault{Status: 503, Body: `{"message":"busy"}`})
	if _, err := c.RefOf(ctx, ref); err == nil || vendors.IsPermanent(err) {
		t.Errorf("RefOf during an outage = %v, want a transient error", err)
	}
}

// The simulator's webhook export, read by CallbackIDs and mapped by RefOf, comes back to the
// reference Submit gave.
func TestWebhookExportRoundTrip(t *testing.T) {
	ctx := t.Context()
	got := make(chan []byte, 1)
	hook := newReceiver(t, got)
	f := newFixture(t, func(c *cradlsim.Config) { c.Webhook.URL = hook.URL + "/cradl" })
	c := f.client(t, "workflow", nil)
	ref, err := c.Submit(ctx, must(document("d", "a.pdf", "application/pdf", pdf("a"))))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.sim.CompleteExecution(ref); err != nil {
		t.Fatalf("CompleteExecution: %v", err)
	}
	body := <-got
	ids, err := c.CallbackIDs(body)
	if err != nil || len(ids) != 1 || ids[0] != ref {
		t.Fatalf("CallbackIDs = %v, %v; want [%s]", ids, err, ref)
	}
	if r, err := c.RefOf(ctx, ids[0]); err != nil || r != ref {
		t.Errorf("RefOf = %q, %v", r, err)
	}
}

// Find recognises an execution only by the document's tag in its title, never by the file name
// that every other document shares; Absent needs the whole list since the attempt.
func TestFind(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	// One execution a page, so that finding means paging.
	c := f.client(t, "workflow", func(c *cradl.Config) { c.ListPageSize = 1 })
	since := time.Now().Add(-time.Hour)
	tagged := func(id string, attempt int) vendors.Document {
		d := must(document(id, "scan.pdf", "application/pdf", pdf(fmt.Sprint(id, attempt))))
		d.Tag = vendors.NewTag(id, attempt)
		return d
	}
	submit := func(id string, attempt int, started time.Time) string {
		t.Helper()
		ref, err := c.Submit(ctx, tagged(id, attempt))
		if err != nil {
			t.Fatalf("Submit %s: %v", id, err)
		}
		f.sim.SetStartTime(ref, started)
		return ref
	}
	submit("old", 1, since.Add(-time.Hour))
	first := submit("twice", 1, since.Add(time.Second))
	second := submit("twice", 2, since.Add(2*time.Second))
	a := submit("a", 1, since.Add(3*time.Second))
	submit("b", 1, since.Add(4*time.Second))
	tests := []struct {
		name    string
		docID   string
		pages   int
		outcome vendors.Outcome
		ref     string
		dupes   []string
	}{
		{"found", "a", 0, vendors.Found, a, nil},
		{"two attempts: the first is kept", "twice", 0, vendors.Found, first, []string{second}},
		{"before since", "old", 0, vendors.Absent, "", nil},
		{"same name, never sent", "c", 0, vendors.Absent, "", nil},
		{"beyond the bound", "c", 2, vendors.Unknown, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl := c
			if tc.pages > 0 {
				cl = f.client(t, "workflow", func(c *cradl.Config) { c.ListPageSize, c.ListPages = 1, tc.pages })
			}
			got, err := cl.Find(ctx, tagged(tc.docID, 3), since)
			if err != nil || got.Outcome != tc.outcome || got.Ref != tc.ref || !slices.Equal(got.Duplicates, tc.dupes) {
				t.Errorf("Find(%s) = %+v, %v; want %v %q %v", tc.docID, got, err, tc.outcome, tc.ref, tc.dupes)
			}
		})
	}
	t.Run("email", func(t *testing.T) {
		f := newFixture(t, nil)
		c := f.client(t, "email", f.smtp(t))
		if _, err := c.Submit(ctx, must(document("doc-5", "a.pdf", "application/pdf", pdf("a")))); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[string]vendors.Lookup{
			"doc-5": {Outcome: vendors.Found, Ref: "mail:doc-5", Attempt: 1},
			"doc-6": {Outcome: vendors.Absent},
		} {
			if got, err := c.Find(ctx, must(document(id, "a.pdf", "application/pdf", nil)), since); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("Find(%s) = %+v, %v; want %+v", id, got, err, want)
			}
		}
	})
	t.Run("predictions", func(t *testing.T) {
		_, err := f.client(t, "predictions", nil).Find(ctx, must(document("a", "a.pdf", "application/pdf", nil)), since)
		if !errors.Is(err, vendors.ErrNotReconcilable) {
			t.Errorf("Find = %v; want ErrNotReconcilable", err)
		}
	})
}
